// Idempotent-producer sequence rules: duplicates are recognised with their original offset, gaps and
// fenced epochs are refused, and the state rebuilt from batch headers equals the state built live.
import { describe, expect, it } from "vitest";
import { ErrorCode, type RecordBatchHeader } from "@runnel/proto";
import { maxRememberedBatchesPerProducer, ProducerStateTable } from "../src/partition/producer-state.js";

function header(producerId: bigint, producerEpoch: number, baseSequence: number, recordCount = 1): RecordBatchHeader {
  return { baseOffset: 0n, recordCount, firstTimestamp: 0n, maxTimestamp: 0n, leaderEpoch: 0, producerId, producerEpoch, baseSequence, crc: 0, attributes: 0 };
}

describe("ProducerStateTable", () => {
  it("accepts a new producer at sequence 0 and the next sequences after it", () => {
    const t = new ProducerStateTable();
    expect(t.check(header(1n, 0, 0, 3))).toEqual({ kind: "append" });
    t.record(header(1n, 0, 0, 3), 10n);
    expect(t.check(header(1n, 0, 3))).toEqual({ kind: "append" });
  });

  it("answers a retried batch as a duplicate with its original base offset", () => {
    const t = new ProducerStateTable();
    t.record(header(1n, 0, 0, 2), 10n);
    t.record(header(1n, 0, 2, 2), 12n);
    expect(t.check(header(1n, 0, 0, 2))).toEqual({ kind: "duplicate", baseOffset: 10n });
    expect(t.check(header(1n, 0, 2, 2))).toEqual({ kind: "duplicate", baseOffset: 12n });
  });

  it("refuses a gap, an unknown producer not starting at 0, and an older epoch", () => {
    const t = new ProducerStateTable();
    t.record(header(1n, 1, 0), 0n);
    expect(t.check(header(1n, 1, 5))).toMatchObject({ kind: "reject", code: ErrorCode.OUT_OF_ORDER_SEQUENCE });
    expect(t.check(header(2n, 0, 4))).toMatchObject({ kind: "reject", code: ErrorCode.UNKNOWN_PRODUCER_ID });
    expect(t.check(header(1n, 0, 1))).toMatchObject({ kind: "reject", code: ErrorCode.INVALID_PRODUCER_EPOCH });
    expect(t.check(header(1n, 2, 0))).toEqual({ kind: "append" });
    expect(t.check(header(1n, 2, 1))).toMatchObject({ kind: "reject", code: ErrorCode.OUT_OF_ORDER_SEQUENCE });
  });

  it("remembers only the last few batches per producer; older retries are duplicates without an offset", () => {
    const t = new ProducerStateTable();
    for (let i = 0; i < maxRememberedBatchesPerProducer + 2; i++) t.record(header(1n, 0, i), BigInt(i));
    expect(t.check(header(1n, 0, 0))).toEqual({ kind: "duplicate", baseOffset: -1n });
    const last = maxRememberedBatchesPerProducer + 1;
    expect(t.check(header(1n, 0, last))).toEqual({ kind: "duplicate", baseOffset: BigInt(last) });
  });

  it("wraps sequences at 2^31-1 like Kafka", () => {
    const t = new ProducerStateTable();
    t.record(header(1n, 0, 0x7ffffffe, 2), 0n);
    expect(t.check(header(1n, 0, 0))).toEqual({ kind: "append" });
  });

  it("marks a batch that continues a sequence whose earlier batches have not arrived as ahead", () => {
    const t = new ProducerStateTable();
    expect(t.check(header(1n, 0, 3))).toMatchObject({ kind: "reject", code: ErrorCode.UNKNOWN_PRODUCER_ID, ahead: true });
    t.record(header(1n, 0, 0, 2), 0n);
    expect(t.check(header(1n, 0, 4))).toMatchObject({ kind: "reject", ahead: true });
    expect(t.check(header(1n, 1, 1))).toMatchObject({ kind: "reject", ahead: true });
    t.record(header(1n, 0, 2, 5), 2n);
    t.record(header(1n, 0, 7, 1), 7n);
    // Behind every remembered batch: a duplicate whose offset is forgotten, never "ahead".
    expect(t.check(header(1n, 0, 1))).toMatchObject({ kind: "reject", ahead: false });
    expect(t.check(header(1n, 0, 6))).toMatchObject({ kind: "reject", ahead: false });
  });

  it("ignores batches without a producer id", () => {
    const t = new ProducerStateTable();
    t.record(header(0n, 0, 9), 0n);
    expect(t.size).toBe(0);
    expect(t.check(header(0n, 0, 123))).toEqual({ kind: "append" });
  });
});
