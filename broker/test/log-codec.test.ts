import { describe, expect, test } from "vitest";
import { buildBatch, RecordBatch, RecordBatchHeader } from "@runnel/proto";
import {
  checkStored,
  decodeStoredHeader,
  encodeStoredBatch,
  keyOffset,
  MalformedBatchError,
  offsetKey,
  StoredValuePool,
  storeWireBatch,
  summarizeBatch,
} from "../src/log/codec.js";
import { LeaderEpochCache } from "../src/log/epoch-cache.js";
import { InvariantError } from "../src/log/index.js";

function header(overrides: Partial<RecordBatchHeader>): RecordBatchHeader {
  return {
    baseOffset: 0n,
    recordCount: 1,
    firstTimestamp: 0n,
    maxTimestamp: 0n,
    leaderEpoch: 0,
    producerId: 0n,
    producerEpoch: 0,
    baseSequence: 0,
    crc: 0,
    attributes: 0,
    ...overrides,
  };
}

describe("stored batch codec", () => {
  test("keys sort like offsets and round-trip", () => {
    const offsets = [0n, 1n, 255n, 256n, 1n << 40n, (1n << 63n) - 1n];
    const keys = offsets.map(offsetKey);
    for (let i = 1; i < keys.length; i++) expect(Buffer.compare(keys[i - 1]!, keys[i]!)).toBe(-1);
    expect(keys.map(keyOffset)).toEqual(offsets);
    expect(() => offsetKey(-1n)).toThrow(RangeError);
  });

  test("the stored value is a checksum prefix plus exactly RecordBatch.encode's bytes", () => {
    const batch = buildBatch([{ value: new Uint8Array(300).fill(7) }, { key: new Uint8Array([1]), value: undefined }], { nowMs: 5 });
    const headers = [
      header({ ...batch.header!, baseOffset: 1234567n, leaderEpoch: 9, producerId: -1n }),
      header({ ...batch.header!, firstTimestamp: -5n, maxTimestamp: (1n << 63n) - 1n, producerEpoch: -1, baseSequence: -7, attributes: 0xffffffff }),
      header({ ...batch.header!, baseOffset: (1n << 53n) + 1n, recordCount: 2, producerId: 1n << 60n, baseSequence: 2147483647 }),
    ];
    for (const h of headers) {
      const stored = encodeStoredBatch(h, batch.records);
      const check = checkStored(stored);
      expect(check.ok).toBe(true);
      const wire = stored.subarray(4);
      expect(Buffer.from(wire)).toEqual(Buffer.from(RecordBatch.encode({ header: h, records: batch.records }).finish()));
      expect(decodeStoredHeader(wire)).toEqual(h);
      // The follower's form of the same bytes is identical.
      expect(Buffer.from(storeWireBatch(wire))).toEqual(Buffer.from(stored));
    }
  });

  test("a stored value made from a non-canonical message (unknown fields, records first) verifies too", () => {
    const batch = buildBatch([{ value: new Uint8Array([1, 2, 3]) }], { nowMs: 5 });
    const headerBytes = RecordBatchHeader.encode(batch.header!).finish();
    const wire = Uint8Array.from([0x12, batch.records.length, ...batch.records, 0x0a, headerBytes.length, ...headerBytes, 0x18, 0x05]);
    const stored = storeWireBatch(wire);
    expect(checkStored(stored).ok).toBe(true);
    for (const at of [0, 2, wire.length - 1]) {
      const damaged = Uint8Array.from(stored);
      damaged[4 + at] = damaged[4 + at]! ^ 0x04;
      expect(checkStored(damaged).ok).toBe(false);
    }
  });

  test("header summary handles large, negative and default values", () => {
    const cases: RecordBatchHeader[] = [
      header({}),
      header({ baseOffset: (1n << 62n) + 5n, recordCount: 70000, firstTimestamp: -1n, maxTimestamp: 1_700_000_000_000n, leaderEpoch: 2147483647, crc: 0xffffffff }),
      header({ baseOffset: 1n << 53n, recordCount: 2, firstTimestamp: -(1n << 40n), maxTimestamp: (1n << 63n) - 1n, leaderEpoch: 3, attributes: 8 }),
    ];
    for (const h of cases) {
      const records = new Uint8Array([10, 0]);
      const wire = RecordBatch.encode({ header: h, records }).finish();
      const s = summarizeBatch(wire);
      expect({ base: s.baseOffset, count: s.recordCount, first: s.firstTimestamp, max: s.maxTimestamp, epoch: s.leaderEpoch, crc: s.crc }).toEqual({
        base: h.baseOffset,
        count: h.recordCount,
        first: h.firstTimestamp,
        max: h.maxTimestamp,
        epoch: h.leaderEpoch,
        crc: h.crc,
      });
      expect(s.lastOffset).toBe(h.baseOffset + BigInt(h.recordCount - 1));
      expect(Buffer.from(wire.subarray(s.recordsStart, s.recordsEnd))).toEqual(Buffer.from(records));
    }
  });

  test("malformed wire bytes are a MalformedBatchError, never a crash", () => {
    const good = RecordBatch.encode({ header: header({ recordCount: 3 }), records: new Uint8Array([10, 0]) }).finish();
    expect(() => summarizeBatch(good.subarray(0, good.length - 1))).toThrow(MalformedBatchError);
    expect(() => summarizeBatch(new Uint8Array([0x12, 0x00]))).toThrow(/no header/);
    expect(() => summarizeBatch(new Uint8Array([0x0a, 0x7f]))).toThrow(MalformedBatchError);
    expect(() => summarizeBatch(new Uint8Array([0x0a, 0x00]))).toThrow(/record_count 0/);
    expect(() => summarizeBatch(new Uint8Array(12).fill(0xff))).toThrow(MalformedBatchError);
    expect(() => summarizeBatch(new Uint8Array([0x0b]))).toThrow(MalformedBatchError);
  });

  test("a flipped bit anywhere in a stored value fails verification", () => {
    const records = buildBatch([{ value: new Uint8Array(40).fill(3) }], { nowMs: 9 });
    const stored = encodeStoredBatch(header({ ...records.header!, baseOffset: 77n, leaderEpoch: 2 }), records.records);
    expect(checkStored(stored).ok).toBe(true);
    for (let i = 0; i < stored.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const damaged = Uint8Array.from(stored);
        damaged[i] = damaged[i]! ^ bit;
        const check = checkStored(damaged);
        expect(check.ok, `byte ${i} bit ${bit}`).toBe(false);
      }
    }
    expect(checkStored(new Uint8Array(2))).toEqual({ ok: false, problem: "stored value of 2 bytes is too short" });
  });
});

