// The commands of the consumer-group state machine (KIP-848 style: the coordinator assigns, members
// only heartbeat). Each takes the state, its input, the topics' partition counts and the time, and
// returns { state, response }. The adapter persists the new state, then answers.
//
// Reconciliation, per member heartbeat:
//  1. partitions the member no longer lists as owned are released from its `revoking` set;
//  2. partitions it holds but the target gives to others move from `assigned` to `revoking`;
//  3. while anything is being revoked the member keeps its epoch (it commits and confirms first);
//  4. once nothing is, it moves to the target epoch and is given every target partition that no
//     other member still holds (assigned or revoking); the rest follow on later heartbeats.
// So no partition is ever held by two members (checkNoDoubleOwnership), and members whose partitions
// do not move keep them through every rebalance.
//
// Timeouts, enforced by tickGroups (KIP-848): a member silent for the session timeout is removed; a
// member asked to revoke partitions that has not confirmed within its rebalance timeout (counted from
// when the revocation was asked) is fenced, i.e. removed, so a member that heartbeats but never lets go
// cannot block the partitions forever. A group without members for the offsets retention is deleted
// with its committed offsets, and offsets of deleted topics are dropped.
import { invariant } from "@runnel/common";
import { ErrorCode, type TopicPartitions } from "@runnel/proto";
import { assign, assignorNames, defaultAssignor, type AssignorMember, type AssignorName, type TopicAssignment } from "./assignors.js";
import {
  checkNoDoubleOwnership,
  type CommittedOffsetRecord,
  defaultGroupOffsetsRetentionMs,
  defaultMemberRebalanceTimeoutMs,
  fromKeys,
  type GroupConfig,
  type GroupRecord,
  type GroupsState,
  keysOf,
  type MemberRecord,
  memberKey,
  newGroup,
  noPartitions,
  offsetKey,
  type Partitions,
  samePartitions,
} from "./state.js";

/** Longest group id, in characters (the same bound as topic names). */
export const maxGroupIdChars = 249;
/** Groups the controller keeps at most; joining a new group past this is refused. */
export const maxGroups = 10_000;
/** Members per group at most. */
export const maxMembersPerGroup = 1_000;
/** Committed partitions per group at most. */
export const maxOffsetsPerGroup = 100_000;
/** Longest commit metadata, in characters (as documented in OffsetCommitPartition). */
export const maxCommitMetadataChars = 4096;
/** Longest subscription pattern, in characters. */
export const maxTopicRegexChars = 1024;
/** Epoch sentinels of ConsumerGroupHeartbeatRequest.member_epoch. */
export const joinEpoch = 0;
export const leaveEpoch = -1;
export const staticLeaveEpoch = -2;

export interface GroupResult<R> {
  state: GroupsState;
  response: R;
}

export interface GroupOutcome {
  errorCode: ErrorCode;
  errorMessage: string;
}

const ok: GroupOutcome = { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "" };

function fail(errorCode: ErrorCode, errorMessage: string): GroupOutcome {
  return { errorCode, errorMessage };
}

/** Partition count per existing topic: the only cluster metadata the group machine reads. */
export type PartitionCounts = ReadonlyMap<string, number>;

// ---------------------------------------------------------------------------------------------
// Heartbeat

export interface HeartbeatInput {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  instanceId: string;
  rebalanceTimeoutMs: number;
  subscribedTopicNames: readonly string[];
  subscribedTopicRegex: string;
  serverAssignor: string;
  ownedPartitions: readonly TopicPartitions[];
  clientId: string;
  /** A fresh id the adapter generated, used if this heartbeat creates a member. */
  newMemberId: string;
}

export interface HeartbeatResponse extends GroupOutcome {
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  /** The partitions the member should own now (undefined on error). */
  assignment: TopicPartitions[] | undefined;
}

export function groupIdProblem(groupId: string): string | undefined {
  if (groupId.length === 0) return "group id is empty";
  if (groupId.length > maxGroupIdChars) return `group id is ${groupId.length} characters; at most ${maxGroupIdChars}`;
  if (/[\u0000-\u001f]/.test(groupId)) return "group id contains control characters";
  return undefined;
}

