// The cluster metadata state: plain immutable data. Commands never mutate a state; they build the next
// one through a Draft (copy-on-write), which also records what changed so the delta to publish and the
// records to persist fall out of the same edit.
import { invariant } from "@runnel/common";
import type { MetadataDelta } from "@runnel/proto";
import { partitionStateOf, brokerRegistrationOf, topicStateOf } from "./snapshot.js";

export interface BrokerRecord {
  readonly id: number;
  /** Epoch of the current registration; every registration gets a larger one. */
  readonly epoch: bigint;
  readonly host: string;
  readonly port: number;
  /** Empty when the broker declared no rack. */
  readonly rack: string;
  /** Id of the broker's data directory (two processes must not claim one broker id). */
  readonly incarnationId: string;
  /** Its session is alive (heartbeats arrive within the session timeout). */
  readonly alive: boolean;
  /**
   * Declared dead: its epoch is stale and every call with it is rejected until it registers again.
   * A broker that is neither alive nor fenced is in its grace period after a controller restart.
   */
  readonly fenced: boolean;
  /** It asked for a controlled shutdown: leads nothing it can hand over, joins no ISR. */
  readonly shuttingDown: boolean;
}

export interface PartitionRecord {
  /** Broker ids; replicas[0] is the preferred leader. */
  readonly replicas: readonly number[];
  /** In-sync replicas, in replica order. Never empty. */
  readonly isr: readonly number[];
  /** Leader broker id, or noLeader. */
  readonly leader: number;
  readonly leaderEpoch: number;
  readonly partitionEpoch: number;
}

export interface TopicRecord {
  readonly name: string;
  readonly topicId: string;
  /** Configuration overrides (validated keys and values). */
  readonly configs: Readonly<Record<string, string>>;
  readonly partitions: readonly PartitionRecord[];
}

export interface ClusterState {
  readonly clusterId: string;
  /** Version of the last published delta; +1 per delta. */
  readonly metadataVersion: bigint;
  readonly nextBrokerEpoch: bigint;
  readonly nextProducerId: bigint;
  /** Sequence for topic ids and the placement start offset. */
  readonly nextTopicSeq: number;
  readonly brokers: ReadonlyMap<number, BrokerRecord>;
  readonly topics: ReadonlyMap<string, TopicRecord>;
  /** Producer ids whose epoch was bumped at least once (others are at epoch 0). */
  readonly producerEpochs: ReadonlyMap<bigint, number>;
  // --- Volatile (not persisted; rebuilt on load) ---
  /** Last heartbeat (or registration, or controller start) per non-fenced broker, ms. */
  readonly lastHeartbeatMs: ReadonlyMap<number, number>;
  /** When preferred-leader balancing last ran, ms. */
  readonly lastBalanceMs: number;
}

export const noLeader = -1;
/** Producer epochs are int16 on the wire of most clients; past this a producer gets a new id. */
export const maxProducerEpoch = 32767;

/** Settings the state machine needs from the process (all times in ms). */
export interface MetadataConfig {
  sessionTimeoutMs: number;
  autoLeaderRebalance: boolean;
  leaderImbalanceCheckMs: number;
}

export function initialState(clusterId: string, nowMs: number): ClusterState {
  return {
    clusterId,
    metadataVersion: 0n,
    nextBrokerEpoch: 1n,
    nextProducerId: 1n,
    nextTopicSeq: 0,
    brokers: new Map(),
    topics: new Map(),
    producerEpochs: new Map(),
    lastHeartbeatMs: new Map(),
    lastBalanceMs: nowMs,
  };
}

export function partitionName(topic: string, index: number): string {
  return `${topic}-${index}`;
}

/** Throws InvariantError when a partition record breaks a rule that must always hold. */
export function checkPartition(topic: string, index: number, p: PartitionRecord): void {
  const name = partitionName(topic, index);
  invariant(p.replicas.length > 0, () => `partition ${name} has no replicas`);
  invariant(new Set(p.replicas).size === p.replicas.length, () => `partition ${name} has duplicate replicas [${p.replicas.join(",")}]`);
  invariant(p.isr.length > 0, () => `partition ${name} has an empty ISR (leader ${p.leader}, leader epoch ${p.leaderEpoch})`);
  invariant(new Set(p.isr).size === p.isr.length, () => `partition ${name} has duplicate ISR members [${p.isr.join(",")}]`);
  invariant(p.isr.every((b) => p.replicas.includes(b)), () => `partition ${name} ISR [${p.isr.join(",")}] is not a subset of replicas [${p.replicas.join(",")}]`);
  invariant(p.leader === noLeader || p.isr.includes(p.leader), () => `partition ${name} leader ${p.leader} is not in its ISR [${p.isr.join(",")}]`);
  invariant(p.leaderEpoch >= 0 && p.partitionEpoch >= 0, () => `partition ${name} has negative epochs (leader epoch ${p.leaderEpoch}, partition epoch ${p.partitionEpoch})`);
}

