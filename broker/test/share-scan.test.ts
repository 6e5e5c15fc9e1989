// The runnel.not-before scanner reads each record's delay header from stored batch bytes without
// decoding the batch: checked against buildBatch output and the generated encoder.
import { describe, expect, it } from "vitest";
import { buildBatch, notBeforeHeader, RecordBatch, type ProducerRecord } from "@runnel/proto";
import { MalformedBatchError } from "../src/log/codec.js";
import { scanNotBefore } from "../src/share/not-before.js";

const enc = new TextEncoder();

function wire(records: ProducerRecord[], baseOffset = 0n): Uint8Array {
  const batch = buildBatch(records, { nowMs: 1_000 });
  batch.header!.baseOffset = baseOffset;
  return RecordBatch.encode(batch).finish();
}

const h = (key: string, value: string) => ({ key, value: enc.encode(value) });

describe("scanNotBefore", () => {
  it("gives 0 for records without the header and the header's time for those with it", () => {
    const bytes = wire(
      [
        { value: enc.encode("plain") },
        { key: enc.encode("k"), value: enc.encode("delayed"), headers: [h(notBeforeHeader, "1764340000000")] },
        { value: enc.encode("other headers"), headers: [h("trace-id", "abc"), h("runnel.not-beforeX", "5")] },
      ],
      42n,
    );
    expect(scanNotBefore(bytes)).toEqual({ baseOffset: 42n, lastOffset: 44n, notBeforeMs: [0, 1764340000000, 0] });
  });

  it("finds the header among others, in any position", () => {
    const bytes = wire([{ value: enc.encode("v"), headers: [h("a", "1"), h("b", "2"), h(notBeforeHeader, "77"), h("c", "3")] }]);
    expect(scanNotBefore(bytes).notBeforeMs).toEqual([77]);
  });

  it("takes the first of two not-before headers", () => {
    const bytes = wire([{ value: enc.encode("v"), headers: [h(notBeforeHeader, "10"), h(notBeforeHeader, "20")] }]);
    expect(scanNotBefore(bytes).notBeforeMs).toEqual([10]);
  });

  it("handles tombstones (no value) and keyless records", () => {
    const bytes = wire([
      { key: enc.encode("gone") },
      { headers: [h(notBeforeHeader, "123")] },
      { key: enc.encode("k"), value: new Uint8Array(0), headers: [h(notBeforeHeader, "456")] },
    ]);
    expect(scanNotBefore(bytes).notBeforeMs).toEqual([0, 123, 456]);
  });

  it("ignores unreadable values (not decimal, empty, too long, negative) instead of failing", () => {
    const bytes = wire([
      { value: enc.encode("a"), headers: [h(notBeforeHeader, "soon")] },
      { value: enc.encode("b"), headers: [h(notBeforeHeader, "")] },
      { value: enc.encode("c"), headers: [h(notBeforeHeader, "99999999999999999999")] },
      { value: enc.encode("d"), headers: [h(notBeforeHeader, "-5")] },
      { value: enc.encode("e"), headers: [h(notBeforeHeader, "12.5")] },
    ]);
    expect(scanNotBefore(bytes).notBeforeMs).toEqual([0, 0, 0, 0, 0]);
  });

  it("skips large keys and values without looking inside them", () => {
    // A value that contains the header name's bytes must not be mistaken for a header.
    const big = enc.encode(`${notBeforeHeader}`.repeat(10_000));
    const bytes = wire([{ key: big, value: big }, { value: big, headers: [h(notBeforeHeader, "5")] }]);
    expect(scanNotBefore(bytes).notBeforeMs).toEqual([0, 5]);
  });

  it("scans many records", () => {
    const records: ProducerRecord[] = Array.from({ length: 1000 }, (_, i) => ({ value: enc.encode(`r${i}`), headers: i % 3 === 0 ? [h(notBeforeHeader, String(i))] : [] }));
    const out = scanNotBefore(wire(records, 1_000_000n));
    expect(out.lastOffset).toBe(1_000_999n);
    expect(out.notBeforeMs).toEqual(records.map((_, i) => (i % 3 === 0 ? i : 0)));
  });

  it("throws MalformedBatchError on truncated bytes and on a record count that does not match", () => {
    const bytes = wire([{ value: enc.encode("a") }, { value: enc.encode("b") }]);
    expect(() => scanNotBefore(bytes.subarray(0, bytes.length - 3))).toThrow(MalformedBatchError);
    const batch = buildBatch([{ value: enc.encode("a") }]);
    batch.header!.recordCount = 2;
    expect(() => scanNotBefore(RecordBatch.encode(batch).finish())).toThrow(/holds 1 records, its header says 2/);
  });
});