export function toTopicPartitions(p: Partitions): TopicPartitions[] {
  return Object.keys(p).sort().map((topic) => ({ topic, partitions: [...p[topic]!] }));
}

function partitionsOf(list: readonly TopicPartitions[]): Partitions {
  const keys: string[] = [];
  for (const tp of list) for (const p of tp.partitions) keys.push(offsetKey(tp.topic, p));
  return fromKeys(keys);
}

/** The topics a member subscribes to, among those that exist (names, or a pattern matching whole names). */
export function subscribedTopics(member: Pick<MemberRecord, "subscribedTopicNames" | "subscribedTopicRegex">, counts: PartitionCounts): Set<string> {
  if (member.subscribedTopicRegex !== "") {
    const re = new RegExp(`^(?:${member.subscribedTopicRegex})$`);
    return new Set([...counts.keys()].filter((t) => re.test(t)));
  }
  return new Set(member.subscribedTopicNames.filter((t) => counts.has(t)));
}

function signatureOf(group: GroupRecord, counts: PartitionCounts): string {
  const topics = new Set<string>();
  for (const m of group.members.values()) for (const t of subscribedTopics(m, counts)) topics.add(t);
  return [...topics].sort().map((t) => `${t}:${counts.get(t)}`).join(",");
}

/** Recomputes the target assignment when the group epoch moved past the target's epoch. */
function withTarget(group: GroupRecord, counts: PartitionCounts): GroupRecord {
  if (group.targetEpoch === group.groupEpoch) return group;
  const members: AssignorMember[] = [...group.members.values()].map((m) => ({ memberId: m.memberId, topics: subscribedTopics(m, counts) }));
  const previous = new Map<string, TopicAssignment>();
  for (const [id, p] of group.targetAssignment) previous.set(id, new Map(Object.entries(p)));
  const computed = assign(group.assignor, { members, partitionCounts: counts, previous });
  const target = new Map<string, Partitions>();
  for (const [id, a] of computed) target.set(id, Object.fromEntries(a));
  return { ...group, targetAssignment: target, targetEpoch: group.groupEpoch };
}

function bumpIfTopicsChanged(group: GroupRecord, counts: PartitionCounts): GroupRecord {
  const signature = signatureOf(group, counts);
  if (signature === group.subscriptionSignature) return group;
  return { ...group, subscriptionSignature: signature, groupEpoch: group.groupEpoch + 1 };
}

/** Steps 1-4 of the header comment for one member. */
export function reconcile(group: GroupRecord, member: MemberRecord, owned: Partitions | undefined): MemberRecord {
  const target = keysOf(group.targetAssignment.get(member.memberId) ?? noPartitions);
  const assigned = keysOf(member.assigned);
  let revoking = keysOf(member.revoking);
  if (owned !== undefined) {
    const ownedKeys = keysOf(owned);
    revoking = new Set([...revoking].filter((k) => ownedKeys.has(k)));
  }
  for (const k of assigned) {
    if (!target.has(k)) {
      assigned.delete(k);
      revoking.add(k);
    }
  }
  if (revoking.size > 0) {
    return { ...member, assigned: fromKeys(assigned), revoking: fromKeys(revoking) };
  }
  const heldByOthers = new Set<string>();
  for (const other of group.members.values()) {
    if (other.memberId === member.memberId) continue;
    for (const k of keysOf(other.assigned)) heldByOthers.add(k);
    for (const k of keysOf(other.revoking)) heldByOthers.add(k);
  }
  for (const k of target) if (!heldByOthers.has(k)) assigned.add(k);
  const epochMoves = member.memberEpoch !== group.targetEpoch;
  return {
    ...member,
    assigned: fromKeys(assigned),
    revoking: noPartitions,
    memberEpoch: group.targetEpoch,
    previousMemberEpoch: epochMoves ? member.memberEpoch : member.previousMemberEpoch,
  };
}

