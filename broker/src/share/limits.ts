// Limits of the share-group paths on a broker. Request fields outside them are malformed requests
// (INVALID_ARGUMENT); the rest bound memory and work per broker. Values come from share.proto's comments.

/** Longest share group id and member id, in characters. */
export const maxShareGroupIdLength = 255;
export const maxShareMemberIdLength = 255;
/** Most records one ShareFetch may acquire. */
export const maxShareFetchRecords = 10_000;
/** Longest long poll a ShareFetch may ask for. */
export const maxShareFetchWaitMs = 60_000;
/** Lock durations a member may ask for; 0 in a request means defaultShareLockDurationMs. */
export const minShareLockDurationMs = 1_000;
export const maxShareLockDurationMs = 3_600_000;
export const defaultShareLockDurationMs = 30_000;
/** Longest delay a release may ask for. */
export const maxReleaseDelayMs = 86_400_000;
/** Longest failure reason, in UTF-8 bytes. */
export const maxAckReasonBytes = 1_024;
/** Acknowledgements one request may carry for one partition. */
export const maxAcknowledgementsPerPartition = 10_000;
/** Records one acknowledgement run may span (no window holds more, so a longer run cannot be acquired). */
export const maxAckRunRecords = 10_000;
/**
 * Batch bytes one ShareFetch answer aims to stay under. Records are acquired in rounds sized from the
 * bytes seen so far, so an answer may overshoot by one round; the gRPC limit (64 MiB) leaves room.
 */
export const maxShareFetchResponseBytes = 16 * 1024 * 1024;
/** Acquire rounds per partition per ShareFetch (each round reads the batches of what it acquired). */
export const maxAcquireRoundsPerPartition = 16;
/** Shortest wait of a long-polling ShareFetch between looks (a wake time already due is re-checked after it). */
export const minShareWaitMs = 5;
/** ShareFetches long-polling on this broker at once; more are answered THROTTLED at once. */
export const maxParkedShareFetches = 10_000;
/** Share partitions (group x partition) a broker keeps loaded; more are refused THROTTLED (idle ones are evicted first). */
export const maxLoadedSharePartitions = 10_000;
/** A share partition with nothing acquired, nothing to dead-letter and no request for this long is unloaded. */
export const shareIdleEvictionMs = 10 * 60_000;
/** How often the share manager expires locks, dead-letters, persists and wakes long polls. */
export const shareTickIntervalMs = 100;
/** Bytes read from the log per read when collecting the batches of acquired or dead-lettered records. */
export const shareReadChunkBytes = 1024 * 1024;
/** Dead letters produced per share partition per round. */
export const maxDeadLettersPerRound = 100;
/** Backoff between failed dead-letter rounds of one share partition. */
export const deadLetterRetryMinMs = 100;
export const deadLetterRetryMaxMs = 30_000;
/** Deadline of producing one round of dead letters (the client retries within it). */
export const deadLetterProduceTimeoutMs = 30_000;
/**
 * Share-state writes of one share partition in flight to the controller at once. Each waits for a
 * controller flush (fsync); letting a change go at once instead of after the write before it saves a
 * round trip per answer, and beyond this bound changes ride the next write (group commit).
 */
export const maxShareWritesInFlight = 4;
/** Batches each share partition keeps from its last log reads (the window's first batches and admission's current one). */
export const maxCachedBatchesPerSharePartition = 8;
/** Bytes of cached batches across all share partitions of a broker. */
export const maxShareBatchCacheBytes = 64 * 1024 * 1024;
