// The controller's metrics: partition health, leaders per broker and group offsets computed from a
// hand-made cluster and group state, and an in-process controller scraped over HTTP (RPC counts by
// method and code, process metrics, gauges that follow commands).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { channelOptions, createLogger, type MetricSample, metricSample as sample, parseMetricsText as parseMetrics } from "@runnel/common";
import { ControllerServiceClient, ErrorCode } from "@runnel/proto";
import { emptyGroupsState, type GroupsState, heartbeat, offsetCommit } from "../src/groups/index.js";
import { type ClusterState, createTopics, initialState, noLeader, type PartitionRecord, registerBroker, type TopicRecord } from "../src/metadata/index.js";
import { ControllerMetrics, partitionHealth } from "../src/metrics/controller-metrics.js";
import { startController, type RunningController } from "../src/index.js";




const metadataConfig = { sessionTimeoutMs: 6000, autoLeaderRebalance: false, leaderImbalanceCheckMs: 1000 };

/** Three brokers (3 fenced) and topic "t" with: p0 healthy, p1 led by a non-preferred replica and under-replicated, p2 offline. */
function clusterState(): ClusterState {
  let s = initialState("metrics-cluster", 0);
  for (const id of [1, 2, 3]) s = registerBroker(s, { brokerId: id, host: "127.0.0.1", port: 9000 + id, rack: "", incarnationId: `disk-${id}` }, 0, metadataConfig).state;
  s = createTopics(s, [{ name: "t", partitions: 3, replicationFactor: 3, configs: {} }], false).state;
  const t = s.topics.get("t")!;
  const part = (leader: number, isr: number[]): PartitionRecord => ({ replicas: [1, 2, 3], isr, leader, leaderEpoch: 1, partitionEpoch: 1 });
  const topic: TopicRecord = { ...t, partitions: [part(1, [1, 2, 3]), part(2, [2, 1]), part(noLeader, [3])] };
  const brokers = new Map(s.brokers);
  brokers.set(3, { ...brokers.get(3)!, alive: false, fenced: true });
  return { ...s, brokers, topics: new Map([["t", topic]]) };
}

