// The controller's Prometheus metrics, all read from the current cluster and group state when
// Prometheus scrapes (nothing is updated on the command path). Group lag needs each partition's high
// watermark, which only brokers know: the scrape asks the partition leaders (HighWatermarkReader).
import { createProcessMetrics, Gauge, type ProcessMetrics } from "@runnel/common";
import type { GroupsState } from "../groups/index.js";
import { noLeader, type ClusterState } from "../metadata/index.js";
import { type HighWatermarkReader, hwKey } from "./high-watermarks.js";

/** What the metrics read; ControllerCore provides it. */
export interface ControllerMetricsSource {
  readonly state: ClusterState;
  readonly groups: GroupsState;
  readonly subscriberCount: number;
  readonly queue: { readonly length: number };
}

/** Partition counts by health, computed in one pass over the topics. */
export interface PartitionHealth {
  partitions: number;
  offline: number;
  underReplicated: number;
  /** Partitions led by a broker other than their preferred (first) replica. */
  nonPreferredLeader: number;
  /** Partitions led, per broker id (every registered broker appears, with 0 if it leads nothing). */
  leadersByBroker: Map<number, number>;
}

export function partitionHealth(state: ClusterState): PartitionHealth {
  const out: PartitionHealth = { partitions: 0, offline: 0, underReplicated: 0, nonPreferredLeader: 0, leadersByBroker: new Map() };
  for (const id of state.brokers.keys()) out.leadersByBroker.set(id, 0);
  for (const t of state.topics.values()) {
    for (const p of t.partitions) {
      out.partitions += 1;
      if (p.leader === noLeader) out.offline += 1;
      else {
        out.leadersByBroker.set(p.leader, (out.leadersByBroker.get(p.leader) ?? 0) + 1);
        if (p.leader !== p.replicas[0]) out.nonPreferredLeader += 1;
      }
      if (p.isr.length < p.replicas.length) out.underReplicated += 1;
    }
  }
  return out;
}

/** The separator offsetKey() puts between topic and partition (groups/state.ts). */
const offsetKeySeparator = "\u0000";

export class ControllerMetrics {
  readonly process: ProcessMetrics;

  constructor(source: ControllerMetricsSource, highWatermarks?: Pick<HighWatermarkReader, "read">) {
    this.process = createProcessMetrics();
    const registers = [this.process.registry];
    // One health pass per scrape, shared by the gauges that need it (collect() runs per gauge).
    let cached: { state: ClusterState; health: PartitionHealth } | undefined;
    const health = (state: ClusterState): PartitionHealth => {
      if (cached?.state !== state) cached = { state, health: partitionHealth(state) };
      return cached.health;
    };
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: Gauge<L>, s: ControllerMetricsSource) => void) =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          // Reset first: a deleted group or topic must disappear, not keep its last value.
          this.reset();
          fill(this, source);
        },
      });

    gauge("runnel_controller_metadata_version", "Version of the last published metadata change.", [], (g, s) => g.set(Number(s.state.metadataVersion)));
    gauge("runnel_controller_brokers", "Brokers by state: registered (ever, not unregistered), alive (heartbeating), fenced.", ["state"], (g, s) => {
      const brokers = [...s.state.brokers.values()];
      g.set({ state: "registered" }, brokers.length);
      g.set({ state: "alive" }, brokers.filter((b) => b.alive).length);
      g.set({ state: "fenced" }, brokers.filter((b) => b.fenced).length);
    });
    gauge("runnel_controller_topics", "Topics.", [], (g, s) => g.set(s.state.topics.size));
    gauge("runnel_controller_partitions", "Partitions of all topics.", [], (g, s) => g.set(health(s.state).partitions));
    gauge("runnel_controller_offline_partitions", "Partitions without a leader.", [], (g, s) => g.set(health(s.state).offline));
    gauge("runnel_controller_under_replicated_partitions", "Partitions whose ISR is smaller than their replica set.", [], (g, s) => g.set(health(s.state).underReplicated));
    gauge("runnel_controller_non_preferred_leader_partitions", "Partitions led by a replica other than the preferred (first) one.", [], (g, s) => g.set(health(s.state).nonPreferredLeader));
    gauge("runnel_controller_leader_partitions", "Partitions each broker leads.", ["broker"], (g, s) => {
      for (const [broker, n] of health(s.state).leadersByBroker) g.set({ broker: String(broker) }, n);
    });
    gauge("runnel_controller_metadata_watchers", "Open metadata streams (brokers and tools watching).", [], (g, s) => g.set(s.subscriberCount));
    gauge("runnel_controller_queued_commands", "Commands waiting in the controller's queue.", [], (g, s) => g.set(s.queue.length));
    gauge("runnel_controller_groups", "Consumer groups.", [], (g, s) => g.set(s.groups.groups.size));
    gauge("runnel_group_members", "Members of each consumer group.", ["group"], (g, s) => {
      for (const group of s.groups.groups.values()) g.set({ group: group.groupId }, group.members.size);
    });
    gauge("runnel_group_epoch", "Group epoch (grows at every membership or subscription change).", ["group"], (g, s) => {
      for (const group of s.groups.groups.values()) g.set({ group: group.groupId }, group.groupEpoch);
    });
    gauge("runnel_group_committed_offset", "Committed offset per group and partition (lag = the partition leader's runnel_partition_high_watermark minus this).", ["group", "topic", "partition"], (g, s) => {
      for (const group of s.groups.groups.values()) {
        for (const [key, committed] of group.offsets) {
          const at = key.lastIndexOf(offsetKeySeparator);
          g.set({ group: group.groupId, topic: key.slice(0, at), partition: key.slice(at + 1) }, Number(committed.offset));
        }
      }
    });
    if (highWatermarks !== undefined) {
      new Gauge({
        name: "runnel_group_lag",
        help: "Records a group has not consumed yet per partition: the leader's high watermark minus the committed offset (absent when the leader did not answer within the scrape's deadline).",
        labelNames: ["group", "topic", "partition"],
        registers,
        async collect() {
          this.reset();
          const committed: Array<{ group: string; topic: string; partition: number; offset: bigint }> = [];
          for (const group of source.groups.groups.values()) {
            for (const [key, c] of group.offsets) {
              const at = key.lastIndexOf(offsetKeySeparator);
              committed.push({ group: group.groupId, topic: key.slice(0, at), partition: Number(key.slice(at + 1)), offset: c.offset });
            }
          }
          if (committed.length === 0) return;
          const hws = await highWatermarks.read(source.state, committed);
          for (const c of committed) {
            const hw = hws.get(hwKey(c.topic, c.partition));
            if (hw !== undefined) this.set({ group: c.group, topic: c.topic, partition: String(c.partition) }, Number(hw > c.offset ? hw - c.offset : 0n));
          }
        },
      });
    }
  }

  text(): Promise<string> {
    return this.process.text();
  }
}
