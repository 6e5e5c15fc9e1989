// ShareConsumer's routing and acknowledgement paths against a scripted transport (the pool and
// metadata it is given), since no real broker runs in a unit test: one ShareFetch per leader in
// parallel, the in-flight bound, acknowledgements piggybacked or sent alone after the linger,
// INVALID_RECORD_STATE surfaced in flush() (not thrown by poll), NOT_LEADER retried, close() releasing.
import { afterEach, describe, expect, it } from "vitest";
import {
  ErrorCode, ShareAcknowledgeType, buildBatch,
  type RecordBatch, type ShareAcknowledgeRequest, type ShareAcknowledgeResponse, type ShareFetchRequest, type ShareFetchResponse,
  type ShareGroupHeartbeatRequest,
} from "@runnel/proto";
import type { ConsumerContext } from "../src/consumer/index.js";
import { ShareConsumer } from "../src/share/consumer.js";

const lockDeadlineMs = 1_900_000_000_000;

function batchAt(baseOffset: bigint, count: number): RecordBatch {
  const b = buildBatch(Array.from({ length: count }, (_, i) => ({ value: new TextEncoder().encode(`v${baseOffset + BigInt(i)}`) })), { nowMs: 1_000 });
  b.header!.baseOffset = baseOffset;
  return b;
}

/** Two partitions of "jobs": partition 0 led by b1, partition 1 by b2. Each broker hands out its partition's offsets in order. */
class ScriptedCluster {
  readonly fetches: Array<{ address: string; req: ShareFetchRequest }> = [];
  readonly acks: Array<{ address: string; req: ShareAcknowledgeRequest }> = [];
  readonly heartbeats: ShareGroupHeartbeatRequest[] = [];
  refreshes = 0;
  next = new Map<number, bigint>([[0, 0n], [1, 0n]]);
  available = new Map<number, number>([[0, 3], [1, 3]]);
  /** Offsets whose acknowledgement the broker refuses (lock expired). */
  expired = new Set<string>();
  leaders = new Map<number, string>([[0, "b1"], [1, "b2"]]);
  /** Partition whose next fetch answers NOT_LEADER once. */
  notLeaderOnce: number | undefined;

