// @runnel/client: the TypeScript client library for Runnel. Folders by concern (KafkaJS-like):
// errors/ (one ErrorCode -> class table), retry/ (the one backoff policy), network/ (a gRPC client
// per peer, deadlines on every call), metadata/ (cluster cache, leader routing, offset lookups),
// producer/, consumer/, admin/, groups/ (consumer groups), share/ (share groups, dead letters), tasks/
// (task queues on share groups), and cli/ (the `runnel` command built on the same API).
export { Runnel, type RunnelOptions } from "./client.js";
export * from "./errors/index.js";
export { defaultRetryPolicy, retryPolicy, backoffMs, decideRetry, withRetry, type RetryOptions, type RetryPolicy } from "./retry/index.js";
export { ChannelPool, defaultRequestTimeoutMs } from "./network/index.js";
export { ClusterMetadata, parseBootstrap, type TopicInfo, type PartitionInfo, type BrokerInfo } from "./metadata/index.js";
export type { OffsetQuery, PartitionOffset } from "./metadata/offsets.js";
export {
  Producer, murmur2, toPositive, partitionForKey, StickyPartitioner,
  defaultLingerMs, defaultBatchMaxBytes, defaultBufferMaxBytes, defaultMaxInFlightPerPartition, defaultMaxInFlightPerBroker,
  type Acks, type ProducerOptions, type ProducerRecordInput, type RecordMetadata, type BytesInput,
} from "./producer/index.js";
export {
  Consumer, defaultMaxWaitMs, defaultMaxPrefetchBytes,
  type ConsumerOptions, type ConsumerRecord, type ConsumerHeader, type TopicPartition, type SeekTarget, type ResetPolicy,
} from "./consumer/index.js";
export { Admin, type NewTopic, type TopicOutcome, type TopicDescription, type ClusterDescription, type BrokerStatus } from "./admin/index.js";
export {
  GroupConsumer, GroupAdmin, diffAssignment, defaultAutoCommitIntervalMs,
  type GroupConsumerOptions, type RebalanceListeners, type GroupListing, type GroupDescription, type GroupMember, type GroupPartitionLag, type OffsetResetTarget,
} from "./groups/index.js";
export {
  ShareConsumer, ShareAdmin, coalesceAcks, acquiredFromBatches, summarizeSharePartition, parseDeadLetter,
  defaultMaxInFlightRecords, defaultLockDurationMs, defaultShareMaxWaitMs, defaultPollTimeoutMs, ackLingerMs,
  type ShareConsumerOptions, type ShareRecord, type AckResult, type AckType, type ShareGroupListing, type ShareGroupMemberDescription,
  type SharePartitionSummary, type ShareGroupDescriptionResult, type DeadLetter, type DlqRedriveResult,
} from "./share/index.js";
export {
  Tasks, TaskWorker, backoffDelayMs, effectiveMaxAttempts, decideOnFailure, buildTaskHeaders, maxAttemptsHeader, defaultBackoff, defaultWorkerCloseTimeoutMs,
  type Job, type EnqueueOptions, type WorkerOptions, type QueueOptions, type BackoffOptions, type FailureDecision,
} from "./tasks/index.js";
