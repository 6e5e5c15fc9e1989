// The broker's Prometheus metrics. Traffic counters (produce, fetch and replication bytes) are bumped
// once per request with the batch bytes the request already counted; everything about partitions
// (offsets, ISR, leadership) is read from the replica manager when Prometheus scrapes, so the hot
// path does no metrics work per partition or per record.
//
// Group lag is not computed here: committed offsets live on the controller
// (runnel_group_committed_offset{group,topic,partition}) and high watermarks here. In PromQL:
//   max by (topic, partition) (runnel_partition_high_watermark * on (instance, topic, partition) group_left runnel_partition_leader)
//     - on (topic, partition) group_right runnel_group_committed_offset
import { Counter, createProcessMetrics, Gauge, type ProcessMetrics } from "@runnel/common";
import type { MetadataCache } from "../metadata/cache.js";
import type { Partition } from "../partition/partition.js";
import type { ReplicaManager } from "../partition/replica-manager.js";
import { ShareMetrics } from "./share-metrics.js";

/** Label value for replication traffic to a replica id the metadata does not know (bounds the label set). */
export const unknownFollowerLabel = "unknown";

export interface BrokerMetricsSources {
  brokerId: number;
  replicas: ReplicaManager;
  metadata: MetadataCache;
}

type PartitionLabels = "topic" | "partition";

/** ISR as this broker knows it: the leader's live view when it leads, else the controller's. */
export function isrOf(p: Partition): readonly number[] {
  return p.leader?.isr ?? p.state?.isr ?? [];
}

export class BrokerMetrics {
  readonly process: ProcessMetrics;
  /** Share-group counters (see share-metrics.ts). */
  readonly share: ShareMetrics;
  private readonly produceBytes: Counter;
  private readonly fetchBytes: Counter;
  private readonly replicationBytesOut: Counter<"follower">;
  private readonly replicationOutChildren = new Map<number, { inc(value: number): void }>();
  private readonly replicationBytesIn: Counter<"leader">;

