// DescribeShareGroups: members (from the in-memory membership) and every stored partition state of
// the group, with topic names resolved from topic ids (states of deleted topics are left out).
import { type DescribeShareGroupsResponse, ErrorCode, type ShareGroupDescription, type ShareGroupPartition } from "@runnel/proto";
import type { ClusterState } from "../metadata/index.js";
import type { ShareMembership } from "./membership.js";
import type { ShareStateStore } from "./state-store.js";

/** Topic id -> topic name of the live topics. */
export function topicNamesById(state: ClusterState): Map<string, string> {
  return new Map([...state.topics.values()].map((t) => [t.topicId, t.name]));
}

export function describeShareGroup(groupId: string, membership: ShareMembership, store: ShareStateStore, names: ReadonlyMap<string, string>, nowMs: number): ShareGroupDescription {
  const members = membership.members(groupId).map((m) => ({
    memberId: m.memberId,
    clientId: m.clientId,
    subscribedTopicNames: [...m.subscribedTopicNames],
    lastHeartbeatAgeMs: BigInt(Math.max(0, nowMs - m.lastHeartbeatMs)),
  }));
  const partitions: ShareGroupPartition[] = [];
  for (const s of store.statesOf(groupId)) {
    const topic = names.get(s.topicId);
    if (topic === undefined) continue;
    partitions.push({ topic, partition: s.partition, state: s.state, leaderEpoch: s.leaderEpoch });
  }
  partitions.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  if (members.length === 0 && partitions.length === 0) {
    return { groupId, errorCode: ErrorCode.GROUP_ID_NOT_FOUND, errorMessage: `share group ${groupId} has no members and no stored state`, members: [], partitions: [] };
  }
  return { groupId, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", members, partitions };
}

/** The named groups, or (none named) every group known by its members or its stored state, sorted. */
export function describeShareGroups(groupIds: readonly string[], membership: ShareMembership, store: ShareStateStore, state: ClusterState, nowMs: number): DescribeShareGroupsResponse {
  const names = topicNamesById(state);
  let ids: readonly string[] = groupIds;
  if (ids.length === 0) {
    ids = [...new Set([...membership.groupIds(), ...store.groupIds()])].sort();
  }
  const groups = ids.map((id) => describeShareGroup(id, membership, store, names, nowMs));
  // With no names given, a group known only by states of deleted topics is not "known".
  return { groups: groupIds.length === 0 ? groups.filter((g) => g.errorCode === ErrorCode.ERROR_CODE_NONE) : groups };
}
