// Finds each record's runnel.not-before header in an encoded RecordBatch without decoding the batch:
// a protobuf wire walk over the RecordSet that skips keys and values and only looks inside headers.
// Admission runs this over every record entering a share-partition window, so it allocates nothing
// per record but the result array.
import { notBeforeHeader } from "@runnel/proto";
import { MalformedBatchError, summarizeBatch } from "../log/codec.js";

/** The not-before header name as UTF-8 bytes, compared byte by byte with each header key. */
const notBeforeKey = new TextEncoder().encode(notBeforeHeader);
/** Digits a not-before value may have (Number.MAX_SAFE_INTEGER has 16); longer values are ignored. */
export const maxNotBeforeDigits = 16;

export interface BatchNotBefore {
  baseOffset: bigint;
  /** Last offset of the batch (base + record count - 1). */
  lastOffset: bigint;
  /** Per record, in batch order: its runnel.not-before time in ms since the Unix epoch, 0 when absent or unreadable. */
  notBeforeMs: number[];
}

let pos = 0;

function varint(bytes: Uint8Array, end: number): number {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new MalformedBatchError("varint runs past the end");
    const byte = bytes[pos++]!;
    // Lengths and tags fit 32 bits; larger varints (timestamps) are only skipped, so precision does not matter.
    result += (byte & 0x7f) * mul;
    if (byte < 0x80) return result;
    mul *= 128;
  }
  throw new MalformedBatchError("varint longer than 10 bytes");
}

function skip(bytes: Uint8Array, end: number, wireType: number): void {
  if (wireType === 0) varint(bytes, end);
  else if (wireType === 1) pos += 8;
  else if (wireType === 5) pos += 4;
  else if (wireType === 2) {
    // Not `pos += varint(...)`: that reads pos before varint() moves it past the length.
    const len = varint(bytes, end);
    pos += len;
  }
  else throw new MalformedBatchError(`unsupported wire type ${wireType}`);
  if (pos > end) throw new MalformedBatchError("field runs past the end");
}

/** Decimal ASCII digits as a number; 0 for anything else (a bad header means "no delay", not an error). */
function parseDecimal(bytes: Uint8Array, start: number, end: number): number {
  const len = end - start;
  if (len === 0 || len > maxNotBeforeDigits) return 0;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = bytes[i]!;
    if (c < 0x30 || c > 0x39) return 0;
    value = value * 10 + (c - 0x30);
  }
  return Number.isSafeInteger(value) ? value : 0;
}

/** The not-before value of one RecordHeader message in bytes[start, end), or undefined when its key is another. */
function headerNotBefore(bytes: Uint8Array, start: number, end: number): number | undefined {
  pos = start;
  let keyMatches = false;
  let valueStart = -1;
  let valueEnd = -1;
  while (pos < end) {
    const tag = varint(bytes, end);
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (wireType === 2 && (field === 1 || field === 2)) {
      const len = varint(bytes, end);
      if (pos + len > end) throw new MalformedBatchError("record header field runs past the end");
      if (field === 1) {
        keyMatches = len === notBeforeKey.length;
        for (let i = 0; keyMatches && i < len; i++) keyMatches = bytes[pos + i] === notBeforeKey[i];
      } else {
        valueStart = pos;
        valueEnd = pos + len;
      }
      pos += len;
    } else {
      skip(bytes, end, wireType);
    }
  }
  if (!keyMatches) return undefined;
  return valueStart < 0 ? 0 : parseDecimal(bytes, valueStart, valueEnd);
}

/** The first not-before header of one Record message in bytes[start, end), 0 when it has none. */
function recordNotBefore(bytes: Uint8Array, start: number, end: number): number {
  pos = start;
  let found: number | undefined;
  while (pos < end) {
    const tag = varint(bytes, end);
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 5 && wireType === 2) {
      const len = varint(bytes, end);
      const headerEnd = pos + len;
      if (headerEnd > end) throw new MalformedBatchError("record header runs past the end of the record");
      if (found === undefined) found = headerNotBefore(bytes, pos, headerEnd);
      pos = headerEnd;
    } else {
      skip(bytes, end, wireType);
    }
  }
  return found ?? 0;
}

/**
 * Per-record not-before times of an encoded RecordBatch (the bytes the log stores and serves). Throws
 * MalformedBatchError when the bytes are not a well-formed batch (the log verified them on read, so that
 * is a bug or corruption), or when the RecordSet holds a different number of records than the header says.
 */
export function scanNotBefore(batch: Uint8Array): BatchNotBefore {
  const s = summarizeBatch(batch);
  const out: number[] = [];
  pos = s.recordsStart;
  const end = s.recordsEnd;
  while (pos < end) {
    const tag = varint(batch, end);
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 1 && wireType === 2) {
      const len = varint(batch, end);
      const recordEnd = pos + len;
      if (recordEnd > end) throw new MalformedBatchError("record runs past the end of the batch");
      out.push(recordNotBefore(batch, pos, recordEnd));
      pos = recordEnd;
    } else {
      skip(batch, end, wireType);
    }
  }
  if (out.length !== s.recordCount) {
    throw new MalformedBatchError(`batch at offset ${s.baseOffset} holds ${out.length} records, its header says ${s.recordCount}`);
  }
  return { baseOffset: s.baseOffset, lastOffset: s.lastOffset, notBeforeMs: out };
}
