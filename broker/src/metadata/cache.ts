// The broker's copy of the cluster metadata: what the controller streams (a snapshot, then ordered
// deltas), applied in version order. Client Metadata requests are answered from here, and the replica
// manager reads leader, epoch and ISR of every partition from it.
import type { BrokerRegistration, ClusterSnapshot, MetadataEvent, PartitionState, TopicState } from "@runnel/proto";
import { invariant } from "@runnel/common";

export interface TopicEntry {
  name: string;
  topicId: string;
  configs: Record<string, string>;
  partitions: PartitionState[];
}

/** What changed when an event was applied, so the replica manager touches only those partitions. */
export interface MetadataChange {
  snapshot: boolean;
  changedPartitions: PartitionState[];
  createdOrChangedTopics: TopicEntry[];
  deletedTopics: TopicEntry[];
  changedBrokers: BrokerRegistration[];
}

export class MetadataCache {
  private version = -1n;
  private clusterIdValue = "";
  private readonly brokersById = new Map<number, BrokerRegistration>();
  private readonly topicsByName = new Map<string, TopicEntry>();

  get metadataVersion(): bigint {
    return this.version;
  }

  get clusterId(): string {
    return this.clusterIdValue;
  }

  /** True once a snapshot has been applied. */
  get loaded(): boolean {
    return this.version >= 0n;
  }

  brokers(): BrokerRegistration[] {
    return [...this.brokersById.values()].sort((a, b) => a.brokerId - b.brokerId);
  }

  broker(id: number): BrokerRegistration | undefined {
    return this.brokersById.get(id);
  }

  topics(): TopicEntry[] {
    return [...this.topicsByName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  topic(name: string): TopicEntry | undefined {
    return this.topicsByName.get(name);
  }

  partition(topic: string, partition: number): PartitionState | undefined {
    return this.topicsByName.get(topic)?.partitions[partition];
  }

  /**
   * Applies one event. Deltas must follow the previous version without a gap; a gap means the stream
   * lost an event, which the caller handles by resubscribing for a snapshot (returns undefined).
   */
  apply(event: MetadataEvent): MetadataChange | undefined {
    const body = event.event;
    invariant(body !== undefined, `metadata event ${event.metadataVersion} has no body`);
    if (body.$case === "snapshot") return this.applySnapshot(event.metadataVersion, body.value);
    if (event.metadataVersion <= this.version) {
      return { snapshot: false, changedPartitions: [], createdOrChangedTopics: [], deletedTopics: [], changedBrokers: [] };
    }
    if (!this.loaded || event.metadataVersion !== this.version + 1n) return undefined;
    const delta = body.value;
    const change: MetadataChange = { snapshot: false, changedPartitions: [], createdOrChangedTopics: [], deletedTopics: [], changedBrokers: [] };
    for (const b of delta.brokers) {
      this.brokersById.set(b.brokerId, b);
      change.changedBrokers.push(b);
    }
    for (const id of delta.deletedTopicIds) {
      for (const t of this.topicsByName.values()) {
        if (t.topicId === id) {
          this.topicsByName.delete(t.name);
          change.deletedTopics.push(t);
        }
      }
    }
    for (const t of delta.topics) {
      const existing = this.topicsByName.get(t.name);
      if (existing !== undefined && existing.topicId !== t.topicId) {
        this.topicsByName.delete(t.name);
        change.deletedTopics.push(existing);
      }
      const entry = existing !== undefined && existing.topicId === t.topicId ? existing : toEntry(t);
      entry.configs = { ...t.configs };
      for (const p of t.partitions) entry.partitions[p.partition] = p;
      this.topicsByName.set(t.name, entry);
      change.createdOrChangedTopics.push(entry);
      change.changedPartitions.push(...t.partitions);
    }
    for (const p of delta.partitions) {
      const entry = this.topicsByName.get(p.topic);
      if (entry === undefined) continue; // the topic was deleted in a later-applied part of this delta
      entry.partitions[p.partition] = p;
      change.changedPartitions.push(p);
    }
    this.version = event.metadataVersion;
    return change;
  }

  private applySnapshot(version: bigint, snapshot: ClusterSnapshot): MetadataChange {
    const before = new Map(this.topicsByName);
    this.brokersById.clear();
    this.topicsByName.clear();
    for (const b of snapshot.brokers) this.brokersById.set(b.brokerId, b);
    for (const t of snapshot.topics) this.topicsByName.set(t.name, toEntry(t));
    this.clusterIdValue = snapshot.clusterId;
    this.version = version;
    const deletedTopics = [...before.values()].filter((t) => this.topicsByName.get(t.name)?.topicId !== t.topicId);
    const topics = this.topics();
    return {
      snapshot: true,
      changedPartitions: topics.flatMap((t) => t.partitions),
      createdOrChangedTopics: topics,
      deletedTopics,
      changedBrokers: this.brokers(),
    };
  }
}

function toEntry(t: TopicState): TopicEntry {
  const partitions: PartitionState[] = [];
  for (const p of t.partitions) partitions[p.partition] = p;
  return { name: t.name, topicId: t.topicId, configs: { ...t.configs }, partitions };
}
