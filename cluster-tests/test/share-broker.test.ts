// Issue 10's failover promises with real processes (controller + 3 brokers, raw gRPC): the share state
// a partition leader wrote survives SIGKILL of that leader (accepted records are never handed out
// again; acquired ones stay locked to their member, who may still acknowledge and renew them on the
// new leader, and go to another member once the lock expires), and a record that exhausts
// max.delivery.attempts lands in the dead-letter topic with the runnel.dlq.* headers.
import { describe, expect, it } from "vitest";
import {
  Acks,
  buildBatch,
  type ConsumedRecord,
  decodeBatch,
  deadLetterHeaders,
  ErrorCode,
  ShareAcknowledgeType,
  type ShareAcknowledgement,
  type ShareAcknowledgeResult,
  type ShareFetchPartitionResponse,
} from "@runnel/proto";
import { type Cluster, callUnary, pollUntil, sleep, startClusterForTest } from "../src/harness/index.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const topic = "tasks";
const group = "workers";

/** Answers that mean "ask the leader again" while leadership moves. */
const retriable = new Set([ErrorCode.NOT_LEADER, ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.LEADER_NOT_AVAILABLE, ErrorCode.NOT_READY, ErrorCode.REQUEST_TIMED_OUT]);
/** Attempts of one call while leadership settles (bounded by count, each waits for metadata first). */
const maxLeaderAttempts = 100;

async function leaderOf(cluster: Cluster, t: string): Promise<number> {
  return (await cluster.waitForLeader(t, 0, () => true, { timeoutMs: 30_000 })).leaderId;
}

/** Calls `call` on the current leader of `t`-0 until its partition answer is not a leadership error. */
async function onLeader<T>(cluster: Cluster, t: string, call: (brokerId: number) => Promise<T>, code: (res: T) => ErrorCode): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < maxLeaderAttempts; i++) {
    const leader = await leaderOf(cluster, t);
    try {
      last = await call(leader);
      if (!retriable.has(code(last))) return last;
    } catch {
      // The broker may be gone; metadata will say who leads next.
    }
    await sleep(200);
  }
  throw new Error(`${t}-0: no usable leader answer after ${maxLeaderAttempts} attempts (last ${last === undefined ? "none" : ErrorCode[code(last)]})`);
}

async function shareFetch(cluster: Cluster, memberId: string, o: { maxRecords?: number; maxWaitMs?: number; lockDurationMs?: number } = {}): Promise<ShareFetchPartitionResponse> {
  return onLeader(
    cluster,
    topic,
    async (id) => {
      const c = cluster.brokerClient(id);
      const res = await callUnary(
        c,
        c.shareFetch,
        { groupId: group, memberId, topics: [{ topic, partitions: [{ partition: 0, currentLeaderEpoch: undefined }] }], maxRecords: o.maxRecords ?? 100, maxWaitMs: o.maxWaitMs ?? 0, lockDurationMs: o.lockDurationMs ?? 0, acknowledgements: [], acquiredRecordsOnly: false },
        (o.maxWaitMs ?? 0) + 10_000,
      );
      return res.topics[0]!.partitions[0]!;
    },
    (p) => p.errorCode,
  );
}

function ack(type: ShareAcknowledgeType, first: bigint, last: bigint, extra: Partial<ShareAcknowledgement> = {}): ShareAcknowledgement {
  return { firstOffset: first, lastOffset: last, type, releaseDelayMs: 0n, reason: "", lockDurationMs: 0, ...extra };
}

async function shareAck(cluster: Cluster, memberId: string, acks: ShareAcknowledgement[]): Promise<ShareAcknowledgeResult[]> {
  const p = await onLeader(
    cluster,
    topic,
    async (id) => {
      const c = cluster.brokerClient(id);
      const res = await callUnary(c, c.shareAcknowledge, { groupId: group, memberId, topics: [{ topic, partitions: [{ partition: 0, currentLeaderEpoch: undefined, acknowledgements: acks }] }] }, 10_000);
      return res.topics[0]!.partitions[0]!;
    },
    (x) => x.errorCode,
  );
  expect(p.errorCode, p.errorMessage).toBe(ErrorCode.ERROR_CODE_NONE);
  return p.results;
}

function acquiredValues(p: ShareFetchPartitionResponse): string[] {
  const all = p.batches.flatMap((b) => decodeBatch(b));
  return all.filter((r) => p.acquired.some((a) => r.offset >= a.firstOffset && r.offset <= a.lastOffset)).map((r) => dec.decode(r.value));
}

async function readAll(cluster: Cluster, t: string): Promise<ConsumedRecord[]> {
  const p = await onLeader(
    cluster,
    t,
    async (id) => {
      const c = cluster.brokerClient(id);
      const res = await callUnary(c, c.fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 0, topics: [{ topic: t, partitions: [{ partition: 0, fetchOffset: 0n, partitionMaxBytes: 0 }] }] }, 10_000);
      return res.topics[0]!.partitions[0]!;
    },
    (x) => x.errorCode,
  );
  return p.batches.flatMap((b) => decodeBatch(b));
}

