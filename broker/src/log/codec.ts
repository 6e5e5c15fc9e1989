// The stored form of a batch and the few header fields the log needs, read without the generated
// decoder. A stored value is [storage CRC32C, 4 bytes big-endian][encoded RecordBatch message];
// read() hands out the RecordBatch part as a view, so servers and followers get the exact wire bytes.
// LMDB has no page checksums, so every byte is checked on every read and in recovery: the storage
// CRC covers the message except the records payload, and the records payload is covered by the
// header's own CRC32C (which the leader validated before appending). Checking the two covers every
// byte once, and an append only checksums the few header bytes, not the records a second time.
import { crc32c } from "@node-rs/crc32";
import { checksum, type RecordBatch, RecordBatchHeader } from "@runnel/proto";
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
  const high = ((key[0]! << 24) | (key[1]! << 16) | (key[2]! << 8) | key[3]!) >>> 0;
  const low = ((key[4]! << 24) | (key[5]! << 16) | (key[6]! << 8) | key[7]!) >>> 0;
  if (high < 0x200000) return BigInt(high * 0x1_0000_0000 + low);
  return (BigInt(high) << 32n) | BigInt(low);
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

// ---- encoding ----

/** Longest encoded RecordBatchHeader: 8 varint fields of at most 1 + 10 bytes, crc 1 + 4, attributes 1 + 5. */
const maxHeaderBytes = 8 * 11 + 5 + 6;
const headerScratch = new Uint8Array(maxHeaderBytes);

