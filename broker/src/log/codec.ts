// The stored form of a batch and the few header fields the log needs, read without the generated
// decoder. A stored value is [CRC32C of the rest, 4 bytes big-endian][encoded RecordBatch message];
// read() hands out the RecordBatch part as a view, so servers and followers get the exact wire bytes.
// LMDB has no page checksums, so the prefix is checked on every read and in recovery.
import { BinaryWriter, checksum, type RecordBatch, RecordBatchHeader } from "@runnel/proto";
import { maxOffset, offsetKeyBytes, storedChecksumBytes } from "./limits.js";

/** The base offset as an 8-byte big-endian key, so LMDB's byte order is offset order. */
export function offsetKey(offset: bigint): Buffer {
  if (offset < 0n || offset > maxOffset) throw new RangeError(`offset ${offset} cannot be a log key`);
  const key = Buffer.allocUnsafe(offsetKeyBytes);
  key.writeBigUInt64BE(offset, 0);
  return key;
}

export function keyOffset(key: Uint8Array): bigint {
  if (key.length !== offsetKeyBytes) throw new RangeError(`log key has ${key.length} bytes, not ${offsetKeyBytes}`);
  return new DataView(key.buffer, key.byteOffset, key.length).getBigUint64(0, false);
}

/** What the log needs from a batch header, plus where the records sit in the wire bytes. */
export interface BatchSummary {
  baseOffset: bigint;
  recordCount: number;
  lastOffset: bigint;
  firstTimestamp: bigint;
  maxTimestamp: bigint;
  leaderEpoch: number;
  crc: number;
  headerStart: number;
  headerEnd: number;
  recordsStart: number;
  recordsEnd: number;
}

/** The wire bytes are not a well-formed RecordBatch; callers turn this into their typed error. */
export class MalformedBatchError extends Error {
  override name = "MalformedBatchError";
}

// One varint is read into these module-level slots instead of an object per call: this runs for
// every batch on every read.
let varintLow = 0;
let varintHigh = 0;
let varintEnd = 0;

function readVarint(bytes: Uint8Array, pos: number, end: number): void {
  let low = 0;
  let byte = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) throw new MalformedBatchError("varint runs past the end");
    byte = bytes[pos++]!;
    low |= (byte & 0x7f) << shift;
    if (byte < 0x80) {
      varintLow = low >>> 0;
      varintHigh = 0;
      varintEnd = pos;
      return;
    }
  }
  if (pos >= end) throw new MalformedBatchError("varint runs past the end");
  byte = bytes[pos++]!;
  low |= (byte & 0x0f) << 28;
  let high = (byte & 0x7f) >> 4;
  if (byte < 0x80) {
    varintLow = low >>> 0;
    varintHigh = high;
    varintEnd = pos;
    return;
  }
  for (let shift = 3; shift < 38; shift += 7) {
    if (pos >= end) throw new MalformedBatchError("varint runs past the end");
    byte = bytes[pos++]!;
    high |= (byte & 0x7f) << shift;
    if (byte < 0x80) {
      varintLow = low >>> 0;
      varintHigh = high >>> 0;
      varintEnd = pos;
      return;
    }
  }
  throw new MalformedBatchError("varint longer than 10 bytes");
}

function varintAsInt64(): bigint {
  if (varintHigh === 0) return BigInt(varintLow);
  if (varintHigh < 0x200000) return BigInt(varintHigh * 0x1_0000_0000 + varintLow);
  return BigInt.asIntN(64, (BigInt(varintHigh) << 32n) | BigInt(varintLow));
}

function varintAsUint32(what: string): number {
  if (varintHigh !== 0) throw new MalformedBatchError(`${what} does not fit 32 bits`);
  return varintLow;
}

/**
 * Reads the header fields and the records' position from an encoded RecordBatch message
 * (`bytes[start..end)`), walking fields the way protobuf does (any order, unknown fields skipped).
 */
