import { describe, expect, it } from "vitest";
import { type ClusterSnapshot, ErrorCode } from "@runnel/proto";
import {
  alterPartition,
  alterTopicConfigs,
  applyDelta,
  type ClusterState,
  type CommandResult,
  controlledShutdown,
  createTopics,
  deleteTopics,
  describeCluster,
  heartbeat,
  initialState,
  initProducerId,
  maxProducerEpoch,
  type MetadataConfig,
  noLeader,
  type PartitionRecord,
  registerBroker,
  snapshotOf,
  tick,
} from "../src/metadata/index.js";

const sessionTimeoutMs = 1000;

/**
 * Drives the state machine with simulated time. After every command it checks the delta contract:
 * the version grows by one per delta, and the follower's snapshot (initial snapshot + every delta,
 * through applyDelta) equals a fresh snapshot of the state.
 */
class Sim {
  state: ClusterState;
  follower: ClusterSnapshot;
  nowMs = 1_000_000;
  deltas = 0;
  readonly epochs = new Map<number, bigint>();

  constructor(readonly config: MetadataConfig = { sessionTimeoutMs, autoLeaderRebalance: false, leaderImbalanceCheckMs: 100 }) {
    this.state = initialState("test-cluster", this.nowMs);
    this.follower = snapshotOf(this.state);
  }

  run<R>(command: (s: ClusterState) => CommandResult<R>): R {
    const before = this.state.metadataVersion;
    const result = command(this.state);
    if (result.delta !== undefined) {
      expect(result.state.metadataVersion).toBe(before + 1n);
      this.follower = applyDelta(this.follower, result.delta);
      this.deltas += 1;
    } else {
      expect(result.state.metadataVersion).toBe(before);
    }
    this.state = result.state;
    expect(this.follower).toEqual(snapshotOf(this.state));
    return result.response;
  }

  register(id: number, rack = ""): bigint {
    const res = this.run((s) => registerBroker(s, { brokerId: id, host: "127.0.0.1", port: 7400 + id, rack, incarnationId: `disk-${id}` }, this.nowMs, this.config));
    expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    this.epochs.set(id, res.brokerEpoch);
    return res.brokerEpoch;
  }

  heartbeat(id: number): ErrorCode {
    return this.run((s) => heartbeat(s, { brokerId: id, brokerEpoch: this.epochs.get(id)! }, this.nowMs)).errorCode;
  }

  /** Advances time; the listed brokers heartbeat at every step, the others go silent. */
  advance(ms: number, liveIds: number[], stepMs = 100): void {
    for (let t = 0; t < ms; t += stepMs) {
      this.nowMs += stepMs;
      for (const id of liveIds) expect(this.heartbeat(id)).toBe(ErrorCode.ERROR_CODE_NONE);
      this.run((s) => tick(s, this.nowMs, this.config));
    }
  }

  create(name: string, partitions: number, replicationFactor: number, configs: Record<string, string> = {}) {
    const [res] = this.run((s) => createTopics(s, [{ name, partitions, replicationFactor, configs }], false));
    return res!;
  }

  part(topic: string, index: number): PartitionRecord {
    return this.state.topics.get(topic)!.partitions[index]!;
  }

  alter(brokerId: number, topic: string, index: number, newIsr: number[], overrides: { leaderEpoch?: number; partitionEpoch?: number; brokerEpoch?: bigint } = {}) {
    const p = this.part(topic, index);
    return this.run((s) =>
      alterPartition(s, {
        brokerId,
        brokerEpoch: overrides.brokerEpoch ?? this.epochs.get(brokerId)!,
        topic,
        partition: index,
        leaderEpoch: overrides.leaderEpoch ?? p.leaderEpoch,
        partitionEpoch: overrides.partitionEpoch ?? p.partitionEpoch,
        newIsr,
      }),
    );
  }
}