/** Stores the group; an empty group's offsets retention starts when it becomes empty. */
function putGroup(state: GroupsState, group: GroupRecord, nowMs: number): GroupsState {
  checkNoDoubleOwnership(group);
  const emptySinceMs = group.members.size > 0 ? undefined : (group.emptySinceMs ?? nowMs);
  const groups = new Map(state.groups);
  groups.set(group.groupId, emptySinceMs === group.emptySinceMs ? group : { ...group, emptySinceMs });
  return { ...state, groups };
}

function setHeartbeat(state: GroupsState, groupId: string, memberId: string, nowMs: number): GroupsState {
  const lastHeartbeatMs = new Map(state.lastHeartbeatMs);
  lastHeartbeatMs.set(memberKey(groupId, memberId), nowMs);
  return { ...state, lastHeartbeatMs };
}

function setRevocationDeadline(state: GroupsState, groupId: string, memberId: string, deadlineMs: number | undefined): GroupsState {
  const key = memberKey(groupId, memberId);
  if (state.revocationDeadlineMs.get(key) === deadlineMs) return state;
  const revocationDeadlineMs = new Map(state.revocationDeadlineMs);
  if (deadlineMs === undefined) revocationDeadlineMs.delete(key);
  else revocationDeadlineMs.set(key, deadlineMs);
  return { ...state, revocationDeadlineMs };
}

/** Drops the volatile timers of a member that is removed or replaced. */
function forgetMember(state: GroupsState, groupId: string, memberId: string): GroupsState {
  const lastHeartbeatMs = new Map(state.lastHeartbeatMs);
  lastHeartbeatMs.delete(memberKey(groupId, memberId));
  return setRevocationDeadline({ ...state, lastHeartbeatMs }, groupId, memberId, undefined);
}

function rebalanceTimeoutOf(member: MemberRecord): number {
  return member.rebalanceTimeoutMs > 0 ? member.rebalanceTimeoutMs : defaultMemberRebalanceTimeoutMs;
}

/**
 * The rebalance-timeout rule: the deadline is set when revocation is asked of the member (its
 * `revoking` set gains partitions), kept while it confirms part of them, and cleared once nothing is
 * left to revoke.
 */
function withRevocationDeadline(state: GroupsState, groupId: string, before: MemberRecord, after: MemberRecord, nowMs: number): GroupsState {
  const revoking = keysOf(after.revoking);
  if (revoking.size === 0) return setRevocationDeadline(state, groupId, after.memberId, undefined);
  const previous = keysOf(before.revoking);
  const asked = [...revoking].some((k) => !previous.has(k));
  const current = state.revocationDeadlineMs.get(memberKey(groupId, after.memberId));
  if (!asked && current !== undefined) return state;
  return setRevocationDeadline(state, groupId, after.memberId, nowMs + rebalanceTimeoutOf(after));
}

function withoutMember(group: GroupRecord, memberId: string): GroupRecord {
  const members = new Map(group.members);
  members.delete(memberId);
  const targetAssignment = new Map(group.targetAssignment);
  targetAssignment.delete(memberId);
  return { ...group, members, targetAssignment, groupEpoch: group.groupEpoch + 1 };
}

