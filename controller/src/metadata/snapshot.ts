// The wire view of the metadata: a snapshot of a state, and applyDelta, which a watcher (a broker, a
// test) uses to keep its snapshot current. Snapshots are canonical (brokers by id, topics by name,
// partitions by index), so "snapshot + deltas in order" equals "a fresh snapshot".
import { invariant } from "@runnel/common";
import type { BrokerRegistration, ClusterSnapshot, MetadataDelta, PartitionState, TopicState } from "@runnel/proto";
import type { BrokerRecord, ClusterState, PartitionRecord, TopicRecord } from "./state.js";

export function brokerRegistrationOf(b: BrokerRecord): BrokerRegistration {
  return { brokerId: b.id, brokerEpoch: b.epoch, host: b.host, port: b.port, rack: b.rack, alive: b.alive, shuttingDown: b.shuttingDown };
}

export function partitionStateOf(topic: string, index: number, p: PartitionRecord): PartitionState {
  return {
    topic,
    partition: index,
    replicas: [...p.replicas],
    isr: [...p.isr],
    leaderId: p.leader,
    leaderEpoch: p.leaderEpoch,
    partitionEpoch: p.partitionEpoch,
  };
}

/** A topic as sent on the wire; deltas send partitions separately (withPartitions false). */
export function topicStateOf(t: TopicRecord, withPartitions: boolean): TopicState {
  return {
    name: t.name,
    topicId: t.topicId,
    configs: { ...t.configs },
    partitions: withPartitions ? t.partitions.map((p, i) => partitionStateOf(t.name, i, p)) : [],
  };
}

export function snapshotOf(state: ClusterState): ClusterSnapshot {
  return {
    clusterId: state.clusterId,
    brokers: [...state.brokers.values()].sort((a, b) => a.id - b.id).map(brokerRegistrationOf),
    topics: [...state.topics.values()].sort((a, b) => compareNames(a.name, b.name)).map((t) => topicStateOf(t, true)),
  };
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Applies one delta to a snapshot and returns the new snapshot (the input is not modified). Order
 * within a delta: deleted topics, then brokers, topics (created or reconfigured), then partitions.
 * Throws InvariantError when the delta does not fit the snapshot (a partition of an unknown topic,
 * or a gap in partition indexes): the watcher missed an event and must resync from a new snapshot.
 */
export function applyDelta(snapshot: ClusterSnapshot, delta: MetadataDelta): ClusterSnapshot {
  const brokers = new Map(snapshot.brokers.map((b) => [b.brokerId, b]));
  for (const b of delta.brokers) brokers.set(b.brokerId, { ...b });

  const deleted = new Set(delta.deletedTopicIds);
  const topics = new Map<string, TopicState>();
  for (const t of snapshot.topics) if (!deleted.has(t.topicId)) topics.set(t.name, t);
  for (const t of delta.topics) {
    const existing = topics.get(t.name);
    if (existing !== undefined && existing.topicId === t.topicId) {
      // A configuration change: the partitions stay unless the delta carries them.
      topics.set(t.name, { ...existing, configs: { ...t.configs }, partitions: t.partitions.length > 0 ? t.partitions.map((p) => ({ ...p })) : existing.partitions });
    } else {
      topics.set(t.name, { name: t.name, topicId: t.topicId, configs: { ...t.configs }, partitions: t.partitions.map((p) => ({ ...p })) });
    }
  }
  const copied = new Set<string>();
  for (const p of delta.partitions) {
    let topic = topics.get(p.topic);
    invariant(topic !== undefined, () => `metadata delta changes partition ${p.topic}-${p.partition} of a topic the snapshot does not have`);
    if (!copied.has(p.topic)) {
      // Copy before writing: the input snapshot must stay as it was.
      topic = { ...topic, partitions: topic.partitions.slice() };
      topics.set(p.topic, topic);
      copied.add(p.topic);
    }
    invariant(p.partition >= 0 && p.partition <= topic.partitions.length, () => `metadata delta changes partition ${p.topic}-${p.partition} but the snapshot has ${topic.partitions.length} partitions`);
    topic.partitions[p.partition] = { ...p, replicas: [...p.replicas], isr: [...p.isr] };
  }
  return {
    clusterId: snapshot.clusterId,
    brokers: [...brokers.values()].sort((a, b) => a.brokerId - b.brokerId),
    topics: [...topics.values()].sort((a, b) => compareNames(a.name, b.name)),
  };
}
