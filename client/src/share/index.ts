// client/src/share: share groups on the client side (task-queue consumption). ShareConsumer is a
// share-group member (heartbeats to the controller, ShareFetch/ShareAcknowledge to partition leaders,
// acknowledgements coalesced into runs); ShareAdmin lists and describes share groups and lists and
// redrives dead letters. The pure rules (ack coalescing, acquired-record filtering) are in acks.ts.
export {
  ShareConsumer, defaultMaxInFlightRecords, defaultLockDurationMs, defaultShareMaxWaitMs, defaultPollTimeoutMs, ackLingerMs,
  maxShareFetchWaitMs, minLockDurationMs, maxLockDurationMs, maxRecordsPerShareFetch, maxUnreportedAckResults,
  type ShareConsumerOptions, type ShareRecord, type AckResult,
} from "./consumer.js";
export { coalesceAcks, acquiredFromBatches, splitRecordBudget, truncateReason, maxReleaseDelayMs, maxReasonBytes, type AckType, type PendingAck, type AcquiredRecord, type AcquiredBatches } from "./acks.js";
export {
  ShareAdmin, summarizeSharePartition, parseDeadLetter, resolveDeadLetterTopic, topicConfigOf, defaultDlqListMaxRecords, dlqReadTimeoutMs,
  type ShareGroupListing, type ShareGroupMemberDescription, type SharePartitionSummary, type ShareGroupDescriptionResult, type DeadLetter, type DlqRedriveResult,
} from "./admin.js";
