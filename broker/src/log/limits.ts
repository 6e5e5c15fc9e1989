// Every bound of the partition log in one place, each with its unit in the name.

/** Most batches one read() returns, whatever maxBytes allows (bounds the work of one fetch). */
export const maxBatchesPerRead = 1000;

/** Most batches one retention transaction deletes, so retention never holds the writer for long. */
export const maxRetentionDeletesPerTxn = 256;

/** Named LMDB databases one environment may hold: one per partition plus the metadata database. */
export const defaultMaxDbs = 10_000;

/** Bytes of the storage checksum (CRC32C, big-endian) in front of every stored batch. */
export const storedChecksumBytes = 4;

/** Bytes of a key: the batch's base offset as an unsigned 64-bit big-endian integer. */
export const offsetKeyBytes = 8;

/** Largest offset a key can hold (offsets are int64 on the wire and never negative). */
export const maxOffset = (1n << 63n) - 1n;

/**
 * Bytes of a partition's most recent leader-appended batches kept in memory, so that followers and
 * consumers reading at the tail are served without touching LMDB's memory map: every page read
 * through the map stays resident in the broker (RssFile) for as long as the kernel leaves it there.
 */
export const maxTailCacheBytesPerPartition = 4 * 1024 * 1024;