export function heartbeat(state: GroupsState, input: HeartbeatInput, counts: PartitionCounts, nowMs: number, config: GroupConfig): GroupResult<HeartbeatResponse> {
  const answer = (s: GroupsState, outcome: GroupOutcome, memberId = input.memberId, memberEpoch = input.memberEpoch, assignment?: TopicPartitions[]): GroupResult<HeartbeatResponse> => ({
    state: s,
    response: { ...outcome, memberId, memberEpoch, heartbeatIntervalMs: config.heartbeatIntervalMs, assignment },
  });
  const idProblem = groupIdProblem(input.groupId);
  if (idProblem !== undefined) return answer(state, fail(ErrorCode.INVALID_GROUP_ID, idProblem));
  if (input.serverAssignor !== "" && !assignorNames.includes(input.serverAssignor as AssignorName)) {
    return answer(state, fail(ErrorCode.INVALID_REQUEST, `unknown assignor "${input.serverAssignor}"; use one of ${assignorNames.join(", ")}`));
  }
  if (input.subscribedTopicRegex !== "") {
    if (input.subscribedTopicRegex.length > maxTopicRegexChars) return answer(state, fail(ErrorCode.INVALID_REQUEST, `subscribed topic regex is longer than ${maxTopicRegexChars} characters`));
    try {
      new RegExp(input.subscribedTopicRegex);
    } catch (err) {
      return answer(state, fail(ErrorCode.INVALID_REQUEST, `subscribed topic regex does not compile: ${(err as Error).message}`));
    }
  }
  let group = state.groups.get(input.groupId);
  if (group === undefined) {
    if (input.memberEpoch !== joinEpoch) return answer(state, fail(ErrorCode.UNKNOWN_MEMBER_ID, `group ${input.groupId} has no member ${input.memberId}; join with member epoch 0`));
    if (state.groups.size >= maxGroups) return answer(state, fail(ErrorCode.INVALID_REQUEST, `the controller holds ${maxGroups} groups, its limit`));
    group = newGroup(input.groupId, (input.serverAssignor || defaultAssignor) as AssignorName);
  }
  let s = state;

  // --- leaving
  if (input.memberEpoch === leaveEpoch || input.memberEpoch === staticLeaveEpoch) {
    const member = group.members.get(input.memberId);
    if (member === undefined) return answer(s, ok); // already gone: leaving is idempotent
    if (input.memberEpoch === staticLeaveEpoch && member.instanceId !== "") {
      // A static member keeps its place (and assigned partitions) until its session times out, counted
      // from this leave, or a new incarnation rejoins with its instance id. Epoch -2 marks the instance
      // id as released (and fences the old process). What it was revoking is released: the process
      // committed and stopped reading before leaving.
      const left: MemberRecord = { ...member, memberEpoch: staticLeaveEpoch, previousMemberEpoch: staticLeaveEpoch, revoking: noPartitions };
      group = { ...group, members: new Map(group.members).set(left.memberId, left) };
      s = setRevocationDeadline(setHeartbeat(s, group.groupId, left.memberId, nowMs), group.groupId, left.memberId, undefined);
      return answer(putGroup(s, group, nowMs), ok, left.memberId, staticLeaveEpoch);
    }
    s = forgetMember(s, group.groupId, member.memberId);
    group = withTarget(bumpIfTopicsChanged(withoutMember(group, member.memberId), counts), counts);
    return answer(putGroup(s, group, nowMs), ok, member.memberId, leaveEpoch);
  }

  let member: MemberRecord | undefined;
  if (input.memberEpoch === joinEpoch) {
    const byInstance = input.instanceId === "" ? undefined : [...group.members.values()].find((m) => m.instanceId === input.instanceId);
    if (byInstance !== undefined && byInstance.memberEpoch !== staticLeaveEpoch && byInstance.memberId !== input.memberId) {
      // KIP-848's UNRELEASED_INSTANCE_ID, fatal to the newcomer: two live processes with one instance id
      // is a configuration mistake, and retrying would hide it. Not FENCED_MEMBER_EPOCH: that tells a
      // member to drop its partitions and rejoin, which loops here.
      // The same incarnation (it knows the member id) may rejoin, e.g. after FENCED_MEMBER_EPOCH.
      return answer(s, fail(ErrorCode.UNRELEASED_INSTANCE_ID, `instance id "${input.instanceId}" is held by member ${byInstance.memberId} of group ${group.groupId}, which has not left: the running process must leave with member epoch -2 first, or its session must expire (${config.sessionTimeoutMs} ms without a heartbeat)`));
    }
    if (input.memberId !== "" && group.members.has(input.memberId) && group.members.get(input.memberId) !== byInstance) {
      // The same dynamic member joins again (it lost its partitions, e.g. after being fenced).
      s = forgetMember(s, group.groupId, input.memberId);
      group = withoutMember(group, input.memberId);
    }
    if (byInstance !== undefined) {
      // Static membership: the new incarnation takes the old one's place and assigned partitions; it
      // starts at epoch 0 and reconciles to the target like any joining member (keeping what the
      // target still gives it).
      const members = new Map(group.members);
      members.delete(byInstance.memberId);
      member = { ...byInstance, memberId: input.newMemberId, clientId: input.clientId, rebalanceTimeoutMs: input.rebalanceTimeoutMs, memberEpoch: 0, previousMemberEpoch: 0, revoking: noPartitions };
      members.set(member.memberId, member);
      const targetAssignment = new Map(group.targetAssignment);
      const t = targetAssignment.get(byInstance.memberId);
      targetAssignment.delete(byInstance.memberId);
      if (t !== undefined) targetAssignment.set(member.memberId, t);
      group = { ...group, members, targetAssignment };
      s = forgetMember(s, group.groupId, byInstance.memberId);
    } else {
      if (group.members.size >= maxMembersPerGroup) return answer(s, fail(ErrorCode.INVALID_REQUEST, `group ${group.groupId} has ${maxMembersPerGroup} members, its limit`));
      if (input.subscribedTopicNames.length === 0 && input.subscribedTopicRegex === "") {
        return answer(s, fail(ErrorCode.INVALID_REQUEST, "a joining member must subscribe to topic names or a pattern"));
      }
      member = {
        memberId: input.newMemberId,
        instanceId: input.instanceId,
        clientId: input.clientId,
        memberEpoch: 0,
        previousMemberEpoch: 0,
        subscribedTopicNames: [],
        subscribedTopicRegex: "",
        rebalanceTimeoutMs: input.rebalanceTimeoutMs,
        assigned: noPartitions,
        revoking: noPartitions,
      };
      const members = new Map(group.members);
      members.set(member.memberId, member);
      group = { ...group, members, groupEpoch: group.groupEpoch + 1 };
    }
  } else {
    member = group.members.get(input.memberId);
    if (member === undefined) return answer(s, fail(ErrorCode.UNKNOWN_MEMBER_ID, `group ${group.groupId} has no member ${input.memberId} (it left or its session expired); join again with member epoch 0`));
    if (input.memberEpoch !== member.memberEpoch && input.memberEpoch !== member.previousMemberEpoch) {
      return answer(s, fail(ErrorCode.FENCED_MEMBER_EPOCH, `member ${member.memberId} of group ${group.groupId} sent epoch ${input.memberEpoch}; its epoch is ${member.memberEpoch}; join again with member epoch 0`));
    }
  }

  // --- subscription changes (empty means unchanged)
  if (input.subscribedTopicRegex !== "" && input.subscribedTopicRegex !== member.subscribedTopicRegex) {
    member = { ...member, subscribedTopicRegex: input.subscribedTopicRegex, subscribedTopicNames: [] };
    group = { ...group, groupEpoch: group.groupEpoch + 1 };
  } else if (input.subscribedTopicRegex === "" && input.subscribedTopicNames.length > 0) {
    const names = [...new Set(input.subscribedTopicNames)].sort();
    if (member.subscribedTopicRegex !== "" || names.join("\u0000") !== member.subscribedTopicNames.join("\u0000")) {
      member = { ...member, subscribedTopicNames: names, subscribedTopicRegex: "" };
      group = { ...group, groupEpoch: group.groupEpoch + 1 };
    }
  }
  if (input.serverAssignor !== "" && input.serverAssignor !== group.assignor) {
    group = { ...group, assignor: input.serverAssignor as AssignorName, groupEpoch: group.groupEpoch + 1 };
  }
  group = { ...group, members: new Map(group.members).set(member.memberId, member) };
  group = withTarget(bumpIfTopicsChanged(group, counts), counts);
  // Members always report what they own (nothing, when joining), which confirms revocations.
  const before = group.members.get(member.memberId)!;
  const reconciled = reconcile(group, before, partitionsOf(input.ownedPartitions));
  group = { ...group, members: new Map(group.members).set(reconciled.memberId, reconciled) };
  s = setHeartbeat(putGroup(s, group, nowMs), group.groupId, reconciled.memberId, nowMs);
  s = withRevocationDeadline(s, group.groupId, before, reconciled, nowMs);
  return answer(s, ok, reconciled.memberId, reconciled.memberEpoch, toTopicPartitions(reconciled.assigned));
}

