// Partition assignors: pure functions from (members and their subscriptions, partition counts of the
// subscribed topics, the previous target) to a target assignment. Every partition of a subscribed topic
// goes to exactly one member subscribed to its topic (never two), or to nobody when nobody subscribes.
import { invariant } from "@runnel/common";

/** topic -> sorted partition indexes. */
export type TopicAssignment = ReadonlyMap<string, readonly number[]>;

export interface AssignorMember {
  memberId: string;
  /** Topics the member subscribes to (already resolved from names or a pattern). */
  topics: ReadonlySet<string>;
}

export interface AssignorInput {
  /** Members in any order; the assignors sort by member id so the result is deterministic. */
  members: readonly AssignorMember[];
  /** Partition count per existing topic. */
  partitionCounts: ReadonlyMap<string, number>;
  /** The previous target assignment per member id (for stickiness); missing members are ignored. */
  previous: ReadonlyMap<string, TopicAssignment>;
}

export type AssignorName = "uniform" | "range";
export const assignorNames: readonly AssignorName[] = ["uniform", "range"];
export const defaultAssignor: AssignorName = "uniform";

export function assign(name: AssignorName, input: AssignorInput): Map<string, TopicAssignment> {
  return name === "range" ? rangeAssign(input) : uniformAssign(input);
}

function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

function toAssignment(owned: Iterable<[string, number]>): TopicAssignment {
  const map = new Map<string, number[]>();
  for (const [t, p] of owned) {
    let list = map.get(t);
    if (list === undefined) map.set(t, (list = []));
    list.push(p);
  }
  for (const list of map.values()) list.sort((a, b) => a - b);
  return new Map([...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Range: per topic, the subscribed members (sorted by id) get contiguous ranges, the first
 * (count % members) of them one partition more. Not sticky; deterministic.
 */
export function rangeAssign(input: AssignorInput): Map<string, TopicAssignment> {
  const members = [...input.members].sort((a, b) => (a.memberId < b.memberId ? -1 : 1));
  const owned = new Map<string, Array<[string, number]>>(members.map((m) => [m.memberId, []]));
  for (const [topic, count] of [...input.partitionCounts].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const subscribers = members.filter((m) => m.topics.has(topic));
    if (subscribers.length === 0) continue;
    const base = Math.floor(count / subscribers.length);
    const extra = count % subscribers.length;
    let next = 0;
    subscribers.forEach((m, i) => {
      const n = base + (i < extra ? 1 : 0);
      for (let k = 0; k < n; k++) owned.get(m.memberId)!.push([topic, next++]);
    });
    invariant(next === count, () => `range assignor gave out ${next} of ${count} partitions of topic ${topic}`);
  }
  return new Map([...owned].map(([id, list]) => [id, toAssignment(list)]));
}

/**
 * Uniform sticky: every partition first stays with its previous owner when that member still
 * subscribes to the topic; the rest go to the least loaded subscriber; then partitions move from the
 * most to the least loaded eligible member until no move narrows the spread. With equal
 * subscriptions the counts differ by at most one, and only the partitions needed for that move.
 */
export function uniformAssign(input: AssignorInput): Map<string, TopicAssignment> {
  const members = [...input.members].sort((a, b) => (a.memberId < b.memberId ? -1 : 1));
  const byId = new Map(members.map((m) => [m.memberId, m]));
  const owner = new Map<string, string>();
  const load = new Map<string, Array<[string, number]>>(members.map((m) => [m.memberId, []]));
  const partitions: Array<[string, number]> = [];
  for (const [topic, count] of [...input.partitionCounts].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!members.some((m) => m.topics.has(topic))) continue;
    for (let p = 0; p < count; p++) partitions.push([topic, p]);
  }
  const total = partitions.length;
  // Sticky pass, capped at the fair share (rounded up) so one member cannot keep everything.
  const cap = members.length === 0 ? 0 : Math.ceil(total / members.length);
  for (const [memberId, previous] of [...input.previous].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const m = byId.get(memberId);
    if (m === undefined) continue;
    for (const [topic, list] of previous) {
      if (!m.topics.has(topic)) continue;
      const count = input.partitionCounts.get(topic) ?? 0;
      for (const p of list) {
        if (p >= count || owner.has(tpKey(topic, p)) || load.get(memberId)!.length >= cap) continue;
        owner.set(tpKey(topic, p), memberId);
        load.get(memberId)!.push([topic, p]);
      }
    }
  }
  const leastLoaded = (topic: string, except?: string): string | undefined => {
    let best: string | undefined;
    for (const m of members) {
      if (!m.topics.has(topic) || m.memberId === except) continue;
      if (best === undefined || load.get(m.memberId)!.length < load.get(best)!.length) best = m.memberId;
    }
    return best;
  };
  for (const [topic, p] of partitions) {
    if (owner.has(tpKey(topic, p))) continue;
    const to = leastLoaded(topic);
    invariant(to !== undefined, () => `uniform assignor found no subscriber for partition ${topic}-${p}`);
    owner.set(tpKey(topic, p), to);
    load.get(to)!.push([topic, p]);
  }
  // Balancing: each move lowers the sum of squared loads, so this ends; bounded anyway.
  const maxMoves = total * members.length + 1;
  for (let moves = 0; moves < maxMoves; moves++) {
    let moved = false;
    const sorted = [...members].sort((a, b) => load.get(b.memberId)!.length - load.get(a.memberId)!.length || (a.memberId < b.memberId ? -1 : 1));
    for (const from of sorted) {
      const owned = load.get(from.memberId)!;
      // Move the highest partition first so the low ones (usually older) stay put.
      for (let i = owned.length - 1; i >= 0 && !moved; i--) {
        const [topic, p] = owned[i]!;
        const to = leastLoaded(topic, from.memberId);
        if (to === undefined || load.get(to)!.length + 1 >= owned.length) continue;
        owned.splice(i, 1);
        load.get(to)!.push([topic, p]);
        owner.set(tpKey(topic, p), to);
        moved = true;
      }
      if (moved) break;
    }
    if (!moved) break;
  }
  return new Map([...load].map(([id, list]) => [id, toAssignment(list)]));
}
