// Read-only views of the state for admin answers.
import type { BrokerEndpoint, DescribeClusterResponse } from "@runnel/proto";
import { type ClusterState, noLeader } from "./state.js";

export function describeCluster(state: ClusterState, controller: BrokerEndpoint): DescribeClusterResponse {
  const leaderCount = new Map<number, number>();
  const replicaCount = new Map<number, number>();
  let partitionCount = 0;
  let offline = 0;
  let underReplicated = 0;
  for (const topic of state.topics.values()) {
    for (const p of topic.partitions) {
      partitionCount += 1;
      if (p.leader === noLeader) offline += 1;
      else leaderCount.set(p.leader, (leaderCount.get(p.leader) ?? 0) + 1);
      if (p.isr.length < p.replicas.length) underReplicated += 1;
      for (const r of p.replicas) replicaCount.set(r, (replicaCount.get(r) ?? 0) + 1);
    }
  }
  return {
    clusterId: state.clusterId,
    controller,
    metadataVersion: state.metadataVersion,
    brokers: [...state.brokers.values()]
      .sort((a, b) => a.id - b.id)
      .map((b) => ({
        endpoint: { brokerId: b.id, host: b.host, port: b.port, rack: b.rack },
        alive: b.alive,
        brokerEpoch: b.epoch,
        leaderCount: leaderCount.get(b.id) ?? 0,
        replicaCount: replicaCount.get(b.id) ?? 0,
        shuttingDown: b.shuttingDown,
      })),
    topicCount: state.topics.size,
    partitionCount,
    offlinePartitionCount: offline,
    underReplicatedPartitionCount: underReplicated,
  };
}