// ---------------------------------------------------------------------------------------------
// Timeouts and retention

export interface GroupTickResult {
  /** "group/member" of every member whose session expired. */
  expiredMembers: string[];
  /** "group/member" of every member fenced for not confirming a revocation within its rebalance timeout. */
  revocationTimedOutMembers: string[];
  /** Groups deleted with their committed offsets after having no members for the offsets retention. */
  expiredGroups: string[];
  /** "group/topic" for each group's committed offsets of a deleted topic, dropped. */
  droppedOffsetTopics: string[];
}

/** Whether the set of existing topics changed since `before`, and whether any topic of it is gone. */
function topicChanges(before: ReadonlySet<string> | undefined, counts: PartitionCounts): { changed: boolean; deleted: boolean } {
  if (before === undefined) return { changed: true, deleted: true };
  let deleted = false;
  for (const t of before) if (!counts.has(t)) deleted = true;
  return { changed: deleted || before.size !== counts.size, deleted };
}

/**
 * The timers of the group machine, run on every controller tick:
 *  - members whose last heartbeat is older than the session timeout are removed;
 *  - members still revoking partitions past their rebalance timeout are fenced (removed): their next
 *    heartbeat gets UNKNOWN_MEMBER_ID and they rejoin; either way their partitions move to others;
 *  - groups that have had no members for the offsets retention are deleted with their offsets;
 *  - committed offsets of topics that no longer exist are dropped (checked when a topic disappears:
 *    commits to topics that do not exist are refused, so nothing else can leave such offsets).
 */
