// The consumer-group state: plain immutable data, replaced (never mutated) by the commands. What is
// durable (groups with members, epochs, assignments, subscriptions, when an empty group became empty;
// committed offsets) is persisted by the store; member heartbeat times and revocation deadlines are
// volatile and rebuilt at load (one session timeout, and one rebalance timeout, of grace).
import { invariant } from "@runnel/common";
import type { AssignorName } from "./assignors.js";

/** topic -> sorted partition indexes (JSON-friendly; a topic with no partitions is left out). */
export type Partitions = Readonly<Record<string, readonly number[]>>;

export interface MemberRecord {
  readonly memberId: string;
  /** Static membership id, or "". */
  readonly instanceId: string;
  readonly clientId: string;
  /** The member's epoch: equals the group's target epoch once it reconciled to that target. */
  readonly memberEpoch: number;
  /** The epoch before the last bump: a request carrying it is still accepted (its answer may have been lost). */
  readonly previousMemberEpoch: number;
  readonly subscribedTopicNames: readonly string[];
  readonly subscribedTopicRegex: string;
  readonly rebalanceTimeoutMs: number;
  /** Partitions the member may own now (what its heartbeat answer carries). */
  readonly assigned: Partitions;
  /** Partitions taken from the member that it has not yet confirmed releasing; nobody else gets them. */
  readonly revoking: Partitions;
}

export interface CommittedOffsetRecord {
  readonly offset: bigint;
  readonly leaderEpoch: number;
  readonly metadata: string;
  readonly commitTimestampMs: number;
}

export interface GroupRecord {
  readonly groupId: string;
  /** Grows whenever membership, subscriptions or subscribed topic metadata change. */
  readonly groupEpoch: number;
  /** The group epoch the current target assignment was computed for. */
  readonly targetEpoch: number;
  readonly assignor: AssignorName;
  readonly members: ReadonlyMap<string, MemberRecord>;
  readonly targetAssignment: ReadonlyMap<string, Partitions>;
  /** Subscribed topics and their partition counts when the group epoch last moved ("t:n,t:n"). */
  readonly subscriptionSignature: string;
  /** Committed offsets, keyed by offsetKey(topic, partition). */
  readonly offsets: ReadonlyMap<string, CommittedOffsetRecord>;
  /**
   * While the group has no members: when it last became empty or last had offsets committed from
   * outside (the start of its offsets retention). Undefined while it has members.
   */
  readonly emptySinceMs: number | undefined;
}

export interface GroupsState {
  readonly groups: ReadonlyMap<string, GroupRecord>;
  /** Last heartbeat per member (memberKey(group, member)), ms. Volatile. */
  readonly lastHeartbeatMs: ReadonlyMap<string, number>;
  /**
   * Per member with partitions to revoke (memberKey): the time by which it must have confirmed
   * releasing them, or it is fenced (KIP-848 rebalance timeout). Volatile.
   */
  readonly revocationDeadlineMs: ReadonlyMap<string, number>;
  /** The topics that existed when committed offsets were last swept for deleted topics. Volatile. */
  readonly topicsAtLastOffsetSweep: ReadonlySet<string> | undefined;
}

/** How long a group may stay without members before it is deleted with its committed offsets (Kafka's offsets.retention.minutes). */
export const defaultGroupOffsetsRetentionMs = 7 * 24 * 60 * 60 * 1000;
/** The rebalance timeout of a member that sent none (rebalance_timeout_ms = 0, the proto default). */
export const defaultMemberRebalanceTimeoutMs = 60_000;

/** Settings the group state machine needs from the process (all times in ms). */
export interface GroupConfig {
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** defaultGroupOffsetsRetentionMs when left out. */
  offsetsRetentionMs?: number;
}

export const emptyGroupsState: GroupsState = { groups: new Map(), lastHeartbeatMs: new Map(), revocationDeadlineMs: new Map(), topicsAtLastOffsetSweep: undefined };

export function offsetKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export function memberKey(groupId: string, memberId: string): string {
  return `${groupId}\u0000${memberId}`;
}

export function newGroup(groupId: string, assignor: AssignorName): GroupRecord {
  return { groupId, groupEpoch: 0, targetEpoch: 0, assignor, members: new Map(), targetAssignment: new Map(), subscriptionSignature: "", offsets: new Map(), emptySinceMs: undefined };
}

// --- partition set helpers -------------------------------------------------------------------------

export function keysOf(p: Partitions): Set<string> {
  const out = new Set<string>();
  for (const [t, list] of Object.entries(p)) for (const i of list) out.add(offsetKey(t, i));
  return out;
}

export function fromKeys(keys: Iterable<string>): Partitions {
  const out: Record<string, number[]> = {};
  for (const k of keys) {
    const sep = k.lastIndexOf("\u0000");
    const t = k.slice(0, sep);
    (out[t] ??= []).push(Number(k.slice(sep + 1)));
  }
  const sorted: Record<string, number[]> = {};
  for (const t of Object.keys(out).sort()) sorted[t] = out[t]!.sort((a, b) => a - b);
  return sorted;
}

export function countPartitions(p: Partitions): number {
  let n = 0;
  for (const list of Object.values(p)) n += list.length;
  return n;
}

export function samePartitions(a: Partitions, b: Partitions): boolean {
  const ka = keysOf(a);
  const kb = keysOf(b);
  return ka.size === kb.size && [...ka].every((k) => kb.has(k));
}

export const noPartitions: Partitions = {};

/**
 * The rule of the protocol: no partition is held (assigned or being revoked) by two members at once.
 * Throws InvariantError naming the partition and both members.
 */
export function checkNoDoubleOwnership(group: GroupRecord): void {
  const holder = new Map<string, string>();
  for (const m of group.members.values()) {
    for (const k of new Set([...keysOf(m.assigned), ...keysOf(m.revoking)])) {
      const other = holder.get(k);
      invariant(other === undefined, () => `group ${group.groupId}: partition ${k.replace("\u0000", "-")} is held by members ${other} and ${m.memberId} (group epoch ${group.groupEpoch})`);
      holder.set(k, m.memberId);
    }
  }
}
