// Building and checking record batches: the codec that producers, brokers and tests share. A batch's
// `records` bytes are an encoded RecordSet covered by a CRC32C in the header; brokers check the CRC and
// count records without decoding them (see countRecords).
import { crc32c } from "@node-rs/crc32";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type Record as RecordProto, type RecordBatch, type RecordHeader, RecordSet } from "./gen/runnel/v1/records.js";

/** Bits 0-2 of RecordBatchHeader.attributes. */
export const compressionCodecMask = 0b111;
/** Bit 3 of RecordBatchHeader.attributes: timestamps were set by the leader at append. */
export const logAppendTimeFlag = 0b1000;
/** Every attribute bit that has a meaning; the others must be 0. */
export const knownAttributeBits = compressionCodecMask | logAppendTimeFlag;

export function checksum(bytes: Uint8Array): number {
  return crc32c(bytes) >>> 0;
}

/** A record as an application hands it to a producer. */
export interface ProducerRecord {
  key?: Uint8Array | undefined;
  value?: Uint8Array | undefined;
  headers?: RecordHeader[] | undefined;
  /** Milliseconds since the Unix epoch; defaults to the batch's first timestamp. */
  timestamp?: number | bigint | undefined;
}

export interface BuildBatchOptions {
  producerId?: bigint;
  producerEpoch?: number;
  baseSequence?: number;
  /** Used for records without a timestamp; defaults to Date.now(). */
  nowMs?: number;
}

/** Encodes records into a RecordBatch ready to produce (base offset and leader epoch left at 0). */
export function buildBatch(records: readonly ProducerRecord[], options: BuildBatchOptions = {}): RecordBatch {
  if (records.length === 0) throw new RangeError("a record batch needs at least one record");
  const now = BigInt(options.nowMs ?? Date.now());
  const stamps = records.map((r) => (r.timestamp === undefined ? now : BigInt(r.timestamp)));
  let first = stamps[0]!;
  let max = first;
  for (const t of stamps) {
    if (t < first) first = t;
    if (t > max) max = t;
  }
  const set: RecordProto[] = records.map((r, i) => ({
    timestampDelta: stamps[i]! - first,
    offsetDelta: i,
    key: r.key,
    value: r.value,
    headers: r.headers ?? [],
  }));
  const bytes = RecordSet.encode({ records: set }).finish();
  return {
    header: {
      baseOffset: 0n,
      recordCount: records.length,
      firstTimestamp: first,
      maxTimestamp: max,
      leaderEpoch: 0,
      producerId: options.producerId ?? 0n,
      producerEpoch: options.producerEpoch ?? 0,
      baseSequence: options.baseSequence ?? 0,
      crc: checksum(bytes),
      attributes: 0,
    },
    records: bytes,
  };
}

/** A record read back from a batch, with its absolute offset and timestamp. */
export interface ConsumedRecord {
  offset: bigint;
  timestamp: bigint;
  key: Uint8Array | undefined;
  value: Uint8Array | undefined;
  headers: RecordHeader[];
  leaderEpoch: number;
}

/** Decodes a batch's records (after checking its CRC) into records with absolute offsets. */
export function decodeBatch(batch: RecordBatch): ConsumedRecord[] {
  const header = batch.header;
  if (header === undefined) throw new BatchError("batch has no header");
  if (checksum(batch.records) !== header.crc) throw new BatchError(`CRC32C mismatch in batch at offset ${header.baseOffset}`);
  if ((header.attributes & compressionCodecMask) !== 0) throw new BatchError("compressed batches are not supported");
  const set = RecordSet.decode(batch.records);
  return set.records.map((r) => ({
    offset: header.baseOffset + BigInt(r.offsetDelta),
    timestamp: header.firstTimestamp + r.timestampDelta,
    key: r.key,
    value: r.value,
    headers: r.headers,
    leaderEpoch: header.leaderEpoch,
  }));
}

export class BatchError extends Error {
  override name = "BatchError";
}

/**
 * Counts the records in an encoded RecordSet by walking its top-level fields only: the records
 * themselves are skipped, not decoded. Throws BatchError when the bytes are not a well-formed
 * RecordSet (wrong wire type, truncated length).
 */
export function countRecords(recordSetBytes: Uint8Array): number {
  const reader = new BinaryReader(recordSetBytes);
  let count = 0;
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = tag >>> 3;
      const wireType = tag & 7;
      if (field === 1 && wireType === 2) {
        const len = reader.uint32();
        if (reader.pos + len > reader.len) throw new BatchError("record extends past the end of the batch");
        reader.pos += len;
        count += 1;
      } else {
        reader.skip(wireType);
      }
    }
  } catch (err) {
    if (err instanceof BatchError) throw err;
    throw new BatchError(`records are not a well-formed RecordSet: ${(err as Error).message}`);
  }
  if (reader.pos !== reader.len) throw new BatchError("records end inside a field");
  return count;
}

export { BinaryWriter };