export function tickGroups(state: GroupsState, counts: PartitionCounts, nowMs: number, config: GroupConfig): GroupResult<GroupTickResult> {
  const retentionMs = config.offsetsRetentionMs ?? defaultGroupOffsetsRetentionMs;
  const response: GroupTickResult = { expiredMembers: [], revocationTimedOutMembers: [], expiredGroups: [], droppedOffsetTopics: [] };
  const topics = topicChanges(state.topicsAtLastOffsetSweep, counts);
  let s = topics.changed ? { ...state, topicsAtLastOffsetSweep: new Set(counts.keys()) } : state;
  for (const group of state.groups.values()) {
    let g = group;
    for (const m of group.members.values()) {
      const key = memberKey(group.groupId, m.memberId);
      const last = state.lastHeartbeatMs.get(key);
      const deadline = state.revocationDeadlineMs.get(key);
      if (last === undefined || nowMs - last > config.sessionTimeoutMs) {
        response.expiredMembers.push(`${group.groupId}/${m.memberId}`);
      } else if (deadline !== undefined && nowMs > deadline) {
        invariant(Object.keys(m.revoking).length > 0, () => `group ${group.groupId}: member ${m.memberId} has a revocation deadline (${deadline} ms) but nothing to revoke`);
        response.revocationTimedOutMembers.push(`${group.groupId}/${m.memberId}`);
      } else {
        continue;
      }
      g = withoutMember(g, m.memberId);
      s = forgetMember(s, group.groupId, m.memberId);
    }
    if (g !== group) g = withTarget(bumpIfTopicsChanged(g, counts), counts);
    if (topics.deleted) {
      const gone = new Set<string>();
      const offsets = new Map(g.offsets);
      for (const k of g.offsets.keys()) {
        const topic = k.slice(0, k.lastIndexOf("\u0000"));
        if (counts.has(topic)) continue;
        offsets.delete(k);
        gone.add(topic);
      }
      if (gone.size > 0) {
        g = { ...g, offsets };
        for (const t of [...gone].sort()) response.droppedOffsetTopics.push(`${group.groupId}/${t}`);
      }
    }
    if (g.members.size === 0 && g.emptySinceMs !== undefined && nowMs - g.emptySinceMs >= retentionMs) {
      const groups = new Map(s.groups);
      groups.delete(group.groupId);
      s = { ...s, groups };
      response.expiredGroups.push(group.groupId);
      continue;
    }
    if (g !== group) s = putGroup(s, g, nowMs);
  }
  return { state: s, response };
}

/**
 * After a controller restart: every member gets one session timeout of grace from nowMs, and a member
 * that was revoking partitions gets its whole rebalance timeout again (the deadlines are not stored).
 */
