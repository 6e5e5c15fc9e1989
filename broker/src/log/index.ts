// The broker's storage layer: Kafka-style partition logs on LMDB. Owns the on-disk format (one
// named LMDB database per partition, keyed by base offset, each value a checksummed encoded
// RecordBatch), each partition's metadata (log start offset, high watermark checkpoint,
// leader-epoch cache), recovery after a crash, retention, truncation, and group commit (flush).
// It knows nothing about replication rules or the network: callers decide what to append, what the
// high watermark is and when to truncate; this layer keeps those decisions durable and checked.
export { LogStore, type LogStoreOptions, defaultLogConfig } from "./log-store.js";
export { PartitionLog, type LogConfig, type AppendInfo, type ReadResult } from "./partition-log.js";
export { LeaderEpochCache, type EpochEntry } from "./epoch-cache.js";
export { decodeStoredHeader, wireToRecordBatch } from "./codec.js";
export { OffsetOutOfRangeError, InvariantError, StorageCorruptionError, InvalidBatchError, LogUnavailableError } from "./errors.js";
export { maxBatchesPerRead, maxRetentionDeletesPerTxn } from "./limits.js";
