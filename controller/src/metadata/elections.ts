// Leadership and ISR rules applied to a Draft: fencing a broker, electing leaders for offline
// partitions, controlled shutdown and preferred-leader balancing. Elections pick the first electable
// replica in replica order, so the outcome is deterministic.
import { type Draft, isElectable, noLeader, type TopicRecord } from "./state.js";
import { resolveTopicConfig } from "@runnel/proto";

function uncleanAllowed(topic: TopicRecord): boolean {
  return resolveTopicConfig(topic.configs).uncleanLeaderElectionEnable;
}

/** First electable member of `candidates` (replica order), excluding `exclude`. */
function firstElectable(draft: Draft, replicas: readonly number[], candidates: readonly number[], exclude: number): number | undefined {
  return replicas.find((r) => r !== exclude && candidates.includes(r) && isElectable(draft.broker(r)));
}

/**
 * Removes a broker from every ISR (except where it is the last member: the ISR must keep naming the
 * replica that has every committed record) and moves its leaderships to a live ISR member; with none,
 * the partition goes offline, or with unclean.leader.election.enable to any live replica.
 */
export function removeFromPartitions(draft: Draft, brokerId: number): void {
  for (const topic of [...draft.allTopics()]) {
    topic.partitions.forEach((p, index) => {
      if (p.leader !== brokerId && !p.isr.includes(brokerId)) return;
      const isr = p.isr.length > 1 ? p.isr.filter((b) => b !== brokerId) : p.isr;
      if (p.leader !== brokerId) {
        draft.changePartition(topic.name, index, { isr });
        return;
      }
      const clean = firstElectable(draft, p.replicas, isr, brokerId);
      if (clean !== undefined) {
        draft.changePartition(topic.name, index, { isr, leader: clean });
      } else if (uncleanAllowed(topic)) {
        const unclean = firstElectable(draft, p.replicas, p.replicas, brokerId);
        if (unclean !== undefined) draft.changePartition(topic.name, index, { isr: [unclean], leader: unclean });
        else draft.changePartition(topic.name, index, { isr, leader: noLeader });
      } else {
        draft.changePartition(topic.name, index, { isr, leader: noLeader });
      }
    });
  }
}

/** Elects leaders for partitions without one, from the ISR, else (when the topic allows) any live replica. */
export function electOfflineLeaders(draft: Draft, onlyTopic?: string): void {
  for (const topic of [...draft.allTopics()]) {
    if (onlyTopic !== undefined && topic.name !== onlyTopic) continue;
    topic.partitions.forEach((p, index) => {
      if (p.leader !== noLeader) return;
      const clean = firstElectable(draft, p.replicas, p.isr, noLeader);
      if (clean !== undefined) {
        draft.changePartition(topic.name, index, { leader: clean });
        return;
      }
      if (!uncleanAllowed(topic)) return;
      const unclean = firstElectable(draft, p.replicas, p.replicas, noLeader);
      if (unclean !== undefined) draft.changePartition(topic.name, index, { isr: [unclean], leader: unclean });
    });
  }
}

/**
 * Moves each leadership of a broker that is shutting down to another live ISR member and takes it out
 * of every ISR where it is not the last member. Returns the partitions it still leads.
 */
export function moveAwayForShutdown(draft: Draft, brokerId: number): Map<string, number[]> {
  const remaining = new Map<string, number[]>();
  for (const topic of [...draft.allTopics()]) {
    topic.partitions.forEach((p, index) => {
      if (p.leader === brokerId) {
        const next = firstElectable(draft, p.replicas, p.isr, brokerId);
        if (next === undefined) {
          let list = remaining.get(topic.name);
          if (list === undefined) remaining.set(topic.name, (list = []));
          list.push(index);
          return;
        }
        draft.changePartition(topic.name, index, { leader: next, isr: p.isr.filter((b) => b !== brokerId) });
      } else if (p.isr.includes(brokerId) && p.isr.length > 1) {
        draft.changePartition(topic.name, index, { isr: p.isr.filter((b) => b !== brokerId) });
      }
    });
  }
  return remaining;
}

/** Returns leadership to the preferred replica (replicas[0]) wherever it is electable and in sync. */
export function balancePreferredLeaders(draft: Draft): void {
  for (const topic of [...draft.allTopics()]) {
    topic.partitions.forEach((p, index) => {
      const preferred = p.replicas[0]!;
      if (p.leader === preferred || !p.isr.includes(preferred) || !isElectable(draft.broker(preferred))) return;
      draft.changePartition(topic.name, index, { leader: preferred });
    });
  }
}