export function graceAfterLoad(state: GroupsState, nowMs: number): GroupsState {
  const lastHeartbeatMs = new Map<string, number>();
  const revocationDeadlineMs = new Map<string, number>();
  for (const g of state.groups.values()) {
    for (const m of g.members.values()) {
      lastHeartbeatMs.set(memberKey(g.groupId, m.memberId), nowMs);
      if (Object.keys(m.revoking).length > 0) revocationDeadlineMs.set(memberKey(g.groupId, m.memberId), nowMs + rebalanceTimeoutOf(m));
    }
  }
  return { ...state, lastHeartbeatMs, revocationDeadlineMs };
}

// ---------------------------------------------------------------------------------------------
// Offsets

export interface OffsetCommitInput {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  topics: ReadonlyArray<{ topic: string; partitions: ReadonlyArray<{ partition: number; committedOffset: bigint; committedLeaderEpoch: number; metadata: string }> }>;
}

export interface OffsetCommitResult extends GroupOutcome {
  topics: Array<{ topic: string; partitions: Array<{ partition: number; errorCode: ErrorCode; errorMessage: string }> }>;
}

export function offsetCommit(state: GroupsState, input: OffsetCommitInput, counts: PartitionCounts, nowMs: number): GroupResult<OffsetCommitResult> {
  const whole = (o: GroupOutcome): GroupResult<OffsetCommitResult> => ({
    state,
    response: { ...o, topics: input.topics.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => ({ partition: p.partition, ...o })) })) },
  });
  const idProblem = groupIdProblem(input.groupId);
  if (idProblem !== undefined) return whole(fail(ErrorCode.INVALID_GROUP_ID, idProblem));
  let group = state.groups.get(input.groupId);
  if (input.memberId === "") {
    if (group !== undefined && group.members.size > 0) {
      return whole(fail(ErrorCode.NON_EMPTY_GROUP, `group ${input.groupId} has ${group.members.size} members; offsets can be set from outside only while it has none`));
    }
    if (group === undefined && state.groups.size >= maxGroups) return whole(fail(ErrorCode.INVALID_REQUEST, `the controller holds ${maxGroups} groups, its limit`));
    group ??= newGroup(input.groupId, defaultAssignor);
  } else {
    const member = group?.members.get(input.memberId);
    if (group === undefined || member === undefined) return whole(fail(ErrorCode.UNKNOWN_MEMBER_ID, `group ${input.groupId} has no member ${input.memberId}`));
    // A negative epoch never commits: -2 marks a static member that left (its instance id released).
    if (input.memberEpoch < 0 || (input.memberEpoch !== member.memberEpoch && input.memberEpoch !== member.previousMemberEpoch)) {
      return whole(fail(ErrorCode.FENCED_MEMBER_EPOCH, `member ${input.memberId} of group ${input.groupId} committed with epoch ${input.memberEpoch}; its epoch is ${member.memberEpoch}`));
    }
  }
  const offsets = new Map(group.offsets);
  const topics: OffsetCommitResult["topics"] = [];
  for (const t of input.topics) {
    const count = counts.get(t.topic);
    const results: OffsetCommitResult["topics"][number]["partitions"] = [];
    for (const p of t.partitions) {
      let o: GroupOutcome = ok;
      if (count === undefined || p.partition < 0 || p.partition >= count) o = fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic ${t.topic} has no partition ${p.partition}`);
      else if (p.committedOffset < 0n) o = fail(ErrorCode.INVALID_REQUEST, `committed offset ${p.committedOffset} for ${t.topic}-${p.partition} must be >= 0`);
      else if (p.metadata.length > maxCommitMetadataChars) o = fail(ErrorCode.INVALID_REQUEST, `commit metadata for ${t.topic}-${p.partition} is longer than ${maxCommitMetadataChars} characters`);
      else if (!offsets.has(offsetKey(t.topic, p.partition)) && offsets.size >= maxOffsetsPerGroup) o = fail(ErrorCode.INVALID_REQUEST, `group ${input.groupId} has offsets for ${maxOffsetsPerGroup} partitions, its limit`);
      if (o === ok) {
        const record: CommittedOffsetRecord = { offset: p.committedOffset, leaderEpoch: p.committedLeaderEpoch, metadata: p.metadata, commitTimestampMs: nowMs };
        offsets.set(offsetKey(t.topic, p.partition), record);
      }
      results.push({ partition: p.partition, ...o });
    }
    topics.push({ topic: t.topic, partitions: results });
  }
  // A commit from outside to an empty group restarts its offsets retention (it is in use).
  group = { ...group, offsets, emptySinceMs: group.members.size === 0 ? nowMs : group.emptySinceMs };
  return { state: putGroup(state, group, nowMs), response: { ...ok, topics } };
}

export interface CommittedOffsetView {
  topic: string;
  partition: number;
  committedOffset: bigint;
  committedLeaderEpoch: number;
  metadata: string;
}

/** Committed offsets of the requested partitions (-1 when none), or of every committed partition. */
export function offsetFetch(state: GroupsState, groupId: string, topics: readonly TopicPartitions[]): CommittedOffsetView[] {
  const group = state.groups.get(groupId);
  const view = (topic: string, partition: number): CommittedOffsetView => {
    const o = group?.offsets.get(offsetKey(topic, partition));
    return { topic, partition, committedOffset: o?.offset ?? -1n, committedLeaderEpoch: o?.leaderEpoch ?? -1, metadata: o?.metadata ?? "" };
  };
  if (topics.length > 0) return topics.flatMap((t) => t.partitions.map((p) => view(t.topic, p)));
  if (group === undefined) return [];
  return [...group.offsets.keys()].map((k) => {
    const sep = k.lastIndexOf("\u0000");
    return view(k.slice(0, sep), Number(k.slice(sep + 1)));
  }).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
}

// ---------------------------------------------------------------------------------------------
// Describe

export type GroupStateName = "empty" | "assigning" | "reconciling" | "stable" | "dead";

export function groupStateOf(group: GroupRecord): GroupStateName {
  if (group.members.size === 0) return "empty";
  if (group.targetEpoch !== group.groupEpoch) return "assigning";
  for (const m of group.members.values()) {
    if (m.memberEpoch !== group.targetEpoch || Object.keys(m.revoking).length > 0) return "reconciling";
    if (!samePartitions(m.assigned, group.targetAssignment.get(m.memberId) ?? noPartitions)) return "reconciling";
  }
  return "stable";
}

export function listGroups(state: GroupsState): Array<{ groupId: string; state: GroupStateName; memberCount: number }> {
  return [...state.groups.values()]
    .map((g) => ({ groupId: g.groupId, state: groupStateOf(g), memberCount: g.members.size }))
    .sort((a, b) => (a.groupId < b.groupId ? -1 : 1));
}

export function describeGroup(state: GroupsState, groupId: string) {
  const g = state.groups.get(groupId);
  if (g === undefined) {
    return { groupId, errorCode: ErrorCode.GROUP_ID_NOT_FOUND, errorMessage: `group ${groupId} does not exist`, state: "dead", groupEpoch: -1, assignor: "", members: [], offsets: [] };
  }
  invariant(g.targetEpoch <= g.groupEpoch, () => `group ${groupId}: target epoch ${g.targetEpoch} is ahead of group epoch ${g.groupEpoch}`);
  return {
    groupId,
    errorCode: ErrorCode.ERROR_CODE_NONE,
    errorMessage: "",
    state: groupStateOf(g),
    groupEpoch: g.groupEpoch,
    assignor: g.assignor,
    members: [...g.members.values()].sort((a, b) => (a.memberId < b.memberId ? -1 : 1)).map((m) => ({
      memberId: m.memberId,
      instanceId: m.instanceId,
      clientId: m.clientId,
      memberEpoch: m.memberEpoch,
      subscribedTopicNames: m.subscribedTopicRegex !== "" ? [`/${m.subscribedTopicRegex}/`] : [...m.subscribedTopicNames],
      assignment: toTopicPartitions(m.assigned),
      targetAssignment: toTopicPartitions(g.targetAssignment.get(m.memberId) ?? noPartitions),
    })),
    offsets: offsetFetch(state, groupId, []),
  };
}
