// Integration: real LMDB and real gRPC, the controller started in-process on free ports.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { channelOptions, createLogger } from "@runnel/common";
import {
  type ClusterSnapshot,
  ControllerServiceClient,
  ControllerServiceService,
  type DescribeClusterResponse,
  ErrorCode,
  type MetadataEvent,
} from "@runnel/proto";
import { applyDelta, type ClusterState, createTopics, initialState, registerBroker, snapshotOf, tick, alterTopicConfigs, deleteTopics, initProducerId } from "../src/metadata/index.js";
import { startController, type RunningController } from "../src/index.js";
import { MetadataStore } from "../src/store/index.js";

// Long enough that a stalled event loop on a loaded machine does not expire the brokers that keep heartbeating.
const sessionTimeoutMs = 2000;
const heartbeatIntervalMs = 150;
const waitDeadlineMs = 20_000;

type Service = typeof ControllerServiceService;
type UnaryMethod = { [K in keyof Service]: Service[K]["responseStream"] extends false ? K : never }[keyof Service];
type RequestOf<K extends UnaryMethod> = ReturnType<Service[K]["requestDeserialize"]>;
type ResponseOf<K extends UnaryMethod> = ReturnType<Service[K]["responseDeserialize"]>;

/** A unary call as a promise, typed from the service definition. */
function rpc<K extends UnaryMethod>(c: ControllerServiceClient, method: K, request: RequestOf<K>): Promise<ResponseOf<K>> {
  const fn = c[method] as unknown as (req: RequestOf<K>, cb: (err: grpc.ServiceError | null, res: ResponseOf<K>) => void) => void;
  return new Promise((resolve, reject) => fn.call(c, request, (err, res) => (err ? reject(err) : resolve(res))));
}

async function callError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error("the call succeeded but was expected to fail");
}

/** Polls until `condition` holds; fails after a generous deadline (never a timing assertion). */
async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + waitDeadlineMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A metadata watcher that keeps its own snapshot with applyDelta and checks versions have no gaps. */
class Watcher {
  events: MetadataEvent[] = [];
  snapshot: ClusterSnapshot | undefined;
  version = -1n;
  error: grpc.ServiceError | undefined;
  ended = false;
  readonly stream: grpc.ClientReadableStream<MetadataEvent>;

  constructor(client: ControllerServiceClient, brokerId: number, brokerEpoch: bigint) {
    this.stream = client.watchMetadata({ brokerId, brokerEpoch });
    this.stream.on("data", (e: MetadataEvent) => {
      this.events.push(e);
      if (e.event?.$case === "snapshot") {
        this.snapshot = e.event.value;
      } else if (e.event?.$case === "delta") {
        if (e.metadataVersion !== this.version + 1n) this.error = new Error(`gap: ${this.version} then ${e.metadataVersion}`) as grpc.ServiceError;
        this.snapshot = applyDelta(this.snapshot!, e.event.value);
      }
      this.version = e.metadataVersion;
    });
    this.stream.on("error", (err: grpc.ServiceError) => {
      this.error = err;
    });
    this.stream.on("end", () => {
      this.ended = true;
    });
  }

  close(): void {
    this.stream.cancel();
  }
}