/** Group "g" with one member, offsets committed for t-0 (5) and t-2 (12). */
function groupsState(): GroupsState {
  const counts = new Map([["t", 3]]);
  const config = { sessionTimeoutMs: 45_000, heartbeatIntervalMs: 3000 };
  const joined = heartbeat(
    emptyGroupsState,
    { groupId: "g", memberId: "", memberEpoch: 0, instanceId: "", rebalanceTimeoutMs: 1000, subscribedTopicNames: ["t"], subscribedTopicRegex: "", serverAssignor: "", ownedPartitions: [], clientId: "c", newMemberId: "m1" },
    counts,
    0,
    config,
  );
  expect(joined.response.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  const committed = offsetCommit(
    joined.state,
    {
      groupId: "g",
      memberId: "m1",
      memberEpoch: joined.response.memberEpoch,
      topics: [{ topic: "t", partitions: [0, 2].map((partition) => ({ partition, committedOffset: partition === 0 ? 5n : 12n, committedLeaderEpoch: 1, metadata: "" })) }],
    },
    counts,
    0,
  );
  expect(committed.response.topics[0]!.partitions.map((p) => p.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE, ErrorCode.ERROR_CODE_NONE]);
  return committed.state;
}

describe("controller metrics from the state", () => {
  it("counts partitions by health and leaders per broker", () => {
    const h = partitionHealth(clusterState());
    expect(h).toMatchObject({ partitions: 3, offline: 1, underReplicated: 2, nonPreferredLeader: 1 });
    expect([...h.leadersByBroker]).toEqual([[1, 1], [2, 1], [3, 0]]);
  });

  it("exposes brokers, partitions, leaders per broker, group members and committed offsets", async () => {
    const source = { state: clusterState(), groups: groupsState(), subscriberCount: 2, queue: { length: 0 } };
    const samples = parseMetrics(await new ControllerMetrics(source).text());
    expect(sample(samples, "runnel_controller_brokers", { state: "registered" })).toBe(3);
    expect(sample(samples, "runnel_controller_brokers", { state: "alive" })).toBe(2);
    expect(sample(samples, "runnel_controller_brokers", { state: "fenced" })).toBe(1);
    expect(sample(samples, "runnel_controller_topics")).toBe(1);
    expect(sample(samples, "runnel_controller_partitions")).toBe(3);
    expect(sample(samples, "runnel_controller_offline_partitions")).toBe(1);
    expect(sample(samples, "runnel_controller_under_replicated_partitions")).toBe(2);
    expect(sample(samples, "runnel_controller_non_preferred_leader_partitions")).toBe(1);
    expect(sample(samples, "runnel_controller_leader_partitions", { broker: "1" })).toBe(1);
    expect(sample(samples, "runnel_controller_leader_partitions", { broker: "2" })).toBe(1);
    expect(sample(samples, "runnel_controller_leader_partitions", { broker: "3" })).toBe(0);
    expect(sample(samples, "runnel_controller_metadata_watchers")).toBe(2);
    expect(sample(samples, "runnel_controller_groups")).toBe(1);
    expect(sample(samples, "runnel_group_members", { group: "g" })).toBe(1);
    expect(sample(samples, "runnel_group_epoch", { group: "g" })).toBeGreaterThan(0);
    expect(sample(samples, "runnel_group_committed_offset", { group: "g", topic: "t", partition: "0" })).toBe(5);
    expect(sample(samples, "runnel_group_committed_offset", { group: "g", topic: "t", partition: "2" })).toBe(12);
    expect(sample(samples, "runnel_group_committed_offset", { group: "g", topic: "t", partition: "1" })).toBeUndefined();
  });

  it("a deleted topic's and a removed broker's series disappear at the next scrape", async () => {
    const source = { state: clusterState(), groups: emptyGroupsState, subscriberCount: 0, queue: { length: 0 } };
    const metrics = new ControllerMetrics(source);
    expect(sample(parseMetrics(await metrics.text()), "runnel_controller_leader_partitions", { broker: "3" })).toBe(0);
    const brokers = new Map(source.state.brokers);
    brokers.delete(3);
    source.state = { ...source.state, brokers, topics: new Map() };
    const samples = parseMetrics(await metrics.text());
    expect(sample(samples, "runnel_controller_leader_partitions", { broker: "3" })).toBeUndefined();
    expect(sample(samples, "runnel_controller_partitions")).toBe(0);
  });
});

describe("controller /metrics over HTTP", () => {
  let dir: string | undefined;
  let controller: RunningController | undefined;
  let client: ControllerServiceClient | undefined;

  afterEach(async () => {
    client?.close();
    await controller?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("counts RPCs by method and code and shows the state they changed", async () => {
    dir = mkdtempSync(join(tmpdir(), "runnel-controller-metrics-"));
    controller = await startController({
      listen: "127.0.0.1:0",
      http: "127.0.0.1:0",
      dataDir: dir,
      sessionTimeoutMs: 60_000,
      heartbeatIntervalMs: 1000,
      autoLeaderRebalance: false,
      leaderImbalanceCheckMs: 1000,
      logger: createLogger({ role: "test", level: "silent" }),
      onFatal: (err) => {
        throw err;
      },
    });
    const c = new ControllerServiceClient(`127.0.0.1:${controller.grpcPort}`, grpc.credentials.createInsecure(), channelOptions);
    client = c;
    const register = () =>
      new Promise<void>((resolve, reject) =>
        c.registerBroker({ brokerId: 1, host: "127.0.0.1", port: 9001, rack: "", incarnationId: "disk-1" }, (err) => (err ? reject(err) : resolve())),
      );
    await register();
    const bad = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.consumerGroupHeartbeat(
        { groupId: "g", memberId: "", memberEpoch: 5, instanceId: "", rebalanceTimeoutMs: 0, subscribedTopicNames: [], subscribedTopicRegex: "", serverAssignor: "", ownedPartitions: [], clientId: "" },
        (err) => resolve(err),
      ),
    );
    expect(bad?.code).toBe(grpc.status.INVALID_ARGUMENT);

    const res = await fetch(`http://127.0.0.1:${controller.httpPort}/metrics`);
    expect(res.status).toBe(200);
    const samples = parseMetrics(await res.text());
    const ok = { method: "runnel.v1.ControllerService/RegisterBroker", code: "OK" };
    expect(sample(samples, "runnel_rpc_requests_total", ok)).toBe(1);
    expect(sample(samples, "runnel_rpc_duration_seconds_count", ok)).toBe(1);
    expect(sample(samples, "runnel_rpc_requests_total", { method: "runnel.v1.ControllerService/ConsumerGroupHeartbeat", code: "INVALID_ARGUMENT" })).toBe(1);
    expect(sample(samples, "runnel_controller_brokers", { state: "registered" })).toBe(1);
    expect(sample(samples, "runnel_controller_leader_partitions", { broker: "1" })).toBe(0);
    expect(sample(samples, "runnel_controller_metadata_version")).toBeGreaterThan(0);
    expect(sample(samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(sample(samples, "nodejs_eventloop_lag_p99_seconds")).toBeGreaterThanOrEqual(0);
  });
});