describe("stored value pool", () => {
  test("a slab is reused only after every value cut from it is released", () => {
    const pool = new StoredValuePool(1024, 4); // four 240-byte values per slab
    const first = [1, 2, 3, 4].map((n) => pool.allocate(240).fill(n));
    expect(new Set(first.map((v) => v.buffer)).size).toBe(1);
    const second = [5, 6, 7, 8].map((n) => pool.allocate(240).fill(n)); // the first slab retires, all values out
    expect(second[0]!.buffer).not.toBe(first[0]!.buffer);
    first.forEach((v, i) => expect(v.every((x) => x === i + 1)).toBe(true));
    first.slice(0, 3).forEach((v) => pool.release(v));
    const third = pool.allocate(240); // one value of the first slab is still out: a fresh slab
    expect(third.buffer).not.toBe(first[0]!.buffer);
    expect(third.buffer).not.toBe(second[0]!.buffer);
    pool.release(first[3]!);
    [1, 2, 3].forEach(() => pool.allocate(240));
    const reused = pool.allocate(240); // the third slab is full: the first one is free again
    expect(reused.buffer).toBe(first[0]!.buffer);
  });

  test("large values get their own allocation", () => {
    const pool = new StoredValuePool(1024, 4);
    const big = pool.allocate(600);
    expect(big.byteLength).toBe(600);
    expect(big.buffer.byteLength).toBe(600);
    pool.release(big); // harmless
  });
});

describe("leader epoch cache (Kafka's LeaderEpochFileCache rules)", () => {
  test("assign keeps the first start of an epoch and rejects nothing that only repeats it", () => {
    const cache = new LeaderEpochCache("t-0");
    expect(cache.latestEpoch()).toBe(-1);
    expect(cache.assign(1, 0n)).toBe(true);
    expect(cache.assign(1, 10n)).toBe(false);
    expect(cache.assign(3, 20n)).toBe(true);
    expect(cache.entries()).toEqual([
      { epoch: 1, startOffset: 0n },
      { epoch: 3, startOffset: 20n },
    ]);
  });

  test("assign drops entries that would break monotonicity", () => {
    const cache = new LeaderEpochCache("t-0", [
      { epoch: 1, startOffset: 0n },
      { epoch: 3, startOffset: 20n },
      { epoch: 4, startOffset: 30n },
    ]);
    expect(cache.assign(5, 25n)).toBe(true);
    expect(cache.entries()).toEqual([
      { epoch: 1, startOffset: 0n },
      { epoch: 3, startOffset: 20n },
      { epoch: 5, startOffset: 25n },
    ]);
  });

  test("truncation from the end and from the start", () => {
    const cache = new LeaderEpochCache("t-0", [
      { epoch: 2, startOffset: 0n },
      { epoch: 4, startOffset: 10n },
      { epoch: 7, startOffset: 25n },
    ]);
    expect(cache.truncateFromEnd(25n)).toBe(true);
    expect(cache.latestEpoch()).toBe(4);
    expect(cache.truncateFromStart(12n)).toBe(true);
    expect(cache.entries()).toEqual([{ epoch: 4, startOffset: 12n }]);
    expect(cache.truncateFromStart(5n)).toBe(false);
  });

  test("a non-monotonic history is an InvariantError", () => {
    expect(
      () =>
        new LeaderEpochCache("t-0", [
          { epoch: 4, startOffset: 10n },
          { epoch: 3, startOffset: 20n },
        ]),
    ).toThrow(InvariantError);
  });
});