describe("controller over gRPC with LMDB", () => {
  let dir: string;
  let controller: RunningController | undefined;
  let client: ControllerServiceClient | undefined;
  const heartbeats = new Map<number, NodeJS.Timeout>();
  const watchers: Watcher[] = [];

  const start = async () => {
    controller = await startController({
      listen: "127.0.0.1:0",
      http: "127.0.0.1:0",
      dataDir: dir,
      sessionTimeoutMs,
      heartbeatIntervalMs,
      autoLeaderRebalance: true,
      leaderImbalanceCheckMs: 200,
      logger: createLogger({ role: "test", level: "silent" }),
      onFatal: (err) => {
        throw err;
      },
    });
    client?.close();
    client = new ControllerServiceClient(`127.0.0.1:${controller.grpcPort}`, grpc.credentials.createInsecure(), channelOptions);
    return client;
  };

  const heartbeatLoop = (c: ControllerServiceClient, brokerId: number, brokerEpoch: bigint) => {
    heartbeats.set(
      brokerId,
      setInterval(() => {
        c.brokerHeartbeat({ brokerId, brokerEpoch, metadataVersion: 0n }, () => undefined);
      }, heartbeatIntervalMs),
    );
  };
  const stopHeartbeats = (brokerId?: number) => {
    for (const [id, timer] of heartbeats) {
      if (brokerId === undefined || id === brokerId) {
        clearInterval(timer);
        heartbeats.delete(id);
      }
    }
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "runnel-controller-test-"));
  });

  afterEach(async () => {
    stopHeartbeats();
    for (const w of watchers.splice(0)) w.close();
    client?.close();
    client = undefined;
    await controller?.stop();
    controller = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("registers brokers, creates a topic, streams metadata, elects on session expiry, and survives a restart", async () => {
    let c = await start();
    const epochs = new Map<number, bigint>();
    for (const id of [1, 2, 3]) {
      const res = await rpc(c, "registerBroker", { brokerId: id, host: "127.0.0.1", port: 9000 + id, rack: "", incarnationId: `disk-${id}` });
      expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
      expect(res.sessionTimeoutMs).toBe(sessionTimeoutMs);
      expect(res.heartbeatIntervalMs).toBe(heartbeatIntervalMs);
      epochs.set(id, res.brokerEpoch);
      heartbeatLoop(c, id, res.brokerEpoch);
    }
    const created = await rpc(c, "createTopics", { topics: [{ name: "orders", partitions: 3, replicationFactor: 3, configs: { "retention.ms": "60000" } }], validateOnly: false });
    expect(created.topics[0]).toMatchObject({ name: "orders", errorCode: ErrorCode.ERROR_CODE_NONE });

    const observer = new Watcher(c, -1, 0n);
    const asBroker = new Watcher(c, 1, epochs.get(1)!);
    watchers.push(observer, asBroker);
    await waitFor("snapshots", () => observer.snapshot !== undefined && asBroker.snapshot !== undefined);
    expect(observer.events[0]!.event?.$case).toBe("snapshot");
    const orders = observer.snapshot!.topics.find((t) => t.name === "orders")!;
    expect(orders.partitions).toHaveLength(3);
    expect(orders.configs).toEqual({ "retention.ms": "60000" });
    const ledBy2 = orders.partitions.filter((p) => p.leaderId === 2);
    expect(ledBy2.length).toBeGreaterThan(0);

    // Broker 2 goes silent: its session expires and the stream shows new leaders.
    stopHeartbeats(2);
    const leadersMoved = () => {
      const t = observer.snapshot?.topics.find((x) => x.name === "orders");
      return t !== undefined && t.partitions.every((p) => p.leaderId !== 2 && !p.isr.includes(2)) && observer.snapshot!.brokers.find((b) => b.brokerId === 2)?.alive === false;
    };
    await waitFor("broker 2 fenced and its leaderships moved", leadersMoved);
    for (const p of ledBy2) {
      const now = observer.snapshot!.topics.find((t) => t.name === "orders")!.partitions[p.partition]!;
      expect([1, 3]).toContain(now.leaderId);
      expect(now.leaderEpoch).toBe(p.leaderEpoch + 1);
    }
    expect(observer.error).toBeUndefined();
    await waitFor("the broker watcher to catch up", () => asBroker.version === observer.version);
    expect(asBroker.snapshot).toEqual(observer.snapshot);

    // Stale broker epoch: heartbeats, watches and AlterPartition from the fenced registration are rejected.
    const hb = await rpc(c, "brokerHeartbeat", { brokerId: 2, brokerEpoch: epochs.get(2)!, metadataVersion: 0n });
    expect(hb.errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);
    const staleWatch = new Watcher(c, 2, epochs.get(2)!);
    watchers.push(staleWatch);
    await waitFor("the stale watch to fail", () => staleWatch.error !== undefined);
    expect(staleWatch.error!.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(staleWatch.error!.details).toContain("STALE_BROKER_EPOCH");
    const p0 = observer.snapshot!.topics.find((t) => t.name === "orders")!.partitions[0]!;
    const alter = await rpc(c, "alterPartition", {
      brokerId: 2,
      brokerEpoch: epochs.get(2)!,
      topic: "orders",
      partition: 0,
      leaderEpoch: p0.leaderEpoch,
      partitionEpoch: p0.partitionEpoch,
      newIsr: [2],
    });
    expect(alter.errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);

    const pid1 = await rpc(c, "initProducerId", { producerId: 0n, producerEpoch: 0 });
    const pid2 = await rpc(c, "initProducerId", { producerId: 0n, producerEpoch: 0 });
    expect([pid1.producerId, pid2.producerId]).toEqual([1n, 2n]);

    const before: DescribeClusterResponse = await rpc(c, "describeCluster", {});
    expect(before.topicCount).toBe(1);
    expect(before.partitionCount).toBe(3);
    expect(before.brokers.map((b) => [b.endpoint!.brokerId, b.alive])).toEqual([
      [1, true],
      [2, false],
      [3, true],
    ]);
    const snapshotBefore = observer.snapshot!;

    // Restart on the same data directory.
    stopHeartbeats();
    await controller!.stop();
    controller = undefined;
    await waitFor("the watch to end at shutdown", () => observer.error !== undefined || observer.ended);
    c = await start();

    const after: DescribeClusterResponse = await rpc(c, "describeCluster", {});
    expect(after.clusterId).toBe(before.clusterId);
    expect(after.metadataVersion).toBeGreaterThanOrEqual(before.metadataVersion);
    expect(after.brokers.map((b) => [b.endpoint!.brokerId, b.brokerEpoch])).toEqual(before.brokers.map((b) => [b.endpoint!.brokerId, b.brokerEpoch]));
    const resynced = new Watcher(c, -1, 0n);
    watchers.push(resynced);
    await waitFor("a snapshot after the restart", () => resynced.snapshot !== undefined);
    expect(resynced.events[0]!.metadataVersion).toBeGreaterThanOrEqual(before.metadataVersion);
    expect(resynced.snapshot!.topics).toEqual(snapshotBefore.topics); // every topic, leader and epoch as before

    // A broker reconnects its watch with its existing epoch during the grace period.
    const brokerWatch = new Watcher(c, 1, epochs.get(1)!);
    watchers.push(brokerWatch);
    await waitFor("broker 1's watch after the restart", () => brokerWatch.snapshot !== undefined || brokerWatch.error !== undefined);
    expect(brokerWatch.error).toBeUndefined();
    // Brokers come back with their existing epoch (controller restart, not broker restart) ...
    for (const id of [1, 3]) {
      const res = await rpc(c, "brokerHeartbeat", { brokerId: id, brokerEpoch: epochs.get(id)!, metadataVersion: 0n });
      expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
      heartbeatLoop(c, id, epochs.get(id)!);
    }
    await waitFor("brokers 1 and 3 alive again", () => resynced.snapshot!.brokers.filter((b) => b.alive).map((b) => b.brokerId).join() === "1,3");
    // ... and new registrations continue the epoch sequence; producer ids too.
    const again = await rpc(c, "registerBroker", { brokerId: 2, host: "127.0.0.1", port: 9002, rack: "", incarnationId: "disk-2" });
    expect(again.brokerEpoch).toBeGreaterThan([...epochs.values()].reduce((a, b) => (a > b ? a : b)));
    const pid3 = await rpc(c, "initProducerId", { producerId: 0n, producerEpoch: 0 });
    expect(pid3.producerId).toBe(3n);
    expect(resynced.error).toBeUndefined();
  });

  it("answers malformed requests with INVALID_ARGUMENT, topic errors with codes, and an empty group list", async () => {
    const c = await start();
    const bad = [
      rpc(c, "registerBroker", { brokerId: -5, host: "h", port: 1, rack: "", incarnationId: "" }),
      rpc(c, "registerBroker", { brokerId: 1, host: "", port: 1, rack: "", incarnationId: "" }),
      rpc(c, "registerBroker", { brokerId: 1, host: "h", port: 70000, rack: "", incarnationId: "" }),
      rpc(c, "brokerHeartbeat", { brokerId: 1, brokerEpoch: 0n, metadataVersion: 0n }),
      rpc(c, "createTopics", { topics: [], validateOnly: false }),
      rpc(c, "deleteTopics", { names: [] }),
      rpc(c, "alterPartition", { brokerId: 1, brokerEpoch: 1n, topic: "t", partition: 0, leaderEpoch: 0, partitionEpoch: 0, newIsr: [] }),
      rpc(c, "alterPartition", { brokerId: 1, brokerEpoch: 1n, topic: "t", partition: -1, leaderEpoch: 0, partitionEpoch: 0, newIsr: [1] }),
      rpc(c, "initProducerId", { producerId: -1n, producerEpoch: 0 }),
    ];
    for (const promise of bad) {
      const err = await callError(promise);
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details.length).toBeGreaterThan(0);
    }
    const badWatch = new Watcher(c, -3, 0n);
    watchers.push(badWatch);
    await waitFor("the malformed watch to fail", () => badWatch.error !== undefined);
    expect(badWatch.error!.code).toBe(grpc.status.INVALID_ARGUMENT);

    const reg = await rpc(c, "registerBroker", { brokerId: 1, host: "127.0.0.1", port: 9001, rack: "", incarnationId: "d" });
    heartbeatLoop(c, 1, reg.brokerEpoch);
    const res = await rpc(c, "createTopics", {
      topics: [
        { name: "..", partitions: 1, replicationFactor: 1, configs: {} },
        { name: "rf", partitions: 1, replicationFactor: 2, configs: {} },
        { name: "cfg", partitions: 1, replicationFactor: 1, configs: { "retention.ms": "-7" } },
        { name: "parts", partitions: 10_001, replicationFactor: 1, configs: {} },
        { name: "fine", partitions: 2, replicationFactor: 0, configs: {} },
      ],
      validateOnly: false,
    });
    expect(res.topics.map((t) => t.errorCode)).toEqual([
      ErrorCode.INVALID_TOPIC_NAME,
      ErrorCode.INVALID_REPLICATION_FACTOR,
      ErrorCode.INVALID_CONFIG,
      ErrorCode.INVALID_PARTITIONS,
      ErrorCode.ERROR_CODE_NONE,
    ]);
    const exists = await rpc(c, "createTopics", { topics: [{ name: "fine", partitions: 1, replicationFactor: 1, configs: {} }], validateOnly: false });
    expect(exists.topics[0]!.errorCode).toBe(ErrorCode.TOPIC_ALREADY_EXISTS);
    const deleted = await rpc(c, "deleteTopics", { names: ["fine", "fine"] });
    expect(deleted.topics.map((t) => t.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]);

    const groups = await rpc(c, "listGroups", {});
    expect(groups.groups).toEqual([]);
    const badGroup = await callError(rpc(c, "consumerGroupHeartbeat", { groupId: "g", memberId: "", memberEpoch: 5, instanceId: "", rebalanceTimeoutMs: 0, subscribedTopicNames: [], subscribedTopicRegex: "", serverAssignor: "", ownedPartitions: [], clientId: "" }));
    expect(badGroup.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("serves /healthz and /readyz", async () => {
    await start();
    const base = `http://127.0.0.1:${controller!.httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain("runnel_controller_metadata_version 0");
  });
});

describe("metadata store", () => {
  it("loads exactly what was persisted, command by command, with brokers not alive until they return", async () => {
    const dir = mkdtempSync(join(tmpdir(), "runnel-controller-store-"));
    try {
      let store = MetadataStore.open(dir);
      let state: ClusterState = await store.load(() => "cluster-x", 0);
      const config = { sessionTimeoutMs: 1000, autoLeaderRebalance: false, leaderImbalanceCheckMs: 1000 };
      const steps: ((s: ClusterState) => { state: ClusterState })[] = [
        (s) => registerBroker(s, { brokerId: 1, host: "a", port: 1, rack: "r1", incarnationId: "i1" }, 0, config),
        (s) => registerBroker(s, { brokerId: 2, host: "b", port: 2, rack: "r2", incarnationId: "i2" }, 0, config),
        (s) => createTopics(s, [{ name: "x", partitions: 4, replicationFactor: 2, configs: {} }, { name: "y", partitions: 1, replicationFactor: 1, configs: {} }], false),
        (s) => alterTopicConfigs(s, [{ name: "x", set: { "retention.bytes": "1000" }, remove: [] }]),
        (s) => initProducerId(s, { producerId: 0n, producerEpoch: 0 }),
        (s) => initProducerId(s, { producerId: 1n, producerEpoch: 0 }),
        (s) => tick(s, 500, config),
        (s) => registerBroker(s, { brokerId: 2, host: "b", port: 2, rack: "r2", incarnationId: "i2" }, 600, config),
        (s) => tick(s, 1500, config), // broker 1 expires
        (s) => deleteTopics(s, ["y"]),
      ];
      for (const step of steps) {
        const next = step(state).state;
        await store.persist(state, next);
        state = next;
      }
      await store.close();
      store = MetadataStore.open(dir);
      const loaded = await store.load(() => "never-used", 5000);
      await store.close();
      const expected = snapshotOf(state);
      expected.brokers = expected.brokers.map((b) => ({ ...b, alive: false }));
      expect(snapshotOf(loaded)).toEqual(expected);
      expect(loaded.metadataVersion).toBe(state.metadataVersion);
      expect(loaded.nextBrokerEpoch).toBe(state.nextBrokerEpoch);
      expect(loaded.nextProducerId).toBe(2n);
      expect(loaded.producerEpochs.get(1n)).toBe(1);
      expect(loaded.nextTopicSeq).toBe(state.nextTopicSeq);
      // The fenced broker stays fenced; the other gets one session of grace from the load time.
      expect(loaded.brokers.get(1)!.fenced).toBe(true);
      expect(loaded.lastHeartbeatMs.get(2)).toBe(5000);
      expect(loaded.lastHeartbeatMs.has(1)).toBe(false);
      expect(initialState("z", 0).metadataVersion).toBe(0n);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
