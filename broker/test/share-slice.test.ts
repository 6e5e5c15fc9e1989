// ShareFetch with acquired_records_only cuts a stored batch down to a run of acquired records without
// decoding the records: the slice must be a batch whose records decode (CRC checked) to exactly the
// run's offsets, values, keys, headers and timestamps of the stored batch.
import { describe, expect, it } from "vitest";
import { buildBatch, decodeBatch, RecordBatch } from "@runnel/proto";
import { InvariantError } from "@runnel/common";
import { sliceBatch } from "../src/share/manager.js";

const enc = new TextEncoder();

function stored(count: number, baseOffset: bigint): Uint8Array {
  const batch = buildBatch(
    Array.from({ length: count }, (_, i) => ({
      key: i % 2 === 0 ? enc.encode(`k${i}`) : undefined,
      value: enc.encode(`job ${i} `.repeat(i + 1)),
      headers: i % 3 === 0 ? [{ key: "h", value: enc.encode(String(i)) }] : [],
      timestamp: 5_000 + i * 7,
    })),
  );
  batch.header!.baseOffset = baseOffset;
  batch.header!.leaderEpoch = 4;
  return RecordBatch.encode(batch).finish();
}

describe("sliceBatch (acquired_records_only)", () => {
  const whole = stored(10, 100n);
  const all = decodeBatch(RecordBatch.decode(whole));

  it("a run inside the batch decodes to exactly the run's records, as stored", () => {
    for (const [first, last] of [[103n, 106n], [100n, 100n], [109n, 109n], [100n, 108n], [101n, 109n]] as const) {
      const slice = sliceBatch(whole, first, last, "jobs-0");
      const decoded = decodeBatch(RecordBatch.decode(slice)); // checks the slice's CRC
      expect(decoded).toEqual(all.filter((r) => r.offset >= first && r.offset <= last));
      const header = RecordBatch.decode(slice).header!;
      expect(header.baseOffset).toBe(100n);
      expect(header.recordCount).toBe(Number(last - first) + 1);
      expect(slice.length).toBeLessThan(whole.length);
    }
  });

  it("a run covering the whole batch (or reaching past it) is the stored bytes or clamped to the batch", () => {
    expect(sliceBatch(whole, 100n, 109n, "jobs-0")).toBe(whole);
    expect(sliceBatch(whole, 90n, 200n, "jobs-0")).toBe(whole);
    expect(decodeBatch(RecordBatch.decode(sliceBatch(whole, 105n, 200n, "jobs-0"))).map((r) => r.offset)).toEqual([105n, 106n, 107n, 108n, 109n]);
  });

  it("a run that misses the batch is a programmer error naming the partition and offsets", () => {
    expect(() => sliceBatch(whole, 120n, 130n, "jobs-0")).toThrow(InvariantError);
    expect(() => sliceBatch(whole, 120n, 130n, "jobs-0")).toThrow(/jobs-0: slice \[120, 130\] misses the batch at 100/);
  });
});