  ctx(): ConsumerContext {
    const topicInfo = () => ({
      name: "jobs", topicId: "t", configs: {},
      partitions: [0, 1].map((partition) => ({ partition, leaderId: partition + 1, leaderEpoch: 3, replicas: [], isr: [], offlineReplicas: [], errorCode: ErrorCode.ERROR_CODE_NONE })),
    });
    const metadata = {
      topic: (name: string) => (name === "jobs" ? topicInfo() : undefined),
      ensureTopic: async () => topicInfo(),
      leaderFor: (_t: string, p: number) => ({ address: this.leaders.get(p)!, leaderId: p + 1, leaderEpoch: 3 }),
      refresh: async () => { this.refreshes += 1; },
      controllerAddress: async () => "controller",
    };
    const pool = {
      broker: async (address: string, method: string, req: unknown) => {
        await Promise.resolve();
        if (method === "shareFetch") return this.onFetch(address, req as ShareFetchRequest);
        if (method === "shareAcknowledge") return this.onAck(address, req as ShareAcknowledgeRequest);
        throw new Error(`unexpected ${method}`);
      },
      controller: async (_address: string, method: string, req: unknown) => {
        if (method !== "shareGroupHeartbeat") throw new Error(`unexpected ${method}`);
        this.heartbeats.push(req as ShareGroupHeartbeatRequest);
        return { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", memberId: "member-1", memberEpoch: 1, heartbeatIntervalMs: 60_000 };
      },
    };
    return { pool, metadata, retry: { initialBackoffMs: 1, maxBackoffMs: 2 }, requestTimeoutMs: 1_000 } as unknown as ConsumerContext;
  }

  private ackResults(partition: number, acks: ShareAcknowledgeRequest["topics"][number]["partitions"][number]["acknowledgements"]) {
    return acks.map((a) => {
      let bad = false;
      for (let o = a.firstOffset; o <= a.lastOffset; o++) if (this.expired.has(`${partition}/${o}`)) bad = true;
      return { firstOffset: a.firstOffset, lastOffset: a.lastOffset, errorCode: bad ? ErrorCode.INVALID_RECORD_STATE : ErrorCode.ERROR_CODE_NONE, errorMessage: bad ? "lock expired" : "", lockDeadlineMs: 0n };
    });
  }

  private onFetch(address: string, req: ShareFetchRequest): ShareFetchResponse {
    this.fetches.push({ address, req });
    let budget = req.maxRecords;
    const topics = req.topics.map((t) => ({
      topic: t.topic,
      partitions: t.partitions.map((p) => {
        const acked = req.acknowledgements.find((a) => a.topic === t.topic)?.partitions.find((x) => x.partition === p.partition);
        const acknowledgeResults = this.ackResults(p.partition, acked?.acknowledgements ?? []);
        if (this.notLeaderOnce === p.partition) {
          this.notLeaderOnce = undefined;
          return { partition: p.partition, errorCode: ErrorCode.NOT_LEADER, errorMessage: "moved", currentLeader: undefined, batches: [], acquired: [], lockDeadlineMs: 0n, acknowledgeResults };
        }
        const n = Math.min(budget, this.available.get(p.partition)!);
        budget -= n;
        this.available.set(p.partition, this.available.get(p.partition)! - n);
        const first = this.next.get(p.partition)!;
        this.next.set(p.partition, first + BigInt(n));
        // The whole batch comes back, with one record before the acquired ones that is not the member's.
        const batches = n === 0 ? [] : [batchAt(first === 0n ? 0n : first - 1n, n + (first === 0n ? 0 : 1))];
        return {
          partition: p.partition, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", currentLeader: undefined, batches,
          acquired: n === 0 ? [] : [{ firstOffset: first, lastOffset: first + BigInt(n) - 1n, deliveryCount: 1 }], lockDeadlineMs: BigInt(lockDeadlineMs), acknowledgeResults,
        };
      }),
    }));
    return { topics };
  }

  private onAck(address: string, req: ShareAcknowledgeRequest): ShareAcknowledgeResponse {
    this.acks.push({ address, req });
    return {
      topics: req.topics.map((t) => ({
        topic: t.topic,
        partitions: t.partitions.map((p) => ({ partition: p.partition, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", currentLeader: undefined, results: this.ackResults(p.partition, p.acknowledgements) })),
      })),
    };
  }
}

let consumer: ShareConsumer | undefined;
afterEach(async () => {
  await consumer?.close();
  consumer = undefined;
});

describe("ShareConsumer", () => {
  it("joins, fetches from every leader in parallel within maxInFlightRecords, and returns only acquired records", async () => {
    const cluster = new ScriptedCluster();
    consumer = new ShareConsumer(cluster.ctx(), { groupId: "g", topics: ["jobs"], maxInFlightRecords: 4 });
    const records: Array<{ partition: number; offset: bigint }> = [];
    while (records.length < 4) records.push(...(await consumer.poll({ timeoutMs: 2_000 })));
    expect(cluster.heartbeats[0]).toMatchObject({ groupId: "g", memberId: "", memberEpoch: 0, subscribedTopicNames: ["jobs"] });
    const first = cluster.fetches.slice(0, 2);
    expect(first.map((f) => f.address).sort()).toEqual(["b1", "b2"]);
    expect(first.map((f) => f.req.maxRecords)).toEqual([2, 2]);
    expect(first.every((f) => f.req.memberId === "member-1" && f.req.groupId === "g")).toBe(true);
    expect(records.map((r) => `${r.partition}/${r.offset}`).sort()).toEqual(["0/0", "0/1", "1/0", "1/1"]);
    expect(consumer.inFlightRecords).toBe(4);
    // Full: a poll asks for nothing more and returns nothing.
    const sent = cluster.fetches.length;
    expect(await consumer.poll({ timeoutMs: 30 })).toEqual([]);
    expect(cluster.fetches.length).toBe(sent);
  });

  it("attaches delivery count and lock deadline, and skips the batch's records that were not acquired", async () => {
    const cluster = new ScriptedCluster();
    cluster.next.set(0, 5n);
    consumer = new ShareConsumer(cluster.ctx(), { groupId: "g", topics: ["jobs"], maxInFlightRecords: 2 });
    const got = [];
    while (got.length < 2) got.push(...(await consumer.poll({ timeoutMs: 2_000 })));
    const p0 = got.filter((r) => r.partition === 0);
    expect(p0.map((r) => [r.offset, r.value?.toString(), r.deliveryCount, r.lockDeadlineMs])).toEqual([[5n, "v5", 1, lockDeadlineMs]]);
  });

  it("piggybacks acknowledgements, coalesced into runs, on the next fetch to the leader", async () => {
    const cluster = new ScriptedCluster();
    consumer = new ShareConsumer(cluster.ctx(), { groupId: "g", topics: ["jobs"], maxInFlightRecords: 6 });
    const got = [];
    while (got.length < 6) got.push(...(await consumer.poll({ timeoutMs: 2_000 })));
    const p0 = got.filter((r) => r.partition === 0).sort((a, b) => Number(a.offset - b.offset));
    consumer.accept(p0[0]!);
    consumer.accept(p0[1]!);
    consumer.release(p0[2]!, { delayMs: 100, reason: "busy" });
    const fetchesBefore = cluster.fetches.length;
    await consumer.poll({ timeoutMs: 20 }); // within the linger: the acks ride this fetch
    const withAcks = cluster.fetches.slice(fetchesBefore).find((f) => f.address === "b1")!;
    expect(withAcks.req.acknowledgements).toEqual([{ topic: "jobs", partitions: [{ partition: 0, currentLeaderEpoch: 3, acknowledgements: [
      { firstOffset: 0n, lastOffset: 1n, type: ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, releaseDelayMs: 0n, reason: "", lockDurationMs: 0 },
      { firstOffset: 2n, lastOffset: 2n, type: ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, releaseDelayMs: 100n, reason: "busy", lockDurationMs: 0 },
    ] }] }]);
    const results = await consumer.flush();
    expect(results.map((r) => [r.firstOffset, r.lastOffset, r.type, r.error])).toEqual([[0n, 1n, "accept", undefined], [0n, 1n, "accept", undefined], [2n, 2n, "release", undefined]]);
    expect(cluster.acks).toEqual([]);
  });

  it("sends acknowledgements alone when no fetch comes, and reports INVALID_RECORD_STATE in flush() without poll throwing", async () => {
    const cluster = new ScriptedCluster();
    consumer = new ShareConsumer(cluster.ctx(), { groupId: "g", topics: ["jobs"], maxInFlightRecords: 2 });
    const got = [];
    while (got.length < 2) got.push(...(await consumer.poll({ timeoutMs: 2_000 })));
    const [a, b] = got;
    cluster.expired.add(`${b!.partition}/${b!.offset}`);
    const okResult = consumer.acknowledge(a!, "accept");
    consumer.reject(b!, "poison");
    expect((await okResult).error).toBeUndefined();
    const results = await consumer.flush();
    expect(cluster.acks.length).toBeGreaterThanOrEqual(1);
    const failed = results.filter((r) => r.error !== undefined);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.error!.codeName).toBe("INVALID_RECORD_STATE");
    expect(failed[0]).toMatchObject({ partition: b!.partition, firstOffset: b!.offset, type: "reject" });
    await expect(consumer.poll({ timeoutMs: 20 })).resolves.toEqual(expect.any(Array));
    expect(() => consumer!.accept(a!)).toThrow(/not held by this share consumer/);
  });

  it("refreshes metadata and retries after NOT_LEADER without failing poll", async () => {
    const cluster = new ScriptedCluster();
    cluster.notLeaderOnce = 0;
    consumer = new ShareConsumer(cluster.ctx(), { groupId: "g", topics: ["jobs"], maxInFlightRecords: 6 });
    const got = [];
    while (got.filter((r) => r.partition === 0).length < 3) got.push(...(await consumer.poll({ timeoutMs: 2_000 })));
    expect(cluster.refreshes).toBeGreaterThanOrEqual(1);
  });

  it("close() releases what is not acknowledged and leaves the group", async () => {
    const cluster = new ScriptedCluster();
    const c = new ShareConsumer(cluster.ctx(), { groupId: "g", topics: ["jobs"], maxInFlightRecords: 2 });
    const got = [];
    while (got.length < 2) got.push(...(await c.poll({ timeoutMs: 2_000 })));
    await c.close();
    const sentAcks = [...cluster.acks.map((x) => x.req.topics), ...cluster.fetches.map((x) => x.req.acknowledgements)].flat();
    const released = sentAcks.flatMap((t) => t.partitions.flatMap((p) => p.acknowledgements.map((a) => [p.partition, a.firstOffset, a.type, a.reason])));
    expect(released.sort()).toEqual([[0, 0n, ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, "share consumer closed"], [1, 0n, ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, "share consumer closed"]].sort());
    expect(cluster.heartbeats.at(-1)).toMatchObject({ memberId: "member-1", memberEpoch: -1 });
    await expect(c.poll()).rejects.toThrow(/closed/);
  });
});
