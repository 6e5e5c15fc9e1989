// Request validation at the gRPC edge: a request malformed as a whole throws InvalidRequest, which
// the handler answers with INVALID_ARGUMENT and the readable reason. Per-topic problems (bad names,
// counts, configs) are not malformed requests; the state machine answers them with error codes.
import { InvalidRequest } from "@runnel/common";
import type {
  AlterPartitionRequest,
  AlterTopicConfigsRequest,
  BrokerHeartbeatRequest,
  ConsumerGroupHeartbeatRequest,
  DescribeGroupsRequest,
  OffsetCommitRequest,
  OffsetFetchRequest,
  ControlledShutdownRequest,
  CreateTopicsRequest,
  DeleteTopicsRequest,
  InitProducerIdRequest,
  RegisterBrokerRequest,
  WatchMetadataRequest,
  DescribeShareGroupsRequest,
  ReadShareStateRequest,
  SharePartitionState,
  ShareGroupHeartbeatRequest,
  WriteShareStateRequest,
} from "@runnel/proto";
import { ShareRecordState } from "@runnel/proto";

export const maxHostChars = 255;
export const maxRackChars = 255;
export const maxIncarnationIdChars = 128;
/** Topics in one CreateTopics, DeleteTopics or AlterTopicConfigs request. */
export const maxTopicsPerRequest = 1000;
/** Configuration entries (set or removed) per topic in one request. */
export const maxConfigEntriesPerTopic = 64;
/** Longest configuration key or value accepted, in characters. */
export const maxConfigEntryChars = 1024;
/** Longest topic name looked at; longer ones are refused whole (valid names are at most 249). */
export const maxTopicNameCharsInRequest = 1024;
/** Members of a proposed ISR. */
export const maxIsrMembers = 1024;
const int32Max = 2 ** 31 - 1;

function check(condition: boolean, reason: () => string): void {
  if (!condition) throw new InvalidRequest(reason());
}

function checkBrokerId(brokerId: number): void {
  check(brokerId >= 0, () => `broker_id ${brokerId} must be >= 0`);
}

function checkBrokerEpoch(epoch: bigint): void {
  check(epoch >= 1n, () => `broker_epoch ${epoch} must be >= 1 (the epoch from RegisterBroker)`);
}

function checkTopicName(name: string, field: string): void {
  check(name.length <= maxTopicNameCharsInRequest, () => `${field} is ${name.length} characters; at most ${maxTopicNameCharsInRequest} are looked at`);
}

function checkConfigs(entries: [string, string][], removed: string[], topic: string): void {
  check(entries.length + removed.length <= maxConfigEntriesPerTopic, () => `topic ${topic}: ${entries.length + removed.length} config entries; at most ${maxConfigEntriesPerTopic}`);
  for (const [k, v] of entries) {
    check(k.length <= maxConfigEntryChars && v.length <= maxConfigEntryChars, () => `topic ${topic}: config entry "${k.slice(0, 64)}" is longer than ${maxConfigEntryChars} characters`);
  }
  for (const k of removed) check(k.length <= maxConfigEntryChars, () => `topic ${topic}: removed config key is longer than ${maxConfigEntryChars} characters`);
}

export function validateRegisterBroker(r: RegisterBrokerRequest): void {
  checkBrokerId(r.brokerId);
  check(r.host.length > 0 && r.host.length <= maxHostChars, () => `host must be 1 to ${maxHostChars} characters`);
  check(r.port >= 1 && r.port <= 65535, () => `port ${r.port} is outside 1..65535`);
  check(r.rack.length <= maxRackChars, () => `rack is longer than ${maxRackChars} characters`);
  check(r.incarnationId.length <= maxIncarnationIdChars, () => `incarnation_id is longer than ${maxIncarnationIdChars} characters`);
}

export function validateHeartbeat(r: BrokerHeartbeatRequest): void {
  checkBrokerId(r.brokerId);
  checkBrokerEpoch(r.brokerEpoch);
  check(r.metadataVersion >= 0n, () => `metadata_version ${r.metadataVersion} must be >= 0`);
}

