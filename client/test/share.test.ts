import { describe, expect, it } from "vitest";
import { ShareAcknowledgeType, ShareRecordState, buildBatch, type RecordBatch } from "@runnel/proto";
import { acquiredFromBatches, coalesceAcks, splitRecordBudget, truncateReason, maxReasonBytes, type PendingAck } from "../src/share/acks.js";
import { parseDeadLetter, summarizeSharePartition, topicConfigOf } from "../src/share/admin.js";
import type { ConsumerRecord } from "../src/consumer/index.js";

const enc = (s: string) => new TextEncoder().encode(s);
const ack = (offset: bigint, type: PendingAck["type"] = "accept", releaseDelayMs = 0, reason = ""): PendingAck => ({ offset, type, releaseDelayMs, reason });

/** A batch of `count` records starting at `baseOffset`, values "v<offset>". */
function batchAt(baseOffset: bigint, count: number): RecordBatch {
  const b = buildBatch(Array.from({ length: count }, (_, i) => ({ value: enc(`v${baseOffset + BigInt(i)}`) })), { nowMs: 1_000 });
  b.header!.baseOffset = baseOffset;
  return b;
}

describe("coalesceAcks: consecutive offsets with the same type become one run", () => {
  it("merges a consecutive run of accepts in any input order", () => {
    expect(coalesceAcks([ack(7n), ack(5n), ack(6n)])).toEqual([
      { firstOffset: 5n, lastOffset: 7n, type: ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, releaseDelayMs: 0n, reason: "", lockDurationMs: 0 },
    ]);
  });

  it("splits at a gap and at a change of type", () => {
    const runs = coalesceAcks([ack(1n), ack(2n), ack(4n), ack(5n, "release"), ack(6n, "release"), ack(7n, "reject", 0, "bad")]);
    expect(runs.map((r) => [r.firstOffset, r.lastOffset, r.type])).toEqual([
      [1n, 2n, ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT],
      [4n, 4n, ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT],
      [5n, 6n, ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE],
      [7n, 7n, ShareAcknowledgeType.SHARE_ACKNOWLEDGE_REJECT],
    ]);
    expect(runs[3]!.reason).toBe("bad");
  });

  it("keeps releases with different delays or reasons apart (a run carries one of each)", () => {
    const runs = coalesceAcks([ack(1n, "release", 100, "x"), ack(2n, "release", 200, "x"), ack(3n, "release", 200, "y"), ack(4n, "release", 200, "y")]);
    expect(runs.map((r) => [r.firstOffset, r.lastOffset, r.releaseDelayMs, r.reason])).toEqual([
      [1n, 1n, 100n, "x"], [2n, 2n, 200n, "x"], [3n, 4n, 200n, "y"],
    ]);
  });

  it("sends no delay or reason with an accept", () => {
    const [run] = coalesceAcks([ack(3n, "accept", 500, "ignored")]);
    expect(run!.releaseDelayMs).toBe(0n);
    expect(run!.reason).toBe("");
  });

  it("refuses an offset acknowledged twice (runs must not overlap)", () => {
    expect(() => coalesceAcks([ack(3n), ack(3n, "release")])).toThrow(/offset 3 is acknowledged twice/);
  });

  it("gives nothing for nothing", () => {
    expect(coalesceAcks([])).toEqual([]);
  });
});

describe("acquiredFromBatches: only the member's acquired offsets of whole batches", () => {
  it("skips records of the batch that were not acquired and attaches each run's delivery count", () => {
    const out = acquiredFromBatches([batchAt(10n, 5), batchAt(15n, 3)], [
      { firstOffset: 11n, lastOffset: 12n, deliveryCount: 1 },
      { firstOffset: 16n, lastOffset: 16n, deliveryCount: 3 },
    ]);
    expect(out.records.map((r) => [r.offset, new TextDecoder().decode(r.value), r.deliveryCount])).toEqual([
      [11n, "v11", 1], [12n, "v12", 1], [16n, "v16", 3],
    ]);
    expect(out.missing).toEqual([]);
    expect(out.batchError).toBeUndefined();
  });

  it("reports acquired offsets no batch held", () => {
    const out = acquiredFromBatches([batchAt(0n, 2)], [{ firstOffset: 1n, lastOffset: 3n, deliveryCount: 1 }]);
    expect(out.records.map((r) => r.offset)).toEqual([1n]);
    expect(out.missing).toEqual([2n, 3n]);
  });

  it("reports a corrupt batch and its acquired offsets as missing, keeping the good batches", () => {
    const bad = batchAt(0n, 2);
    bad.header!.crc = (bad.header!.crc + 1) >>> 0;
    const out = acquiredFromBatches([bad, batchAt(2n, 2)], [{ firstOffset: 0n, lastOffset: 3n, deliveryCount: 2 }]);
    expect(out.records.map((r) => r.offset)).toEqual([2n, 3n]);
    expect(out.missing).toEqual([0n, 1n]);
    expect(out.batchError).toMatch(/CRC32C mismatch/);
  });

  it("hands each acquired record out once when batches repeat or come out of order and runs overlap", () => {
    const out = acquiredFromBatches([batchAt(5n, 3), batchAt(0n, 5), batchAt(5n, 3)], [
      { firstOffset: 6n, lastOffset: 9n, deliveryCount: 2 },
      { firstOffset: 1n, lastOffset: 6n, deliveryCount: 1 },
    ]);
    expect(out.records.map((r) => [r.offset, r.deliveryCount])).toEqual([[1n, 1], [2n, 1], [3n, 1], [4n, 1], [5n, 1], [6n, 1], [7n, 2]]);
    expect(out.missing).toEqual([8n, 9n]);
  });

  it("returns nothing when nothing was acquired", () => {
    expect(acquiredFromBatches([batchAt(0n, 3)], []).records).toEqual([]);
  });
});