function header(r: ConsumedRecord, key: string): string | undefined {
  const h = r.headers.find((x) => x.key === key);
  return h === undefined ? undefined : dec.decode(h.value);
}

describe("share groups across a leader failover", () => {
  it("keeps accepted, acquired and dead-lettered records right when the partition leader is SIGKILLed", { timeout: 180_000 }, async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200 });
    await cluster.createTopic({ name: topic, partitions: 1, replicationFactor: 3, configs: { "max.delivery.attempts": "2", "min.insync.replicas": "2" }, fullIsr: true });
    const leader = await leaderOf(cluster, topic);
    const pc = cluster.brokerClient(leader);
    const produced = await callUnary(pc, pc.produce, { acks: Acks.ACKS_ALL, timeoutMs: 10_000, topics: [{ topic, partitions: [{ partition: 0, batch: buildBatch(Array.from({ length: 10 }, (_, i) => ({ key: enc.encode(`k${i}`), value: enc.encode(`job${i}`) }))) }] }] }, 15_000);
    expect(produced.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);

    // Member A takes 0..5 with a long lock and accepts 0..2; member B takes 6..9, accepts 6..8, releases 9.
    const a = await shareFetch(cluster, "A", { maxRecords: 6, lockDurationMs: 120_000 });
    expect(a.acquired).toEqual([{ firstOffset: 0n, lastOffset: 5n, deliveryCount: 1 }]);
    expect((await shareAck(cluster, "A", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 0n, 2n)])).map((r) => r.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE]);
    const b = await shareFetch(cluster, "B", { maxRecords: 10 });
    expect(b.acquired).toEqual([{ firstOffset: 6n, lastOffset: 9n, deliveryCount: 1 }]);
    const bAcks = await shareAck(cluster, "B", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 6n, 8n), ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, 9n, 9n, { reason: "failed once" })]);
    expect(bAcks.map((r) => r.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE, ErrorCode.ERROR_CODE_NONE]);

    await cluster.kill(leader);
    await cluster.waitForLeader(topic, 0, (p) => p.leaderId !== leader && p.leaderId >= 0, { timeoutMs: 30_000 });

    // The new leader hands out only record 9 (second delivery): 0..2 and 6..8 are settled, 3..5 are A's.
    const c = await shareFetch(cluster, "C", { maxRecords: 100, lockDurationMs: 60_000 });
    expect(c.acquired).toEqual([{ firstOffset: 9n, lastOffset: 9n, deliveryCount: 2 }]);
    expect(acquiredValues(c)).toEqual(["job9"]);
    // Its second release exhausts max.delivery.attempts: it goes to tasks.dlq.
    expect((await shareAck(cluster, "C", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, 9n, 9n, { reason: "failed twice" })])).map((r) => r.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE]);

    // A still holds 3..5 on the new leader: it accepts 3 and renews 4..5 with a short lock.
    const aAcks = await shareAck(cluster, "A", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 3n, 3n), ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RENEW, 4n, 5n, { lockDurationMs: 2_000 })]);
    expect(aAcks.map((r) => r.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE, ErrorCode.ERROR_CODE_NONE]);
    const renewedDeadline = Number(aAcks[1]!.lockDeadlineMs);

    // Once that lock expires, 4..5 go to another member.
    const d = await shareFetch(cluster, "D", { maxRecords: 100, maxWaitMs: 30_000, lockDurationMs: 60_000 });
    expect(Date.now()).toBeGreaterThanOrEqual(renewedDeadline);
    expect(d.acquired).toEqual([{ firstOffset: 4n, lastOffset: 5n, deliveryCount: 2 }]);
    expect(acquiredValues(d)).toEqual(["job4", "job5"]);
    const late = await shareAck(cluster, "A", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 4n, 4n)]);
    expect(late.map((r) => r.errorCode)).toEqual([ErrorCode.INVALID_RECORD_STATE]);
    expect((await shareAck(cluster, "D", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 4n, 5n)])).map((r) => r.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE]);
    expect((await shareFetch(cluster, "E")).acquired).toEqual([]);

    // The dead letter: original key and value plus where it came from, how often and why it failed.
    const dead = await pollUntil(
      async () => {
        const records = await readAll(cluster, `${topic}.dlq`);
        return records.length > 0 ? records : undefined;
      },
      { timeoutMs: 60_000, what: "no dead letter arrived in tasks.dlq", hint: () => `logs: ${cluster.dir}` },
    );
    expect(dead).toHaveLength(1);
    const letter = dead[0]!;
    expect(dec.decode(letter.key)).toBe("k9");
    expect(dec.decode(letter.value)).toBe("job9");
    expect(header(letter, deadLetterHeaders.topic)).toBe(topic);
    expect(header(letter, deadLetterHeaders.partition)).toBe("0");
    expect(header(letter, deadLetterHeaders.offset)).toBe("9");
    expect(header(letter, deadLetterHeaders.attempts)).toBe("2");
    expect(header(letter, deadLetterHeaders.reason)).toBe("failed twice");
    expect(Number(header(letter, deadLetterHeaders.time))).toBeGreaterThan(0);
  });
});