export function validateWatchMetadata(r: WatchMetadataRequest): void {
  check(r.brokerId >= -1, () => `broker_id ${r.brokerId} must be a broker id (>= 0) or -1 for an observer`);
  if (r.brokerId >= 0) checkBrokerEpoch(r.brokerEpoch);
}

export function validateAlterPartition(r: AlterPartitionRequest): void {
  checkBrokerId(r.brokerId);
  checkBrokerEpoch(r.brokerEpoch);
  check(r.topic.length > 0, () => "topic is empty");
  checkTopicName(r.topic, "topic");
  check(r.partition >= 0, () => `partition ${r.partition} must be >= 0`);
  check(r.leaderEpoch >= 0, () => `leader_epoch ${r.leaderEpoch} must be >= 0`);
  check(r.partitionEpoch >= 0, () => `partition_epoch ${r.partitionEpoch} must be >= 0`);
  check(r.newIsr.length > 0, () => "new_isr is empty; it must include the leader");
  check(r.newIsr.length <= maxIsrMembers, () => `new_isr has ${r.newIsr.length} members; at most ${maxIsrMembers}`);
  check(r.newIsr.every((b) => b >= 0), () => `new_isr [${r.newIsr.join(",")}] has a negative broker id`);
}

export function validateControlledShutdown(r: ControlledShutdownRequest): void {
  checkBrokerId(r.brokerId);
  checkBrokerEpoch(r.brokerEpoch);
}

export function validateCreateTopics(r: CreateTopicsRequest): void {
  check(r.topics.length > 0, () => "topics is empty");
  check(r.topics.length <= maxTopicsPerRequest, () => `${r.topics.length} topics in one request; at most ${maxTopicsPerRequest}`);
  for (const t of r.topics) {
    checkTopicName(t.name, "topic name");
    checkConfigs(Object.entries(t.configs), [], t.name);
  }
}

export function validateDeleteTopics(r: DeleteTopicsRequest): void {
  check(r.names.length > 0, () => "names is empty");
  check(r.names.length <= maxTopicsPerRequest, () => `${r.names.length} topics in one request; at most ${maxTopicsPerRequest}`);
  for (const n of r.names) checkTopicName(n, "topic name");
}

export function validateAlterTopicConfigs(r: AlterTopicConfigsRequest): void {
  check(r.topics.length > 0, () => "topics is empty");
  check(r.topics.length <= maxTopicsPerRequest, () => `${r.topics.length} topics in one request; at most ${maxTopicsPerRequest}`);
  for (const t of r.topics) {
    checkTopicName(t.name, "topic name");
    checkConfigs(Object.entries(t.set), t.remove, t.name);
  }
}

export function validateInitProducerId(r: InitProducerIdRequest): void {
  check(r.producerId >= 0n, () => `producer_id ${r.producerId} must be >= 0`);
  if (r.producerId > 0n) check(r.producerEpoch >= 0 && r.producerEpoch <= int32Max, () => `producer_epoch ${r.producerEpoch} must be >= 0`);
}

/** Longest group, member, instance or client id looked at, in characters. */
export const maxGroupFieldChars = 1024;
/** Topics (or topic entries) in one group request. */
export const maxGroupTopicsPerRequest = 10_000;
/** Partitions listed in one group request. */
export const maxGroupPartitionsPerRequest = 100_000;
/** Longest rebalance timeout a member may ask for, in milliseconds. */
export const maxRebalanceTimeoutMs = 3_600_000;

function checkGroupField(value: string, field: string): void {
  check(value.length <= maxGroupFieldChars, () => `${field} is ${value.length} characters; at most ${maxGroupFieldChars} are looked at`);
}

function checkPartitionLists(topics: ReadonlyArray<{ topic: string; partitions: readonly number[] }>, field: string): void {
  check(topics.length <= maxGroupTopicsPerRequest, () => `${field}: ${topics.length} topics; at most ${maxGroupTopicsPerRequest}`);
  let n = 0;
  for (const t of topics) {
    checkTopicName(t.topic, `${field} topic`);
    n += t.partitions.length;
    check(t.partitions.every((p) => p >= 0), () => `${field}: topic ${t.topic} lists a negative partition`);
  }
  check(n <= maxGroupPartitionsPerRequest, () => `${field}: ${n} partitions; at most ${maxGroupPartitionsPerRequest}`);
}