function writeVarintNumber(out: Uint8Array, pos: number, value: number): number {
  while (value >= 0x80) {
    out[pos++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

function writeVarintBig(out: Uint8Array, pos: number, value: bigint): number {
  if (value >= 0n && value <= 0x1f_ffff_ffff_ffffn) return writeVarintNumber(out, pos, Number(value));
  let v = BigInt.asUintN(64, value);
  while (v >= 0x80n) {
    out[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  out[pos++] = Number(v);
  return pos;
}

function writeInt32(out: Uint8Array, pos: number, value: number): number {
  return value >= 0 ? writeVarintNumber(out, pos, value) : writeVarintBig(out, pos, BigInt(value));
}

/** Same bytes as RecordBatchHeader.encode (proto3: fields in number order, defaults omitted). */
function encodeHeaderInto(h: RecordBatchHeader, out: Uint8Array): number {
  let pos = 0;
  if (h.baseOffset !== 0n) {
    out[pos++] = 0x08;
    pos = writeVarintBig(out, pos, h.baseOffset);
  }
  if (h.recordCount !== 0) {
    out[pos++] = 0x10;
    pos = writeInt32(out, pos, h.recordCount);
  }
  if (h.firstTimestamp !== 0n) {
    out[pos++] = 0x18;
    pos = writeVarintBig(out, pos, h.firstTimestamp);
  }
  if (h.maxTimestamp !== 0n) {
    out[pos++] = 0x20;
    pos = writeVarintBig(out, pos, h.maxTimestamp);
  }
  if (h.leaderEpoch !== 0) {
    out[pos++] = 0x28;
    pos = writeInt32(out, pos, h.leaderEpoch);
  }
  if (h.producerId !== 0n) {
    out[pos++] = 0x30;
    pos = writeVarintBig(out, pos, h.producerId);
  }
  if (h.producerEpoch !== 0) {
    out[pos++] = 0x38;
    pos = writeInt32(out, pos, h.producerEpoch);
  }
  if (h.baseSequence !== 0) {
    out[pos++] = 0x40;
    pos = writeInt32(out, pos, h.baseSequence);
  }
  if (h.crc !== 0) {
    const crc = h.crc >>> 0;
    out[pos++] = 0x4d;
    out[pos++] = crc & 0xff;
    out[pos++] = (crc >>> 8) & 0xff;
    out[pos++] = (crc >>> 16) & 0xff;
    out[pos++] = crc >>> 24;
  }
  if (h.attributes !== 0) {
    out[pos++] = 0x50;
    pos = writeVarintNumber(out, pos, h.attributes >>> 0);
  }
  return pos;
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size += 1;
  }
  return size;
}

/**
 * Where stored values are carved from: shared slabs instead of one native allocation per batch, and
 * slabs are reused once every value cut from them has been committed (LMDB's async put reads the
 * value from its write thread until then, so a region is never touched again before its release).
 */
export class StoredValuePool {
  readonly #slabs = new Map<ArrayBufferLike, { bytes: Uint8Array; used: number; outstanding: number; retired: boolean }>();
  readonly #free: Uint8Array[] = [];
  #current: { bytes: Uint8Array; used: number; outstanding: number; retired: boolean } | undefined;

  constructor(
    readonly slabBytes = defaultSlabBytes,
    readonly maxFreeSlabs = defaultMaxFreeSlabs,
  ) {}

  allocate(size: number): Uint8Array {
    if (size * 4 > this.slabBytes) return new Uint8Array(size);
    let slab = this.#current;
    if (slab === undefined || slab.used + size > slab.bytes.length) {
      if (slab !== undefined) this.#retire(slab);
      slab = { bytes: this.#free.pop() ?? new Uint8Array(this.slabBytes), used: 0, outstanding: 0, retired: false };
      this.#slabs.set(slab.bytes.buffer, slab);
      this.#current = slab;
    }
    const out = slab.bytes.subarray(slab.used, slab.used + size);
    slab.used += (size + 7) & ~7; // keep regions 8-byte aligned
    slab.outstanding += 1;
    return out;
  }

  /** The value's put has settled: its region will not be read again. */
  release(value: Uint8Array): void {
    const slab = this.#slabs.get(value.buffer);
    if (slab === undefined) return; // its own allocation
    slab.outstanding -= 1;
    if (slab.retired && slab.outstanding === 0) this.#recycle(slab);
  }

  #retire(slab: { bytes: Uint8Array; outstanding: number; retired: boolean }): void {
    slab.retired = true;
    if (slab.outstanding === 0) this.#recycle(slab);
  }

  #recycle(slab: { bytes: Uint8Array }): void {
    this.#slabs.delete(slab.bytes.buffer);
    if (this.#free.length < this.maxFreeSlabs) this.#free.push(slab.bytes);
  }
}

const defaultSlabBytes = 1024 * 1024;
const defaultMaxFreeSlabs = 32;

function allocateStored(size: number, pool: StoredValuePool | undefined): Uint8Array {
  return pool === undefined ? new Uint8Array(size) : pool.allocate(size);
}

function writeStorageChecksum(out: Uint8Array, crc: number): void {
  out[0] = crc >>> 24;
  out[1] = (crc >>> 16) & 0xff;
  out[2] = (crc >>> 8) & 0xff;
  out[3] = crc & 0xff;
}

/** The storage checksum of wire bytes: everything except the records payload [recordsStart, recordsEnd). */
function storageChecksum(wire: Uint8Array, recordsStart: number, recordsEnd: number): number {
  let crc = crc32c(wire.subarray(0, recordsStart));
  if (recordsEnd < wire.length) crc = crc32c(wire.subarray(recordsEnd), crc);
  return crc >>> 0;
}

/**
 * The stored value for a batch: storage checksum plus the RecordBatch message, byte-identical to
 * `RecordBatch.encode({ header, records })`. The records are copied exactly once, into a region that
 * nothing else writes; `header.crc` must be the records' CRC32C (the caller validated it).
 */
export function encodeStoredBatch(header: RecordBatchHeader, records: Uint8Array, pool?: StoredValuePool): Uint8Array {
  const headerBytes = encodeHeaderInto(header, headerScratch);
  const recordsFieldBytes = records.length === 0 ? 0 : 1 + varintSize(records.length) + records.length;
  const wireBytes = 1 + varintSize(headerBytes) + headerBytes + recordsFieldBytes;
  const out = allocateStored(storedChecksumBytes + wireBytes, pool);
  let pos = storedChecksumBytes;
  out[pos++] = 0x0a; // field 1 (header), length-delimited
  pos = writeVarintNumber(out, pos, headerBytes);
  out.set(headerScratch.subarray(0, headerBytes), pos);
  pos += headerBytes;
  if (records.length !== 0) {
    out[pos++] = 0x12; // field 2 (records), length-delimited
    pos = writeVarintNumber(out, pos, records.length);
  }
  // Everything before the records payload is the part the storage checksum covers.
  writeStorageChecksum(out, crc32c(out.subarray(storedChecksumBytes, pos)) >>> 0);
  out.set(records, pos);
  return out;
}

/**
 * The stored value for wire bytes that are already an encoded RecordBatch (a follower's append);
 * `summary` is summarizeBatch(wire), whose records CRC the caller has checked.
 */
export function storeWireBatch(wire: Uint8Array, summary: BatchSummary = summarizeBatch(wire), pool?: StoredValuePool): Uint8Array {
  const out = allocateStored(storedChecksumBytes + wire.length, pool);
  out.set(wire, storedChecksumBytes);
  writeStorageChecksum(out, storageChecksum(wire, summary.recordsStart, summary.recordsEnd));
  return out;
}

/** Why a stored value fails verification, or its summary and wire bytes when every byte checks out. */
export type StoredCheck = { ok: true; wire: Uint8Array; summary: BatchSummary } | { ok: false; problem: string };

/** Verifies a stored value: framing, storage checksum, and the records against the header's CRC. */
export function checkStored(stored: Uint8Array): StoredCheck {
  if (stored.length < storedChecksumBytes) return { ok: false, problem: `stored value of ${stored.length} bytes is too short` };
  const wire = stored.subarray(storedChecksumBytes);
  let summary: BatchSummary;
  try {
    summary = summarizeBatch(wire);
  } catch (err) {
    if (err instanceof MalformedBatchError) return { ok: false, problem: `malformed: ${err.message}` };
    throw err;
  }
  const expected = ((stored[0]! << 24) | (stored[1]! << 16) | (stored[2]! << 8) | stored[3]!) >>> 0;
  if (storageChecksum(wire, summary.recordsStart, summary.recordsEnd) !== expected) return { ok: false, problem: "storage CRC32C mismatch" };
  const records = checksum(wire.subarray(summary.recordsStart, summary.recordsEnd));
  if (records !== summary.crc) return { ok: false, problem: `records CRC32C 0x${records.toString(16)} does not match header 0x${summary.crc.toString(16)}` };
  return { ok: true, wire, summary };
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