export function summarizeBatch(bytes: Uint8Array, start = 0, end = bytes.length): BatchSummary {
  let pos = start;
  let headerStart = -1;
  let headerEnd = -1;
  let recordsStart = pos;
  let recordsEnd = pos;
  while (pos < end) {
    readVarint(bytes, pos, end);
    const tag = varintAsUint32("tag");
    pos = varintEnd;
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (wireType === 2) {
      readVarint(bytes, pos, end);
      const len = varintAsUint32("length");
      pos = varintEnd;
      if (pos + len > end) throw new MalformedBatchError(`field ${field} runs past the end of the batch`);
      if (field === 1) {
        headerStart = pos;
        headerEnd = pos + len;
      } else if (field === 2) {
        recordsStart = pos;
        recordsEnd = pos + len;
      }
      pos += len;
    } else {
      if (field === 1 || field === 2) throw new MalformedBatchError(`field ${field} has wire type ${wireType}`);
      pos = skipField(bytes, pos, end, wireType);
    }
  }
  if (headerStart < 0) throw new MalformedBatchError("batch has no header");

  let baseOffset = 0n;
  let recordCount = 0;
  let firstTimestamp = 0n;
  let maxTimestamp = 0n;
  let leaderEpoch = 0;
  let crc = 0;
  pos = headerStart;
  while (pos < headerEnd) {
    readVarint(bytes, pos, headerEnd);
    const tag = varintAsUint32("tag");
    pos = varintEnd;
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === 9 && wireType === 5) {
      if (pos + 4 > headerEnd) throw new MalformedBatchError("crc runs past the end of the header");
      crc = (bytes[pos]! | (bytes[pos + 1]! << 8) | (bytes[pos + 2]! << 16) | (bytes[pos + 3]! << 24)) >>> 0;
      pos += 4;
    } else if (field >= 1 && field <= 5 && wireType === 0) {
      readVarint(bytes, pos, headerEnd);
      pos = varintEnd;
      if (field === 1) baseOffset = varintAsInt64();
      else if (field === 2) recordCount = varintLow | 0;
      else if (field === 3) firstTimestamp = varintAsInt64();
      else if (field === 4) maxTimestamp = varintAsInt64();
      else leaderEpoch = varintLow | 0;
    } else {
      pos = skipField(bytes, pos, headerEnd, wireType);
    }
  }
  if (recordCount < 1) throw new MalformedBatchError(`record_count ${recordCount} must be at least 1`);
  if (baseOffset < 0n) throw new MalformedBatchError(`base_offset ${baseOffset} is negative`);
  return {
    baseOffset,
    recordCount,
    lastOffset: baseOffset + BigInt(recordCount - 1),
    firstTimestamp,
    maxTimestamp,
    leaderEpoch,
    crc,
    headerStart,
    headerEnd,
    recordsStart,
    recordsEnd,
  };
}

function skipField(bytes: Uint8Array, pos: number, end: number, wireType: number): number {
  let next: number;
  if (wireType === 0) {
    readVarint(bytes, pos, end);
    next = varintEnd;
  } else if (wireType === 1) {
    next = pos + 8;
  } else if (wireType === 5) {
    next = pos + 4;
  } else if (wireType === 2) {
    readVarint(bytes, pos, end);
    next = varintEnd + varintAsUint32("length");
  } else {
    throw new MalformedBatchError(`unsupported wire type ${wireType}`);
  }
  if (next > end) throw new MalformedBatchError("field runs past the end");
  return next;
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size += 1;
  }
  return size;
}

function writeVarint(out: Uint8Array, pos: number, value: number): number {
  while (value >= 0x80) {
    out[pos++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

/**
 * The stored value for a batch: checksum prefix plus the RecordBatch message, byte-identical to
 * `RecordBatch.encode({ header, records })`. The records are copied exactly once; the result is a
 * fresh buffer that nothing else references (LMDB's async put reads it later on its write thread).
 */
export function encodeStoredBatch(header: RecordBatchHeader, records: Uint8Array): Buffer {
  const headerBytes = RecordBatchHeader.encode(header, new BinaryWriter()).finish();
  const recordsFieldBytes = records.length === 0 ? 0 : 1 + varintSize(records.length) + records.length;
  const wireBytes = 1 + varintSize(headerBytes.length) + headerBytes.length + recordsFieldBytes;
  const out = Buffer.allocUnsafeSlow(storedChecksumBytes + wireBytes);
  let pos = storedChecksumBytes;
  out[pos++] = 0x0a; // field 1 (header), length-delimited
  pos = writeVarint(out, pos, headerBytes.length);
  out.set(headerBytes, pos);
  pos += headerBytes.length;
  if (records.length !== 0) {
    out[pos++] = 0x12; // field 2 (records), length-delimited
    pos = writeVarint(out, pos, records.length);
    out.set(records, pos);
    pos += records.length;
  }
  out.writeUInt32BE(checksum(out.subarray(storedChecksumBytes)), 0);
  return out;
}

/** The stored value for wire bytes that are already an encoded RecordBatch (a follower's append). */
export function storeWireBatch(wire: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(storedChecksumBytes + wire.length);
  out.set(wire, storedChecksumBytes);
  out.writeUInt32BE(checksum(wire), 0);
  return out;
}

/** Returns the RecordBatch bytes of a stored value as a view, or undefined when the checksum fails. */
export function verifiedWire(stored: Uint8Array): Uint8Array | undefined {
  if (stored.length < storedChecksumBytes) return undefined;
  const expected = ((stored[0]! << 24) | (stored[1]! << 16) | (stored[2]! << 8) | stored[3]!) >>> 0;
  const wire = stored.subarray(storedChecksumBytes);
  return checksum(wire) === expected ? wire : undefined;
}

/** Decodes the full header of wire bytes as returned by PartitionLog.read(). */
export function decodeStoredHeader(wire: Uint8Array): RecordBatchHeader {
  const summary = summarizeBatch(wire);
  return RecordBatchHeader.decode(wire.subarray(summary.headerStart, summary.headerEnd));
}

/** The decoded batch (header and a view of its records) from wire bytes, for decodeBatch. */
export function wireToRecordBatch(wire: Uint8Array): RecordBatch {
  const summary = summarizeBatch(wire);
  return {
    header: RecordBatchHeader.decode(wire.subarray(summary.headerStart, summary.headerEnd)),
    records: wire.subarray(summary.recordsStart, summary.recordsEnd),
  };
}