export function validateConsumerGroupHeartbeat(r: ConsumerGroupHeartbeatRequest): void {
  checkGroupField(r.groupId, "group_id");
  checkGroupField(r.memberId, "member_id");
  checkGroupField(r.instanceId, "instance_id");
  checkGroupField(r.clientId, "client_id");
  check(r.memberEpoch >= -2, () => `member_epoch ${r.memberEpoch} must be >= -2`);
  check(r.memberEpoch === 0 || r.memberId !== "", () => `member_epoch ${r.memberEpoch} needs a member_id (join with member_epoch 0 first)`);
  check(r.rebalanceTimeoutMs >= 0 && r.rebalanceTimeoutMs <= maxRebalanceTimeoutMs, () => `rebalance_timeout_ms ${r.rebalanceTimeoutMs} is outside 0..${maxRebalanceTimeoutMs}`);
  check(r.subscribedTopicNames.length <= maxGroupTopicsPerRequest, () => `${r.subscribedTopicNames.length} subscribed topics; at most ${maxGroupTopicsPerRequest}`);
  for (const t of r.subscribedTopicNames) checkTopicName(t, "subscribed topic name");
  check(r.subscribedTopicNames.length === 0 || r.subscribedTopicRegex === "", () => "subscribe with topic names or a pattern, not both");
  checkGroupField(r.subscribedTopicRegex, "subscribed_topic_regex");
  checkGroupField(r.serverAssignor, "server_assignor");
  checkPartitionLists(r.ownedPartitions, "owned_partitions");
}

export function validateOffsetCommit(r: OffsetCommitRequest): void {
  checkGroupField(r.groupId, "group_id");
  checkGroupField(r.memberId, "member_id");
  check(r.topics.length <= maxGroupTopicsPerRequest, () => `${r.topics.length} topics; at most ${maxGroupTopicsPerRequest}`);
  let n = 0;
  for (const t of r.topics) {
    checkTopicName(t.topic, "topic");
    n += t.partitions.length;
  }
  check(n <= maxGroupPartitionsPerRequest, () => `${n} partitions; at most ${maxGroupPartitionsPerRequest}`);
}

export function validateOffsetFetch(r: OffsetFetchRequest): void {
  checkGroupField(r.groupId, "group_id");
  checkPartitionLists(r.topics, "topics");
}

export function validateDescribeGroups(r: DescribeGroupsRequest): void {
  check(r.groupIds.length <= maxTopicsPerRequest, () => `${r.groupIds.length} groups in one request; at most ${maxTopicsPerRequest}`);
  for (const id of r.groupIds) checkGroupField(id, "group id");
}

// ---------------------------------------------------------------------------------------------
// Share groups

/** Longest share group id, in characters. */
export const maxShareGroupIdChars = 255;
/** Longest share member id stored in a state or sent in a heartbeat, in characters. */
export const maxShareMemberIdChars = 255;
/** Topics a share member may subscribe to. */
export const maxShareSubscribedTopics = 1_000;
/** Ranges in one SharePartitionState (range-compressed, so this bounds the states' fragmentation). */
export const maxShareStateRanges = 20_000;
/** Longest last_failure of a range, in characters (members' reasons are at most 1024 bytes). */
export const maxShareFailureChars = 4_096;
/** Groups in one DescribeShareGroups request. */
export const maxShareGroupsPerDescribe = 1_000;
const shareRecordStates: ReadonlySet<number> = new Set([
  ShareRecordState.SHARE_RECORD_AVAILABLE,
  ShareRecordState.SHARE_RECORD_ACQUIRED,
  ShareRecordState.SHARE_RECORD_ARCHIVED,
  ShareRecordState.SHARE_RECORD_DEAD_LETTERING,
]);

function checkShareGroupId(groupId: string, field = "group_id"): void {
  check(groupId.length >= 1 && groupId.length <= maxShareGroupIdChars, () => `${field} is ${groupId.length} characters; it must be 1 to ${maxShareGroupIdChars}`);
}