/** Orders broker ids as they appear in the replica list (the order elections and ISRs use). */
export function inReplicaOrder(replicas: readonly number[], ids: Iterable<number>): number[] {
  const set = new Set(ids);
  return replicas.filter((r) => set.has(r));
}

/** A broker that may lead or join an ISR: alive, not fenced, not shutting down. */
export function isElectable(broker: BrokerRecord | undefined): boolean {
  return broker !== undefined && broker.alive && !broker.fenced && !broker.shuttingDown;
}

/**
 * A copy-on-write edit of a ClusterState that remembers what it touched. Every partition change goes
 * through changePartition, which bumps the partition epoch (and the leader epoch when the leader
 * moves) and checks the invariants.
 */
export class Draft {
  private brokers: Map<number, BrokerRecord> | undefined;
  private topics: Map<string, TopicRecord> | undefined;
  private producerEpochs: Map<bigint, number> | undefined;
  private lastHeartbeatMs: Map<number, number> | undefined;
  private readonly scalars: {
    nextBrokerEpoch: bigint;
    nextProducerId: bigint;
    nextTopicSeq: number;
    lastBalanceMs: number;
  };
  private readonly changedBrokers = new Set<number>();
  private readonly changedTopics = new Set<string>();
  private readonly changedPartitions = new Map<string, Set<number>>();
  private readonly deletedTopicIds: string[] = [];
  private touched = false;

  constructor(readonly base: ClusterState) {
    this.scalars = {
      nextBrokerEpoch: base.nextBrokerEpoch,
      nextProducerId: base.nextProducerId,
      nextTopicSeq: base.nextTopicSeq,
      lastBalanceMs: base.lastBalanceMs,
    };
  }

  get clusterId(): string {
    return this.base.clusterId;
  }

  broker(id: number): BrokerRecord | undefined {
    return (this.brokers ?? this.base.brokers).get(id);
  }

  allBrokers(): Iterable<BrokerRecord> {
    return (this.brokers ?? this.base.brokers).values();
  }

  topic(name: string): TopicRecord | undefined {
    return (this.topics ?? this.base.topics).get(name);
  }

  allTopics(): Iterable<TopicRecord> {
    return (this.topics ?? this.base.topics).values();
  }

  topicCount(): number {
    return (this.topics ?? this.base.topics).size;
  }

  heartbeatMs(id: number): number | undefined {
    return (this.lastHeartbeatMs ?? this.base.lastHeartbeatMs).get(id);
  }

  producerEpoch(id: bigint): number {
    return (this.producerEpochs ?? this.base.producerEpochs).get(id) ?? 0;
  }

  get nextBrokerEpoch(): bigint {
    return this.scalars.nextBrokerEpoch;
  }
  get nextProducerId(): bigint {
    return this.scalars.nextProducerId;
  }
  get nextTopicSeq(): number {
    return this.scalars.nextTopicSeq;
  }
  get lastBalanceMs(): number {
    return this.scalars.lastBalanceMs;
  }

  takeBrokerEpoch(): bigint {
    const epoch = this.scalars.nextBrokerEpoch;
    this.scalars.nextBrokerEpoch = epoch + 1n;
    this.touched = true;
    return epoch;
  }

  takeProducerId(): bigint {
    const id = this.scalars.nextProducerId;
    this.scalars.nextProducerId = id + 1n;
    this.touched = true;
    return id;
  }

  takeTopicSeq(): number {
    const seq = this.scalars.nextTopicSeq;
    this.scalars.nextTopicSeq = seq + 1;
    this.touched = true;
    return seq;
  }

  setLastBalanceMs(nowMs: number): void {
    this.scalars.lastBalanceMs = nowMs;
    this.touched = true;
  }

  setProducerEpoch(id: bigint, epoch: number | undefined): void {
    this.producerEpochs ??= new Map(this.base.producerEpochs);
    if (epoch === undefined) this.producerEpochs.delete(id);
    else this.producerEpochs.set(id, epoch);
    this.touched = true;
  }

  setHeartbeat(id: number, nowMs: number | undefined): void {
    this.lastHeartbeatMs ??= new Map(this.base.lastHeartbeatMs);
    if (nowMs === undefined) this.lastHeartbeatMs.delete(id);
    else this.lastHeartbeatMs.set(id, nowMs);
    this.touched = true;
  }

  putBroker(broker: BrokerRecord): void {
    const previous = this.broker(broker.id);
    if (previous !== undefined) {
      invariant(broker.epoch >= previous.epoch, () => `broker ${broker.id} epoch would go back from ${previous.epoch} to ${broker.epoch}`);
    }
    this.brokers ??= new Map(this.base.brokers);
    this.brokers.set(broker.id, broker);
    this.changedBrokers.add(broker.id);
    this.touched = true;
  }

