// Validation of a produced batch before it touches the log: the header's claims (record count,
// CRC32C, attributes, size, timestamps) are checked against the records bytes without decoding
// records, so the broker does no per-record work beyond one top-level field walk.
import { BatchError, checksum, compressionCodecMask, countRecords, ErrorCode, knownAttributeBits, type RecordBatch, type TopicConfig } from "@runnel/proto";

/** Bytes a stored batch takes beyond its records: the encoded header and framing (upper bound). */
export const batchOverheadBytes = 96;

export interface BatchProblem {
  code: ErrorCode;
  message: string;
}

/** Returns why a produced batch must be refused, or undefined when it may be appended. */
export function batchProblem(batch: RecordBatch | undefined, config: TopicConfig, where: string): BatchProblem | undefined {
  if (batch === undefined || batch.header === undefined) return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: batch or batch header missing` };
  const h = batch.header;
  const size = batch.records.length + batchOverheadBytes;
  if (size > config.maxMessageBytes) {
    return { code: ErrorCode.RECORD_TOO_LARGE, message: `${where}: batch of ${batch.records.length} bytes exceeds max.message.bytes ${config.maxMessageBytes}` };
  }
  if (h.recordCount < 1) return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: record_count ${h.recordCount} must be at least 1` };
  if ((h.attributes & ~knownAttributeBits) !== 0) return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: unknown attribute bits 0x${h.attributes.toString(16)}` };
  if ((h.attributes & compressionCodecMask) !== 0) {
    return { code: ErrorCode.UNSUPPORTED_COMPRESSION, message: `${where}: compression codec ${h.attributes & compressionCodecMask} is not supported` };
  }
  if (h.maxTimestamp < h.firstTimestamp) {
    return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: max_timestamp ${h.maxTimestamp} is before first_timestamp ${h.firstTimestamp}` };
  }
  const crc = checksum(batch.records);
  if (crc !== h.crc) return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: CRC32C mismatch (header 0x${h.crc.toString(16)}, records 0x${crc.toString(16)})` };
  let count: number;
  try {
    count = countRecords(batch.records);
  } catch (err) {
    if (err instanceof BatchError) return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: ${err.message}` };
    throw err;
  }
  if (count !== h.recordCount) {
    return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: record_count says ${h.recordCount} but the batch holds ${count} records` };
  }
  if (h.producerId < 0n) return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: producer_id ${h.producerId} is negative` };
  if (h.producerId > 0n && (h.baseSequence < 0 || h.producerEpoch < 0)) {
    return { code: ErrorCode.CORRUPT_BATCH, message: `${where}: base_sequence and producer_epoch must be >= 0 for an idempotent batch` };
  }
  return undefined;
}