  constructor(private readonly sources: BrokerMetricsSources) {
    this.process = createProcessMetrics();
    const registers = [this.process.registry];
    this.share = new ShareMetrics(this.process.registry);
    this.produceBytes = new Counter({
      name: "runnel_broker_produce_bytes_total",
      help: "Record-batch bytes received in Produce requests (as sent by producers, before any error).",
      registers,
    });
    this.fetchBytes = new Counter({
      name: "runnel_broker_fetch_bytes_total",
      help: "Record-batch bytes sent to consumers in Fetch responses.",
      registers,
    });
    this.replicationBytesOut = new Counter({
      name: "runnel_broker_replication_bytes_out_total",
      help: "Record-batch bytes sent to followers in ReplicaFetch responses, by follower broker id; sum by follower across brokers gives each follower's replication bytes in.",
      labelNames: ["follower"],
      registers,
    });

    this.replicationBytesIn = new Counter({
      name: "runnel_broker_replication_bytes_in_total",
      help: "Record-batch bytes this broker appended as a follower, by the leader they came from.",
      labelNames: ["leader"],
      registers,
    });

    const partitionGauge = (name: string, help: string, value: (p: Partition) => number | bigint | undefined) =>
      new Gauge<PartitionLabels>({
        name,
        help,
        labelNames: ["topic", "partition"],
        registers,
        collect() {
          // Reset first: a partition deleted or moved away must disappear, not keep its last value.
          this.reset();
          for (const p of sources.replicas.partitions()) {
            const v = value(p);
            if (v !== undefined) this.set({ topic: p.topic, partition: String(p.index) }, Number(v));
          }
        },
      });
    partitionGauge("runnel_partition_log_end_offset", "Offset the next record appended to this replica will get.", (p) => p.log.logEndOffset);
    partitionGauge("runnel_partition_high_watermark", "Offset below which records are committed (readable by consumers), as this replica knows it.", (p) => p.log.highWatermark);
    partitionGauge("runnel_partition_log_start_offset", "First offset still stored (retention moves it up).", (p) => p.log.logStartOffset);
    partitionGauge("runnel_partition_size_bytes", "Bytes of record batches stored for this replica.", (p) => p.log.sizeBytes);
    partitionGauge("runnel_partition_replicas", "Assigned replicas of the partition.", (p) => p.state?.replicas.length);
    partitionGauge("runnel_partition_isr_size", "In-sync replicas of the partition (the leader's live view when this broker leads).", (p) => isrOf(p).length);
    partitionGauge("runnel_partition_leader", "1 when this broker leads the partition, else 0.", (p) => (p.role === "leader" ? 1 : 0));
    partitionGauge("runnel_partition_leader_epoch", "Leader epoch this replica is in.", (p) => p.leaderEpoch);
    partitionGauge("runnel_partition_under_replicated", "1 when this broker leads the partition and its ISR is smaller than its replica set (reported by the leader only).", (p) =>
      p.role === "leader" ? (isrOf(p).length < (p.state?.replicas.length ?? 0) ? 1 : 0) : undefined,
    );

    const brokerGauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });
    brokerGauge("runnel_broker_partitions", "Partition replicas hosted by this broker.", () => sources.replicas.partitions().length);
    brokerGauge("runnel_broker_leader_partitions", "Partitions this broker leads.", () => sources.replicas.leaderCount());
    brokerGauge("runnel_broker_under_replicated_partitions", "Partitions this broker leads whose ISR is smaller than their replica set.", () =>
      sources.replicas.partitions().filter((p) => p.role === "leader" && isrOf(p).length < (p.state?.replicas.length ?? 0)).length,
    );
    brokerGauge("runnel_broker_offline_partitions", "Partitions hosted here that have no leader in the metadata this broker holds.", () =>
      sources.replicas.partitions().filter((p) => p.role === "offline").length,
    );
    brokerGauge("runnel_broker_out_of_sync_partitions", "Partitions hosted here, with a leader, whose ISR does not include this broker (it has not caught up).", () =>
      outOfSyncPartitions(sources.brokerId, sources.replicas.partitions()).length,
    );
    brokerGauge("runnel_broker_metadata_version", "Version of the cluster metadata this broker has applied (-1 before the first snapshot).", () => Number(sources.metadata.metadataVersion));
  }

  producedBytes(bytes: number): void {
    if (bytes > 0) this.produceBytes.inc(bytes);
  }

  fetchedBytes(bytes: number): void {
    if (bytes > 0) this.fetchBytes.inc(bytes);
  }

  replicatedBytes(followerId: number, bytes: number): void {
    if (bytes <= 0) return;
    // Only broker ids the metadata knows become label values: a bogus replica id cannot grow the label set.
    const known = this.sources.metadata.broker(followerId) !== undefined;
    const key = known ? followerId : -1;
    let child = this.replicationOutChildren.get(key);
    if (child === undefined) {
      child = this.replicationBytesOut.labels(known ? String(followerId) : unknownFollowerLabel);
      this.replicationOutChildren.set(key, child);
    }
    child.inc(bytes);
  }

  /** Bytes appended as a follower; leader ids come from this broker's own metadata, so labels stay bounded. */
  followerAppendedBytes(leaderId: number, bytes: number): void {
    if (bytes > 0) this.replicationBytesIn.labels(String(leaderId)).inc(bytes);
  }

  text(): Promise<string> {
    return this.process.text();
  }
}

/**
 * Partitions this broker replicates that have a leader but whose ISR leaves this broker out: it has
 * not caught up. Partitions without a leader are not counted (nothing to catch up with).
 */
export function outOfSyncPartitions(brokerId: number, partitions: readonly Partition[]): Partition[] {
  return partitions.filter((p) => p.state !== undefined && p.state.leaderId >= 0 && !isrOf(p).includes(brokerId));
}