/** Three brokers and topic "t" with 3 partitions at RF 3; partition i's preferred leader differs. */
function threeBrokers(configs: Record<string, string> = {}, config?: MetadataConfig): Sim {
  const sim = new Sim(config);
  for (const id of [1, 2, 3]) sim.register(id);
  expect(sim.create("t", 3, 3, configs).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  return sim;
}

function partitionLedBy(sim: Sim, topic: string, brokerId: number): number {
  const index = sim.state.topics.get(topic)!.partitions.findIndex((p) => p.leader === brokerId);
  expect(index).toBeGreaterThanOrEqual(0);
  return index;
}

describe("broker registration and sessions", () => {
  it("every registration gets a strictly larger broker epoch, also for the same broker", () => {
    const sim = new Sim();
    const a = sim.register(1);
    const b = sim.register(2);
    const c = sim.register(1);
    expect(b).toBeGreaterThan(a);
    expect(c).toBeGreaterThan(b);
    expect(sim.state.brokers.get(1)!.epoch).toBe(c);
  });

  it("a heartbeat with a stale or unknown epoch is STALE_BROKER_EPOCH", () => {
    const sim = new Sim();
    const old = sim.register(1);
    sim.register(1);
    expect(sim.run((s) => heartbeat(s, { brokerId: 1, brokerEpoch: old }, sim.nowMs)).errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);
    expect(sim.run((s) => heartbeat(s, { brokerId: 9, brokerEpoch: 1n }, sim.nowMs)).errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);
  });

  it("a second live process with another data directory cannot take a broker id", () => {
    const sim = new Sim();
    sim.register(1);
    const res = sim.run((s) => registerBroker(s, { brokerId: 1, host: "h", port: 1, rack: "", incarnationId: "other-disk" }, sim.nowMs, sim.config));
    expect(res.errorCode).toBe(ErrorCode.BROKER_NOT_AVAILABLE);
    sim.advance(sessionTimeoutMs, []);
    const later = sim.run((s) => registerBroker(s, { brokerId: 1, host: "h", port: 1, rack: "", incarnationId: "other-disk" }, sim.nowMs, sim.config));
    expect(later.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  });

  it("a broker that stops heartbeating is fenced after the session timeout, and its epoch is then stale", () => {
    const sim = new Sim();
    sim.register(1);
    sim.register(2);
    sim.advance(sessionTimeoutMs - 100, [1]);
    expect(sim.state.brokers.get(2)!.alive).toBe(true);
    sim.advance(100, [1]);
    expect(sim.state.brokers.get(2)!.alive).toBe(false);
    expect(sim.state.brokers.get(1)!.alive).toBe(true);
    expect(sim.heartbeat(2)).toBe(ErrorCode.STALE_BROKER_EPOCH);
  });
});

describe("leader election on session expiry", () => {
  it("elects a new leader from the live ISR with leader epoch + 1 and removes the fenced broker from the ISR", () => {
    const sim = threeBrokers();
    const index = partitionLedBy(sim, "t", 2);
    const before = sim.part("t", index);
    sim.advance(sessionTimeoutMs, [1, 3]);
    const after = sim.part("t", index);
    expect(after.leader).not.toBe(2);
    expect([1, 3]).toContain(after.leader);
    expect(after.leaderEpoch).toBe(before.leaderEpoch + 1);
    expect(after.partitionEpoch).toBeGreaterThan(before.partitionEpoch);
    expect(after.isr).not.toContain(2);
    // Broker 2 also left the ISR of the partitions it did not lead, without a leader change.
    for (const p of sim.state.topics.get("t")!.partitions) {
      expect(p.isr).toEqual(p.replicas.filter((r) => r !== 2));
    }
  });

  it("never removes the last ISR member; with no live ISR member the partition goes offline", () => {
    const sim = threeBrokers();
    sim.advance(sessionTimeoutMs, [1]); // 2 and 3 expire
    const offlineEpochs = sim.state.topics.get("t")!.partitions.map((p) => p.leaderEpoch);
    for (const p of sim.state.topics.get("t")!.partitions) expect(p.isr).toEqual([1]);
    sim.advance(sessionTimeoutMs, []); // 1 expires too
    sim.state.topics.get("t")!.partitions.forEach((p, i) => {
      expect(p.isr).toEqual([1]);
      expect(p.leader).toBe(noLeader);
      expect(p.leaderEpoch).toBe(offlineEpochs[i]! + 1);
    });
    const described = describeCluster(sim.state, { brokerId: -1, host: "c", port: 1, rack: "" });
    expect(described.offlinePartitionCount).toBe(3);
  });

  it("the last ISR member leads again when it re-registers (new leader epoch); others do not rejoin the ISR", () => {
    const sim = threeBrokers();
    sim.advance(sessionTimeoutMs, [1]);
    sim.advance(sessionTimeoutMs, []);
    const offline = sim.part("t", 0);
    sim.register(3);
    expect(sim.part("t", 0).leader).toBe(noLeader); // 3 is not in the ISR: no unclean election
    sim.register(1);
    const back = sim.part("t", 0);
    expect(back.leader).toBe(1);
    expect(back.isr).toEqual([1]);
    expect(back.leaderEpoch).toBe(offline.leaderEpoch + 1);
  });

  it("with unclean.leader.election.enable=true an out-of-sync live replica leads when no ISR member is alive", () => {
    const sim = threeBrokers({ "unclean.leader.election.enable": "true" });
    sim.advance(sessionTimeoutMs, [1]);
    sim.register(2); // alive again, not in any ISR
    sim.advance(sessionTimeoutMs, [2]); // 1 (the only ISR member) expires
    for (const p of sim.state.topics.get("t")!.partitions) {
      expect(p.leader).toBe(2);
      expect(p.isr).toEqual([2]);
    }
  });

  it("enabling unclean election on an offline topic elects at once", () => {
    const sim = threeBrokers();
    sim.advance(sessionTimeoutMs, [1]);
    sim.register(2);
    sim.advance(sessionTimeoutMs, [2]);
    expect(sim.part("t", 0).leader).toBe(noLeader);
    const [res] = sim.run((s) => alterTopicConfigs(s, [{ name: "t", set: { "unclean.leader.election.enable": "true" }, remove: [] }]));
    expect(res!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(sim.part("t", 0).leader).toBe(2);
  });

  it("a broker restarting within its session leaves the ISRs (its unflushed data may be gone)", () => {
    const sim = threeBrokers();
    const index = partitionLedBy(sim, "t", 1);
    sim.register(1);
    const p = sim.part("t", index);
    expect(p.leader).not.toBe(1);
    for (const q of sim.state.topics.get("t")!.partitions) expect(q.isr).not.toContain(1);
  });
});

describe("preferred leader balancing", () => {
  it("leadership returns to the preferred replica only once it is back AND in the ISR", () => {
    const sim = threeBrokers({}, { sessionTimeoutMs, autoLeaderRebalance: true, leaderImbalanceCheckMs: 100 });
    const index = sim.state.topics.get("t")!.partitions.findIndex((p) => p.replicas[0] === 2);
    sim.advance(sessionTimeoutMs, [1, 3]);
    const moved = sim.part("t", index);
    expect(moved.leader).not.toBe(2);
    sim.register(2);
    sim.advance(500, [1, 2, 3]);
    expect(sim.part("t", index).leader).toBe(moved.leader); // alive, but not in sync yet
    // The leader saw broker 2 catch up and expands the ISR.
    const res = sim.alter(moved.leader, "t", index, [...sim.part("t", index).isr, 2]);
    expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    sim.advance(200, [1, 2, 3]);
    const back = sim.part("t", index);
    expect(back.leader).toBe(2);
    expect(back.leaderEpoch).toBe(moved.leaderEpoch + 1);
  });

  it("is off when auto leader rebalance is disabled", () => {
    const sim = threeBrokers();
    const index = sim.state.topics.get("t")!.partitions.findIndex((p) => p.replicas[0] === 2);
    sim.advance(sessionTimeoutMs, [1, 3]);
    const leader = sim.part("t", index).leader;
    sim.register(2);
    sim.alter(leader, "t", index, [...sim.part("t", index).isr, 2]);
    sim.advance(1000, [1, 2, 3]);
    expect(sim.part("t", index).leader).toBe(leader);
  });
});

describe("AlterPartition compare-and-set", () => {
  function shrunk() {
    const sim = threeBrokers();
    const index = partitionLedBy(sim, "t", 1);
    const p = sim.part("t", index);
    const follower = p.isr.find((b) => b !== 1)!;
    return { sim, index, p, follower };
  }

  it("accepts a shrink from the current leader and bumps the partition epoch only", () => {
    const { sim, index, p, follower } = shrunk();
    const res = sim.alter(1, "t", index, p.isr.filter((b) => b !== follower));
    expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(res.partition!.partitionEpoch).toBe(p.partitionEpoch + 1);
    expect(res.partition!.leaderEpoch).toBe(p.leaderEpoch);
    expect(sim.part("t", index).isr).not.toContain(follower);
  });

  it("rejects a stale partition epoch", () => {
    const { sim, index, p, follower } = shrunk();
    sim.alter(1, "t", index, p.isr.filter((b) => b !== follower));
    const res = sim.alter(1, "t", index, [...p.isr], { partitionEpoch: p.partitionEpoch });
    expect(res.errorCode).toBe(ErrorCode.INVALID_PARTITION_EPOCH);
    expect(res.partition!.partitionEpoch).toBe(p.partitionEpoch + 1);
  });

  it("rejects a stale leader epoch (a deposed leader)", () => {
    const { sim, index, p } = shrunk();
    const res = sim.alter(1, "t", index, [...p.isr], { leaderEpoch: p.leaderEpoch - 1 });
    expect(res.errorCode).toBe(ErrorCode.FENCED_LEADER_EPOCH);
    // After losing leadership the old leader's proposal is fenced too.
    sim.advance(sessionTimeoutMs, [2, 3]);
    const stale = sim.run((s) =>
      alterPartition(s, { brokerId: 1, brokerEpoch: sim.epochs.get(1)!, topic: "t", partition: index, leaderEpoch: p.leaderEpoch, partitionEpoch: p.partitionEpoch, newIsr: [1] }),
    );
    expect(stale.errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);
  });

  it("rejects a stale broker epoch", () => {
    const { sim, index, p } = shrunk();
    const res = sim.alter(1, "t", index, [...p.isr], { brokerEpoch: sim.epochs.get(1)! - 1n });
    expect(res.errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);
  });

  it("rejects a proposal from a broker that is not the leader", () => {
    const { sim, index, p, follower } = shrunk();
    const res = sim.alter(follower, "t", index, [...p.isr]);
    expect(res.errorCode).toBe(ErrorCode.NOT_LEADER);
  });

  it("rejects an ISR without the leader, with a non-replica, or adding a dead broker", () => {
    const sim = new Sim();
    for (const id of [1, 2, 3, 4]) sim.register(id);
    sim.create("t", 1, 3);
    const p = sim.part("t", 0);
    const leader = p.leader;
    const notReplica = [1, 2, 3, 4].find((b) => !p.replicas.includes(b))!;
    expect(sim.alter(leader, "t", 0, p.isr.filter((b) => b !== leader)).errorCode).toBe(ErrorCode.INVALID_REQUEST);
    expect(sim.alter(leader, "t", 0, [...p.isr, notReplica]).errorCode).toBe(ErrorCode.INVALID_REQUEST);
    expect(sim.alter(leader, "t", 0, [leader, leader]).errorCode).toBe(ErrorCode.INVALID_REQUEST);
    const follower = p.isr.find((b) => b !== leader)!;
    const other = p.isr.find((b) => b !== leader && b !== follower)!;
    expect(sim.alter(leader, "t", 0, p.isr.filter((b) => b !== follower)).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    sim.advance(sessionTimeoutMs, [leader, other, notReplica]);
    expect(sim.alter(leader, "t", 0, [...sim.part("t", 0).isr, follower]).errorCode).toBe(ErrorCode.BROKER_NOT_AVAILABLE);
    expect(sim.part("t", 0).isr).not.toContain(follower);
  });
});

describe("controlled shutdown", () => {
  it("moves every leadership to another ISR member and leaves the ISRs, keeping the broker registered", () => {
    const sim = threeBrokers();
    const led = sim.state.topics.get("t")!.partitions.filter((p) => p.leader === 2).length;
    expect(led).toBeGreaterThan(0);
    const res = sim.run((s) => controlledShutdown(s, { brokerId: 2, brokerEpoch: sim.epochs.get(2)! }));
    expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(res.remainingLeaderships).toEqual([]);
    for (const p of sim.state.topics.get("t")!.partitions) {
      expect(p.leader).not.toBe(2);
      expect(p.isr).not.toContain(2);
    }
    const broker = sim.state.brokers.get(2)!;
    expect(broker.shuttingDown).toBe(true);
    expect(broker.alive).toBe(true);
    // A shutting-down broker may not rejoin an ISR.
    const index = 0;
    const p = sim.part("t", index);
    expect(sim.alter(p.leader, "t", index, [...p.isr, 2]).errorCode).toBe(ErrorCode.BROKER_NOT_AVAILABLE);
  });

  it("answers the leaderships that cannot move (no other live ISR member)", () => {
    const sim = new Sim();
    sim.register(1);
    sim.create("solo", 2, 1);
    const res = sim.run((s) => controlledShutdown(s, { brokerId: 1, brokerEpoch: sim.epochs.get(1)! }));
    expect(res.remainingLeaderships).toEqual([{ topic: "solo", partitions: [0, 1] }]);
    expect(sim.part("solo", 0).leader).toBe(1);
  });

  it("rejects a stale broker epoch", () => {
    const sim = threeBrokers();
    const res = sim.run((s) => controlledShutdown(s, { brokerId: 2, brokerEpoch: 999n }));
    expect(res.errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);
  });
});

describe("topics", () => {
  it("creates a topic with placement, full ISRs and preferred leaders, and rejects invalid requests per topic", () => {
    const sim = new Sim();
    for (const id of [1, 2, 3]) sim.register(id);
    const results = sim.run((s) =>
      createTopics(
        s,
        [
          { name: "ok", partitions: 6, replicationFactor: 0, configs: { "retention.ms": "1000" } },
          { name: "bad name!", partitions: 1, replicationFactor: 1, configs: {} },
          { name: "too-many-replicas", partitions: 1, replicationFactor: 4, configs: {} },
          { name: "negative", partitions: -1, replicationFactor: 1, configs: {} },
          { name: "bad-config", partitions: 1, replicationFactor: 1, configs: { "retention.ms": "soon" } },
          { name: "unknown-config", partitions: 1, replicationFactor: 1, configs: { "no.such.key": "1" } },
          { name: "min-isr-above-rf", partitions: 1, replicationFactor: 2, configs: { "min.insync.replicas": "3" } },
          { name: "ok", partitions: 1, replicationFactor: 1, configs: {} },
        ],
        false,
      ),
    );
    expect(results.map((r) => r.errorCode)).toEqual([
      ErrorCode.ERROR_CODE_NONE,
      ErrorCode.INVALID_TOPIC_NAME,
      ErrorCode.INVALID_REPLICATION_FACTOR,
      ErrorCode.INVALID_PARTITIONS,
      ErrorCode.INVALID_CONFIG,
      ErrorCode.INVALID_CONFIG,
      ErrorCode.INVALID_CONFIG,
      ErrorCode.INVALID_REQUEST,
    ]);
    expect(results[2]!.errorMessage).toContain("live brokers");
    const topic = sim.state.topics.get("ok")!;
    expect(topic.topicId).toBe(results[0]!.topicId);
    expect(topic.partitions).toHaveLength(6);
    for (const p of topic.partitions) {
      expect(p.replicas).toHaveLength(3); // default RF: min(3, live)
      expect(p.isr).toEqual(p.replicas);
      expect(p.leader).toBe(p.replicas[0]);
    }
    expect([...sim.state.topics.keys()]).toEqual(["ok"]);
    const [again] = sim.run((s) => createTopics(s, [{ name: "ok", partitions: 1, replicationFactor: 1, configs: {} }], false));
    expect(again!.errorCode).toBe(ErrorCode.TOPIC_ALREADY_EXISTS);
  });

  it("RF is checked against live brokers (a fenced broker does not count)", () => {
    const sim = new Sim();
    for (const id of [1, 2, 3]) sim.register(id);
    sim.advance(sessionTimeoutMs, [1, 2]);
    expect(sim.create("x", 1, 3).errorCode).toBe(ErrorCode.INVALID_REPLICATION_FACTOR);
    expect(sim.create("x", 1, 2).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  });

  it("validate_only creates nothing and publishes nothing", () => {
    const sim = threeBrokers();
    const version = sim.state.metadataVersion;
    const [res] = sim.run((s) => createTopics(s, [{ name: "v", partitions: 1, replicationFactor: 1, configs: {} }], true));
    expect(res!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(sim.state.topics.has("v")).toBe(false);
    expect(sim.state.metadataVersion).toBe(version);
  });

  it("deletes topics; a re-created topic gets a new id", () => {
    const sim = threeBrokers();
    const oldId = sim.state.topics.get("t")!.topicId;
    const res = sim.run((s) => deleteTopics(s, ["t", "missing", "bad name"]));
    expect(res.map((r) => r.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_TOPIC_NAME]);
    expect(sim.state.topics.has("t")).toBe(false);
    const created = sim.create("t", 1, 1);
    expect(created.topicId).not.toBe(oldId);
  });

  it("alters configuration with validation", () => {
    const sim = threeBrokers({ "retention.ms": "1000" });
    const run = (set: Record<string, string>, remove: string[]) => sim.run((s) => alterTopicConfigs(s, [{ name: "t", set, remove }]))[0]!;
    expect(run({ "max.message.bytes": "2048" }, ["retention.ms"]).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(sim.state.topics.get("t")!.configs).toEqual({ "max.message.bytes": "2048" });
    expect(run({ "max.message.bytes": "1" }, []).errorCode).toBe(ErrorCode.INVALID_CONFIG);
    expect(run({}, ["no.such.key"]).errorCode).toBe(ErrorCode.INVALID_CONFIG);
    expect(run({ "retention.ms": "5" }, ["retention.ms"]).errorCode).toBe(ErrorCode.INVALID_CONFIG);
    expect(run({ "min.insync.replicas": "4" }, []).errorCode).toBe(ErrorCode.INVALID_CONFIG);
    expect(sim.state.topics.get("t")!.configs).toEqual({ "max.message.bytes": "2048" });
    const unknown = sim.run((s) => alterTopicConfigs(s, [{ name: "nope", set: {}, remove: [] }]))[0]!;
    expect(unknown.errorCode).toBe(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
  });
});

describe("producer ids", () => {
  it("allocates strictly increasing ids from 1 and bumps the epoch of an existing id", () => {
    const sim = new Sim();
    const a = sim.run((s) => initProducerId(s, { producerId: 0n, producerEpoch: 0 }));
    const b = sim.run((s) => initProducerId(s, { producerId: 0n, producerEpoch: 0 }));
    expect([a.producerId, b.producerId]).toEqual([1n, 2n]);
    const bumped = sim.run((s) => initProducerId(s, { producerId: 1n, producerEpoch: 0 }));
    expect(bumped).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, producerId: 1n, producerEpoch: 1 });
    expect(sim.run((s) => initProducerId(s, { producerId: 1n, producerEpoch: 0 })).errorCode).toBe(ErrorCode.INVALID_PRODUCER_EPOCH);
    expect(sim.run((s) => initProducerId(s, { producerId: 99n, producerEpoch: 0 })).errorCode).toBe(ErrorCode.UNKNOWN_PRODUCER_ID);
    expect(sim.state.metadataVersion).toBe(0n); // producer ids are not cluster metadata
  });

  it("an exhausted epoch continues under a new id", () => {
    const sim = new Sim();
    sim.run((s) => initProducerId(s, { producerId: 0n, producerEpoch: 0 }));
    sim.state = { ...sim.state, producerEpochs: new Map([[1n, maxProducerEpoch]]) };
    const res = sim.run((s) => initProducerId(s, { producerId: 1n, producerEpoch: maxProducerEpoch }));
    expect(res).toMatchObject({ producerId: 2n, producerEpoch: 0 });
  });
});

describe("metadata deltas", () => {
  it("applying every delta to the first snapshot, in order, gives a fresh snapshot (a long scripted history)", () => {
    const sim = new Sim({ sessionTimeoutMs, autoLeaderRebalance: true, leaderImbalanceCheckMs: 200 });
    const start = snapshotOf(sim.state);
    const collected: { version: bigint; delta: NonNullable<CommandResult<unknown>["delta"]> }[] = [];
    const record = <R>(command: (s: ClusterState) => CommandResult<R>): R =>
      sim.run((s) => {
        const r = command(s);
        if (r.delta !== undefined) collected.push({ version: r.state.metadataVersion, delta: r.delta });
        return r;
      });
    for (const id of [1, 2, 3, 4]) record((s) => registerBroker(s, { brokerId: id, host: "h", port: id, rack: `r${id % 2}`, incarnationId: `d${id}` }, sim.nowMs, sim.config));
    record((s) => createTopics(s, [{ name: "a", partitions: 4, replicationFactor: 3, configs: {} }, { name: "b", partitions: 2, replicationFactor: 2, configs: {} }], false));
    record((s) => alterTopicConfigs(s, [{ name: "a", set: { "retention.ms": "60000" }, remove: [] }]));
    for (let step = 0; step < 12; step++) {
      sim.nowMs += 250;
      const live = step < 6 ? [1, 2, 3] : [1, 3, 4];
      for (const id of live) {
        const epoch = sim.state.brokers.get(id)!.epoch;
        const res = record((s) => heartbeat(s, { brokerId: id, brokerEpoch: epoch }, sim.nowMs));
        if (res.errorCode === ErrorCode.STALE_BROKER_EPOCH) {
          record((s) => registerBroker(s, { brokerId: id, host: "h", port: id, rack: `r${id % 2}`, incarnationId: `d${id}` }, sim.nowMs, sim.config));
        }
      }
      record((s) => tick(s, sim.nowMs, sim.config));
    }
    record((s) => controlledShutdown(s, { brokerId: 3, brokerEpoch: s.brokers.get(3)!.epoch }));
    record((s) => deleteTopics(s, ["b"]));
    record((s) => createTopics(s, [{ name: "b", partitions: 1, replicationFactor: 1, configs: {} }], false));

    let follower = start;
    let version = 0n;
    for (const { version: v, delta } of collected) {
      expect(v).toBe(version + 1n);
      version = v;
      follower = applyDelta(follower, delta);
    }
    expect(version).toBe(sim.state.metadataVersion);
    expect(follower).toEqual(snapshotOf(sim.state));
    expect(collected.length).toBeGreaterThan(10);
  });

  it("applyDelta does not modify its input snapshot", () => {
    const sim = threeBrokers();
    const before = snapshotOf(sim.state);
    const copy = structuredClone(before);
    const result = sim.run((s) => controlledShutdown(s, { brokerId: 1, brokerEpoch: sim.epochs.get(1)! }));
    expect(result.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    // Re-derive the delta from scratch against the old snapshot.
    const fresh = threeBrokers();
    const r = controlledShutdown(fresh.state, { brokerId: 1, brokerEpoch: fresh.epochs.get(1)! });
    applyDelta(before, r.delta!);
    expect(before).toEqual(copy);
  });

  it("applyDelta refuses a partition of an unknown topic (the watcher missed an event)", () => {
    const sim = new Sim();
    expect(() =>
      applyDelta(snapshotOf(sim.state), {
        brokers: [],
        topics: [],
        deletedTopicIds: [],
        partitions: [{ topic: "x", partition: 0, replicas: [1], isr: [1], leaderId: 1, leaderEpoch: 0, partitionEpoch: 0 }],
      }),
    ).toThrow(/x-0/);
  });
});