describe("splitRecordBudget: parallel fetches never ask for more than the room left", () => {
  it("hands the remainder to the slots from firstSlot on, so every slot has its turn", () => {
    expect(splitRecordBudget(1, 3, 0)).toEqual([1, 0, 0]);
    expect(splitRecordBudget(1, 3, 1)).toEqual([0, 1, 0]);
    expect(splitRecordBudget(1, 3, 5)).toEqual([0, 0, 1]);
    expect(splitRecordBudget(5, 3, 2)).toEqual([2, 1, 2]);
    const turns = [0, 1, 2].map((round) => splitRecordBudget(2, 3, round));
    for (let slot = 0; slot < 3; slot++) expect(turns.some((t) => t[slot]! > 0), `slot ${slot}`).toBe(true);
  });

  it.each([[10, 3, [4, 3, 3]], [2, 3, [1, 1, 0]], [0, 2, [0, 0]], [-5, 2, [0, 0]], [7, 1, [7]], [5, 0, []]])("%i records over %i brokers -> %j", (total, slots, expected) => {
    const out = splitRecordBudget(total, slots);
    expect(out).toEqual(expected);
    expect(out.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(Math.max(0, total));
  });
});

describe("truncateReason", () => {
  it("keeps short reasons and cuts long ones to the broker's limit without splitting a character", () => {
    expect(truncateReason("boom")).toBe("boom");
    const cut = truncateReason("é".repeat(maxReasonBytes));
    expect(Buffer.byteLength(cut, "utf8")).toBe(maxReasonBytes);
    expect(cut).toBe("é".repeat(maxReasonBytes / 2));
  });
});

describe("summarizeSharePartition: counts for describe", () => {
  it("counts ranges by state, uncovered window records as available, and future available-after as delayed", () => {
    const s = summarizeSharePartition({
      startOffset: 10n, endOffset: 30n,
      ranges: [
        { firstOffset: 10n, lastOffset: 12n, state: ShareRecordState.SHARE_RECORD_ARCHIVED, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: "" },
        { firstOffset: 13n, lastOffset: 14n, state: ShareRecordState.SHARE_RECORD_ACQUIRED, deliveryCount: 2, memberId: "m", lockDeadlineMs: 9_000n, availableAfterMs: 0n, lastFailure: "" },
        { firstOffset: 15n, lastOffset: 15n, state: ShareRecordState.SHARE_RECORD_DEAD_LETTERING, deliveryCount: 5, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: "x" },
        { firstOffset: 16n, lastOffset: 19n, state: ShareRecordState.SHARE_RECORD_AVAILABLE, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 5_000n, lastFailure: "x" },
        { firstOffset: 20n, lastOffset: 20n, state: ShareRecordState.SHARE_RECORD_AVAILABLE, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 500n, lastFailure: "x" },
      ],
    }, 1_000);
    expect(s).toEqual({ startOffset: 10n, endOffset: 30n, acquired: 2, archived: 3, deadLettering: 1, available: 5 + 9, delayed: 4, maxDeliveryCount: 5 });
  });
});

describe("dead letters", () => {
  const h = (key: string, value: string) => ({ key, value: Buffer.from(value) });
  const record = (headers: Array<{ key: string; value: Buffer }>): ConsumerRecord => ({
    topic: "jobs.dlq", partition: 0, offset: 4n, key: Buffer.from("k"), value: Buffer.from("payload"), headers, timestamp: 7, leaderEpoch: 0,
  });

  it("parses the runnel.dlq.* headers and returns the original headers without them", () => {
    const d = parseDeadLetter(record([
      h("trace", "abc"), h("runnel.dlq.topic", "jobs"), h("runnel.dlq.partition", "2"), h("runnel.dlq.offset", "9007199254740993"),
      h("runnel.dlq.attempts", "5"), h("runnel.dlq.reason", "timeout"), h("runnel.dlq.time", "1700000000000"),
    ]));
    expect(d).toMatchObject({ dlqTopic: "jobs.dlq", dlqPartition: 0, dlqOffset: 4n, topic: "jobs", partition: 2, offset: 9007199254740993n, attempts: 5, reason: "timeout", deadLetteredAtMs: 1700000000000 });
    expect(d.headers.map((x) => x.key)).toEqual(["trace"]);
  });

  it("marks missing or malformed headers instead of failing", () => {
    const d = parseDeadLetter(record([h("runnel.dlq.partition", "two")]));
    expect(d).toMatchObject({ topic: "", partition: -1, offset: -1n, attempts: 0, reason: "" });
  });

  it("reads a topic's max.delivery.attempts from its metadata overrides, defaults otherwise", () => {
    expect(topicConfigOf({ "max.delivery.attempts": "3" }).maxDeliveryAttempts).toBe(3);
    expect(topicConfigOf({}).maxDeliveryAttempts).toBe(5);
    expect(topicConfigOf({ "max.delivery.attempts": "nonsense" }).maxDeliveryAttempts).toBe(5);
  });
});