  /** Adds a topic (with its partitions) or replaces its configuration. */
  putTopic(topic: TopicRecord): void {
    const previous = this.topic(topic.name);
    this.topics ??= new Map(this.base.topics);
    this.topics.set(topic.name, topic);
    this.changedTopics.add(topic.name);
    if (previous === undefined) {
      topic.partitions.forEach((p, i) => checkPartition(topic.name, i, p));
      this.changedPartitions.set(topic.name, new Set(topic.partitions.map((_, i) => i)));
    } else {
      invariant(previous.topicId === topic.topicId && previous.partitions === topic.partitions, () => `topic ${topic.name} replaced by putTopic with different id or partitions`);
    }
    this.touched = true;
  }

  deleteTopic(name: string): void {
    const topic = this.topic(name);
    invariant(topic !== undefined, () => `deleting unknown topic ${name}`);
    this.topics ??= new Map(this.base.topics);
    this.topics.delete(name);
    this.changedTopics.delete(name);
    this.changedPartitions.delete(name);
    this.deletedTopicIds.push(topic.topicId);
    this.touched = true;
  }

  /**
   * Changes the ISR and/or leader of a partition. Bumps the partition epoch, and the leader epoch when
   * the leader changes (also to noLeader, so an old leader's epoch is fenced). No-op when nothing changes.
   */
  changePartition(topicName: string, index: number, change: { isr?: readonly number[]; leader?: number }): PartitionRecord {
    const topic = this.topic(topicName);
    invariant(topic !== undefined, () => `changing partition ${partitionName(topicName, index)} of an unknown topic`);
    const p = topic.partitions[index];
    invariant(p !== undefined, () => `changing unknown partition ${partitionName(topicName, index)}`);
    const isr = change.isr === undefined ? p.isr : inReplicaOrder(p.replicas, change.isr);
    invariant(change.isr === undefined || isr.length === change.isr.length, () => `partition ${partitionName(topicName, index)}: new ISR [${change.isr?.join(",")}] has duplicates or non-replicas`);
    const leader = change.leader ?? p.leader;
    const isrChanged = isr.length !== p.isr.length || isr.some((b, i) => b !== p.isr[i]);
    const leaderChanged = leader !== p.leader;
    if (!isrChanged && !leaderChanged) return p;
    const next: PartitionRecord = {
      replicas: p.replicas,
      isr,
      leader,
      leaderEpoch: leaderChanged ? p.leaderEpoch + 1 : p.leaderEpoch,
      partitionEpoch: p.partitionEpoch + 1,
    };
    checkPartition(topicName, index, next);
    const partitions = topic.partitions.slice();
    partitions[index] = next;
    this.topics ??= new Map(this.base.topics);
    this.topics.set(topicName, { ...topic, partitions });
    let changed = this.changedPartitions.get(topicName);
    if (changed === undefined) this.changedPartitions.set(topicName, (changed = new Set()));
    changed.add(index);
    this.touched = true;
    return next;
  }

  /** The next state and the delta to publish (undefined when nothing visible changed). */
  finish(): { state: ClusterState; delta: MetadataDelta | undefined } {
    if (!this.touched) return { state: this.base, delta: undefined };
    const brokers = this.brokers ?? this.base.brokers;
    const topics = this.topics ?? this.base.topics;
    const delta: MetadataDelta = {
      brokers: [...this.changedBrokers].sort((a, b) => a - b).map((id) => brokerRegistrationOf(brokers.get(id)!)),
      topics: [...this.changedTopics].sort().map((name) => topicStateOf(topics.get(name)!, false)),
      deletedTopicIds: this.deletedTopicIds.slice(),
      partitions: [...this.changedPartitions.keys()].sort().flatMap((name) => {
        const topic = topics.get(name)!;
        return [...this.changedPartitions.get(name)!].sort((a, b) => a - b).map((i) => partitionStateOf(name, i, topic.partitions[i]!));
      }),
    };
    const visible = delta.brokers.length + delta.topics.length + delta.deletedTopicIds.length + delta.partitions.length > 0;
    const state: ClusterState = {
      clusterId: this.base.clusterId,
      metadataVersion: visible ? this.base.metadataVersion + 1n : this.base.metadataVersion,
      nextBrokerEpoch: this.scalars.nextBrokerEpoch,
      nextProducerId: this.scalars.nextProducerId,
      nextTopicSeq: this.scalars.nextTopicSeq,
      brokers,
      topics,
      producerEpochs: this.producerEpochs ?? this.base.producerEpochs,
      lastHeartbeatMs: this.lastHeartbeatMs ?? this.base.lastHeartbeatMs,
      lastBalanceMs: this.scalars.lastBalanceMs,
    };
    return { state, delta: visible ? delta : undefined };
  }
}