export function validateShareGroupHeartbeat(r: ShareGroupHeartbeatRequest): void {
  checkShareGroupId(r.groupId);
  check(r.memberId.length <= maxShareMemberIdChars, () => `member_id is ${r.memberId.length} characters; at most ${maxShareMemberIdChars}`);
  checkGroupField(r.clientId, "client_id");
  check(r.memberEpoch >= -1, () => `member_epoch ${r.memberEpoch} must be 0 (join), -1 (leave) or the member's epoch`);
  check(r.memberEpoch === 0 || r.memberId !== "", () => `member_epoch ${r.memberEpoch} needs a member_id (join with member_epoch 0 first)`);
  check(r.subscribedTopicNames.length <= maxShareSubscribedTopics, () => `${r.subscribedTopicNames.length} subscribed topics; at most ${maxShareSubscribedTopics}`);
  for (const t of r.subscribedTopicNames) checkTopicName(t, "subscribed topic name");
}

export function validateDescribeShareGroups(r: DescribeShareGroupsRequest): void {
  check(r.groupIds.length <= maxShareGroupsPerDescribe, () => `${r.groupIds.length} groups in one request; at most ${maxShareGroupsPerDescribe}`);
  for (const id of r.groupIds) checkShareGroupId(id, "group id");
}

function checkShareStateCaller(r: ReadShareStateRequest | WriteShareStateRequest): void {
  checkBrokerId(r.brokerId);
  checkBrokerEpoch(r.brokerEpoch);
  checkShareGroupId(r.groupId);
  check(r.topic.length > 0, () => "topic is empty");
  checkTopicName(r.topic, "topic");
  check(r.partition >= 0, () => `partition ${r.partition} must be >= 0`);
  check(r.leaderEpoch >= 0, () => `leader_epoch ${r.leaderEpoch} must be >= 0`);
}

export function validateReadShareState(r: ReadShareStateRequest): void {
  checkShareStateCaller(r);
}

export function validateWriteShareState(r: WriteShareStateRequest): void {
  checkShareStateCaller(r);
  check(r.state !== undefined, () => "state is missing");
  checkSharePartitionState(r.state!, `${r.topic}-${r.partition}`);
}

/** A state a leader may write: window inside [0, int64), ranges sorted, not overlapping, inside the window. */
export function checkSharePartitionState(s: SharePartitionState, partition: string): void {
  check(s.startOffset >= 0n, () => `${partition}: start_offset ${s.startOffset} must be >= 0`);
  check(s.startOffset <= s.endOffset, () => `${partition}: start_offset ${s.startOffset} is after end_offset ${s.endOffset}`);
  check(s.ranges.length <= maxShareStateRanges, () => `${partition}: ${s.ranges.length} ranges; at most ${maxShareStateRanges}`);
  let previousLast = s.startOffset - 1n;
  for (const r of s.ranges) {
    const run = `${partition}: range [${r.firstOffset}, ${r.lastOffset}]`;
    check(r.firstOffset <= r.lastOffset, () => `${run} has first_offset after last_offset`);
    check(r.firstOffset > previousLast, () => `${run} is not after the previous range (ending at ${previousLast}) or starts before start_offset ${s.startOffset}; ranges must be sorted and not overlap`);
    check(r.lastOffset < s.endOffset, () => `${run} reaches end_offset ${s.endOffset} or beyond`);
    check(shareRecordStates.has(r.state), () => `${run} has state ${r.state}; it must be AVAILABLE, ACQUIRED, ARCHIVED or DEAD_LETTERING`);
    check(r.deliveryCount >= 0, () => `${run} has delivery_count ${r.deliveryCount}; it must be >= 0`);
    check(r.memberId.length <= maxShareMemberIdChars, () => `${run} has a member_id of ${r.memberId.length} characters; at most ${maxShareMemberIdChars}`);
    check(r.state !== ShareRecordState.SHARE_RECORD_ACQUIRED || r.memberId !== "", () => `${run} is ACQUIRED but names no member_id`);
    check(r.lockDeadlineMs >= 0n && r.availableAfterMs >= 0n, () => `${run} has a negative lock_deadline_ms or available_after_ms`);
    check(r.lastFailure.length <= maxShareFailureChars, () => `${run} has a last_failure of ${r.lastFailure.length} characters; at most ${maxShareFailureChars}`);
    previousLast = r.lastOffset;
  }
}
