// Integration: share groups on one in-process broker (standalone metadata: share state in memory, dead
// letters appended to the local dead-letter topic), real LMDB and real gRPC. Fetch, accept, release,
// reject, renew, delays, lock expiry, max attempts, long polls, and every kind of bad input answered
// with a typed error while the broker keeps serving.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Acks,
  BrokerServiceClient,
  buildBatch,
  type ConsumedRecord,
  decodeBatch,
  deadLetterHeaders,
  ErrorCode,
  type MetadataEvent,
  notBeforeHeader,
  type ProducerRecord,
  ShareAcknowledgeType,
  type ShareAcknowledgement,
  type ShareAcknowledgeResponse,
  type ShareFetchPartitionResponse,
  type ShareFetchRequest,
  type ShareFetchResponse,
} from "@runnel/proto";
import { callUnary } from "@runnel/common";
import type { Broker } from "../src/node.js";
import { type StandaloneBroker, startStandaloneBroker } from "./fixtures/test-broker.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

function snapshot(port: number): MetadataEvent {
  const partition = (topic: string, p: number, leaderId = 1) => ({ topic, partition: p, replicas: leaderId === 1 ? [1] : [1, leaderId], isr: [leaderId], leaderId, leaderEpoch: 3, partitionEpoch: 1 });
  const topic = (name: string, configs: Record<string, string> = {}, partitions = 1, leaderId = 1) => ({
    name,
    topicId: `t-${name}`,
    configs,
    partitions: Array.from({ length: partitions }, (_, i) => partition(name, i, leaderId)),
  });
  return {
    metadataVersion: 1n,
    event: {
      $case: "snapshot",
      value: {
        clusterId: "test-cluster",
        brokers: [{ brokerId: 1, brokerEpoch: 1n, host: "127.0.0.1", port, rack: "", alive: true, shuttingDown: false }],
        topics: [
          topic("jobs", {}, 2),
          topic("jobs.dlq"),
          topic("delays"),
          topic("expiry", { "max.delivery.attempts": "5" }),
          topic("retry", { "max.delivery.attempts": "2", "dead.letter.topic": "retry-dead" }),
          topic("retry-dead"),
          topic("poll"),
          topic("slices"),
          topic("elsewhere", {}, 1, 2),
        ],
      },
    },
  };
}


let broker: Broker;
let client: BrokerServiceClient;

async function produce(topic: string, partition: number, records: ProducerRecord[]): Promise<bigint> {
  const res = await callUnary(client, client.produce, { acks: Acks.ACKS_ALL, timeoutMs: 5_000, topics: [{ topic, partitions: [{ partition, batch: buildBatch(records) }] }] }, 10_000);
  const p = res.topics[0]!.partitions[0]!;
  expect(p.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  return p.baseOffset;
}

function values(n: number, prefix: string): ProducerRecord[] {
  return Array.from({ length: n }, (_, i) => ({ key: enc.encode(`k${i}`), value: enc.encode(`${prefix}${i}`) }));
}

type FetchOpts = Partial<Omit<ShareFetchRequest, "topics">> & { topic: string; partitions?: number[]; epoch?: number };

function shareFetch(o: FetchOpts): Promise<ShareFetchResponse> {
  const req: ShareFetchRequest = {
    groupId: o.groupId ?? "workers",
    memberId: o.memberId ?? "m1",
    topics: [{ topic: o.topic, partitions: (o.partitions ?? [0]).map((partition) => ({ partition, currentLeaderEpoch: o.epoch })) }],
    maxRecords: o.maxRecords ?? 100,
    maxWaitMs: o.maxWaitMs ?? 0,
    lockDurationMs: o.lockDurationMs ?? 0,
    acknowledgements: o.acknowledgements ?? [],
    acquiredRecordsOnly: o.acquiredRecordsOnly ?? false,
  };
  return callUnary(client, client.shareFetch, req, 20_000);
}

function ack(type: ShareAcknowledgeType, first: bigint, last: bigint, extra: Partial<ShareAcknowledgement> = {}): ShareAcknowledgement {
  return { firstOffset: first, lastOffset: last, type, releaseDelayMs: 0n, reason: "", lockDurationMs: 0, ...extra };
}

function shareAck(topic: string, acks: ShareAcknowledgement[], o: { memberId?: string; groupId?: string; partition?: number; epoch?: number } = {}): Promise<ShareAcknowledgeResponse> {
  return callUnary(
    client,
    client.shareAcknowledge,
    { groupId: o.groupId ?? "workers", memberId: o.memberId ?? "m1", topics: [{ topic, partitions: [{ partition: o.partition ?? 0, currentLeaderEpoch: o.epoch, acknowledgements: acks }] }] },
    10_000,
  );
}

function part(res: ShareFetchResponse, topic: string, partition = 0): ShareFetchPartitionResponse {
  const p = res.topics.find((t) => t.topic === topic)?.partitions.find((x) => x.partition === partition);
  if (p === undefined) throw new Error(`no answer for ${topic}-${partition} in ${JSON.stringify(res, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`);
  return p;
}

/** The acquired records of one partition answer: only offsets listed in `acquired`. */
function acquiredRecords(p: ShareFetchPartitionResponse): ConsumedRecord[] {
  const all = p.batches.flatMap((b) => decodeBatch(b));
  return all.filter((r) => p.acquired.some((a) => r.offset >= a.firstOffset && r.offset <= a.lastOffset));
}

function acquiredValues(p: ShareFetchPartitionResponse): string[] {
  return acquiredRecords(p).map((r) => dec.decode(r.value));
}

function ackCodes(res: ShareAcknowledgeResponse): ErrorCode[] {
  return res.topics.flatMap((t) => t.partitions.flatMap((p) => p.results.map((r) => r.errorCode)));
}

async function readTopic(topic: string): Promise<ConsumedRecord[]> {
  const res = await callUnary(client, client.fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 0, topics: [{ topic, partitions: [{ partition: 0, fetchOffset: 0n, partitionMaxBytes: 0 }] }] }, 10_000);
  return res.topics[0]!.partitions[0]!.batches.flatMap((b) => decodeBatch(b));
}

/** Polls `read` (bounded by attempts, not by elapsed time) until `done` holds. */
async function eventually<T>(read: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  let last = await read();
  for (let i = 0; i < 200 && !done(last); i++) {
    await new Promise((r) => setTimeout(r, 50));
    last = await read();
  }
  return last;
}

function header(r: ConsumedRecord, key: string): string | undefined {
  const h = r.headers.find((x) => x.key === key);
  return h === undefined ? undefined : dec.decode(h.value);
}

let standalone: StandaloneBroker | undefined;

beforeAll(async () => {
  standalone = await startStandaloneBroker("runnel-share-", snapshot);
  ({ broker, client } = standalone);
});

afterAll(async () => {
  await standalone?.stop();
});

describe("acquire and acknowledge", () => {
  it("hands each record to one member under a lock, with whole batches and the acquired runs", async () => {
    await produce("jobs", 0, values(3, "a"));
    await produce("jobs", 0, values(2, "b"));
    const before = Date.now();
    const res = await shareFetch({ topic: "jobs", maxRecords: 4, lockDurationMs: 60_000 });
    const p = part(res, "jobs");
    expect(p.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(p.acquired).toEqual([{ firstOffset: 0n, lastOffset: 3n, deliveryCount: 1 }]);
    expect(acquiredValues(p)).toEqual(["a0", "a1", "a2", "b0"]);
    expect(p.batches.map((b) => b.header!.baseOffset)).toEqual([0n, 3n]);
    expect(Number(p.lockDeadlineMs)).toBeGreaterThanOrEqual(before + 60_000);

    // Another member gets only what is left; the first member's records stay locked.
    const other = part(await shareFetch({ topic: "jobs", memberId: "m2", maxRecords: 10 }), "jobs");
    expect(other.acquired).toEqual([{ firstOffset: 4n, lastOffset: 4n, deliveryCount: 1 }]);
    expect(acquiredValues(other)).toEqual(["b1"]);
    const none = part(await shareFetch({ topic: "jobs", memberId: "m3" }), "jobs");
    expect(none).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, acquired: [], batches: [] });
  });

  it("with acquired_records_only the batches hold exactly the acquired records (cut from the stored batch); without, whole batches", async () => {
    await produce("slices", 0, values(10, "c"));
    const m1 = part(await shareFetch({ topic: "slices", maxRecords: 3, acquiredRecordsOnly: true }), "slices");
    expect(m1.acquired).toEqual([{ firstOffset: 0n, lastOffset: 2n, deliveryCount: 1 }]);
    const m1Records = m1.batches.flatMap((b) => decodeBatch(b)); // each batch's CRC is checked
    expect(m1Records.map((r) => [r.offset, dec.decode(r.value), dec.decode(r.key)])).toEqual([[0n, "c0", "k0"], [1n, "c1", "k1"], [2n, "c2", "k2"]]);
    const m2 = part(await shareFetch({ topic: "slices", memberId: "m2", maxRecords: 4, acquiredRecordsOnly: true }), "slices");
    expect(m2.batches.flatMap((b) => decodeBatch(b)).map((r) => dec.decode(r.value))).toEqual(["c3", "c4", "c5", "c6"]);
    expect(m2.batches.every((b) => b.header!.baseOffset === 0n)).toBe(true);
    const m3 = part(await shareFetch({ topic: "slices", memberId: "m3", maxRecords: 10 }), "slices");
    expect(m3.acquired).toEqual([{ firstOffset: 7n, lastOffset: 9n, deliveryCount: 1 }]);
    expect(m3.batches.flatMap((b) => decodeBatch(b))).toHaveLength(10);
    expect(acquiredValues(m3)).toEqual(["c7", "c8", "c9"]);
  });

  it("accepted records are never handed out again; released ones come back with a higher delivery count", async () => {
    const res = await shareAck("jobs", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 0n, 1n), ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, 2n, 2n, { reason: "busy" })]);
    expect(ackCodes(res)).toEqual([ErrorCode.ERROR_CODE_NONE, ErrorCode.ERROR_CODE_NONE]);
    const again = part(await shareFetch({ topic: "jobs", memberId: "m3" }), "jobs");
    expect(again.acquired).toEqual([{ firstOffset: 2n, lastOffset: 2n, deliveryCount: 2 }]);
    expect(acquiredValues(again)).toEqual(["a2"]);
    // Acknowledging what another member holds, or what is settled, is INVALID_RECORD_STATE.
    const wrong = await shareAck("jobs", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 2n, 2n), ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 0n, 0n)]);
    expect(ackCodes(wrong)).toEqual([ErrorCode.INVALID_RECORD_STATE, ErrorCode.INVALID_RECORD_STATE]);
    expect(wrong.topics[0]!.partitions[0]!.results[0]!.errorMessage).toMatch(/not acquired by member m1/);
  });

  it("a run is applied whole or not at all", async () => {
    // m1 holds 3; m3 holds 2: a run 2..3 from m1 fails and leaves 3 acquired by m1.
    const res = await shareAck("jobs", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 2n, 3n)]);
    expect(ackCodes(res)).toEqual([ErrorCode.INVALID_RECORD_STATE]);
    const ok = await shareAck("jobs", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 3n, 3n)]);
    expect(ackCodes(ok)).toEqual([ErrorCode.ERROR_CODE_NONE]);
  });

  it("renew moves the lock deadline; piggybacked acknowledgements are answered in the fetch", async () => {
    const renew = await shareAck("jobs", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RENEW, 2n, 2n, { lockDurationMs: 120_000 })], { memberId: "m3" });
    const r = renew.topics[0]!.partitions[0]!.results[0]!;
    expect(r.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(Number(r.lockDeadlineMs)).toBeGreaterThanOrEqual(Date.now() + 110_000);

    await produce("jobs", 0, values(1, "c"));
    const res = await shareFetch({ topic: "jobs", memberId: "m3", acknowledgements: [{ topic: "jobs", partitions: [{ partition: 0, acknowledgements: [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 2n, 2n)] }] }] });
    const p = part(res, "jobs");
    expect(p.acknowledgeResults.map((x) => x.errorCode)).toEqual([ErrorCode.ERROR_CODE_NONE]);
    expect(acquiredValues(p)).toEqual(["c0"]);
  });

  it("reject dead-letters the record with its key, value, headers and the runnel.dlq.* headers", async () => {
    const base = await produce("jobs", 1, [{ key: enc.encode("poison"), value: enc.encode("bad job"), headers: [{ key: "trace", value: enc.encode("t-1") }] }]);
    const p = part(await shareFetch({ topic: "jobs", partitions: [1], memberId: "m4" }), "jobs", 1);
    expect(p.acquired).toEqual([{ firstOffset: base, lastOffset: base, deliveryCount: 1 }]);
    const res = await shareAck("jobs", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_REJECT, base, base, { reason: "cannot parse" })], { memberId: "m4", partition: 1 });
    expect(ackCodes(res)).toEqual([ErrorCode.ERROR_CODE_NONE]);
    const dead = await eventually(() => readTopic("jobs.dlq"), (rs) => rs.length > 0);
    expect(dead).toHaveLength(1);
    const d = dead[0]!;
    expect(dec.decode(d.key)).toBe("poison");
    expect(dec.decode(d.value)).toBe("bad job");
    expect(header(d, "trace")).toBe("t-1");
    expect(header(d, deadLetterHeaders.topic)).toBe("jobs");
    expect(header(d, deadLetterHeaders.partition)).toBe("1");
    expect(header(d, deadLetterHeaders.offset)).toBe(String(base));
    expect(header(d, deadLetterHeaders.attempts)).toBe("1");
    expect(header(d, deadLetterHeaders.reason)).toBe("cannot parse");
    expect(Number(header(d, deadLetterHeaders.time))).toBeGreaterThan(0);
    // Never handed out again.
    expect(part(await shareFetch({ topic: "jobs", partitions: [1], memberId: "m5" }), "jobs", 1).acquired).toEqual([]);
  });
});

describe("time", () => {
  it("a record with runnel.not-before is not handed out before that time", async () => {
    const notBefore = Date.now() + 1_500;
    await produce("delays", 0, [{ value: enc.encode("later"), headers: [{ key: notBeforeHeader, value: enc.encode(String(notBefore)) }] }, { value: enc.encode("now") }]);
    const first = part(await shareFetch({ topic: "delays" }), "delays");
    expect(acquiredValues(first)).toEqual(["now"]);
    const waited = part(await shareFetch({ topic: "delays", maxWaitMs: 20_000 }), "delays");
    expect(Date.now()).toBeGreaterThanOrEqual(notBefore);
    expect(acquiredValues(waited)).toEqual(["later"]);
  }, 30_000);

  it("a release with a delay keeps the record back until the delay has passed", async () => {
    const base = await produce("delays", 0, [{ value: enc.encode("retry me") }]);
    expect(acquiredValues(part(await shareFetch({ topic: "delays" }), "delays"))).toEqual(["retry me"]);
    const released = Date.now();
    expect(ackCodes(await shareAck("delays", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, base, base, { releaseDelayMs: 1_000n })]))).toEqual([ErrorCode.ERROR_CODE_NONE]);
    expect(part(await shareFetch({ topic: "delays", memberId: "m2" }), "delays").acquired).toEqual([]);
    const again = part(await shareFetch({ topic: "delays", memberId: "m2", maxWaitMs: 20_000 }), "delays");
    expect(Date.now()).toBeGreaterThanOrEqual(released + 1_000);
    expect(again.acquired).toEqual([{ firstOffset: base, lastOffset: base, deliveryCount: 2 }]);
  }, 30_000);

  it("an expired lock makes the record available to another member; the late acknowledgement fails", async () => {
    const base = await produce("expiry", 0, [{ value: enc.encode("slow") }]);
    const first = part(await shareFetch({ topic: "expiry", lockDurationMs: 1_000 }), "expiry");
    expect(first.acquired).toEqual([{ firstOffset: base, lastOffset: base, deliveryCount: 1 }]);
    const second = part(await shareFetch({ topic: "expiry", memberId: "m2", maxWaitMs: 20_000, lockDurationMs: 60_000 }), "expiry");
    expect(Date.now()).toBeGreaterThanOrEqual(Number(first.lockDeadlineMs));
    expect(second.acquired).toEqual([{ firstOffset: base, lastOffset: base, deliveryCount: 2 }]);
    const late = await shareAck("expiry", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, base, base)]);
    expect(ackCodes(late)).toEqual([ErrorCode.INVALID_RECORD_STATE]);
    expect(ackCodes(await shareAck("expiry", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, base, base)], { memberId: "m2" }))).toEqual([ErrorCode.ERROR_CODE_NONE]);
  }, 30_000);

  it("after max.delivery.attempts deliveries the next release dead-letters the record to dead.letter.topic", async () => {
    const base = await produce("retry", 0, [{ value: enc.encode("flaky") }]);
    for (let attempt = 1; attempt <= 2; attempt++) {
      const p = part(await shareFetch({ topic: "retry", maxWaitMs: 5_000 }), "retry");
      expect(p.acquired).toEqual([{ firstOffset: base, lastOffset: base, deliveryCount: attempt }]);
      expect(ackCodes(await shareAck("retry", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, base, base, { reason: `failed ${attempt}` })]))).toEqual([ErrorCode.ERROR_CODE_NONE]);
    }
    const dead = await eventually(() => readTopic("retry-dead"), (rs) => rs.length > 0);
    expect(dead.map((r) => [dec.decode(r.value), header(r, deadLetterHeaders.attempts), header(r, deadLetterHeaders.reason)])).toEqual([["flaky", "2", "failed 2"]]);
    expect(part(await shareFetch({ topic: "retry" }), "retry").acquired).toEqual([]);
  }, 30_000);

  it("a long poll wakes when a record is produced", async () => {
    const waiting = shareFetch({ topic: "poll", maxWaitMs: 20_000 });
    await new Promise((r) => setTimeout(r, 100));
    await produce("poll", 0, [{ value: enc.encode("wake up") }]);
    expect(acquiredValues(part(await waiting, "poll"))).toEqual(["wake up"]);
  }, 30_000);

  it("a long poll with nothing to acquire answers empty after max_wait_ms", async () => {
    const p = part(await shareFetch({ topic: "poll", memberId: "idle", maxWaitMs: 200 }), "poll");
    expect(p).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, acquired: [], batches: [] });
  });
});

describe("errors", () => {
  async function invalid(call: Promise<unknown>, why: string): Promise<void> {
    const err = await call.then(() => undefined, (e: unknown) => e);
    expect((err as grpc.ServiceError | undefined)?.code, why).toBe(grpc.status.INVALID_ARGUMENT);
  }

  it("malformed requests are INVALID_ARGUMENT", async () => {
    const A = ShareAcknowledgeType;
    await invalid(shareFetch({ topic: "jobs", groupId: "" }), "empty group");
    await invalid(shareFetch({ topic: "jobs", groupId: "g".repeat(256) }), "long group");
    await invalid(shareFetch({ topic: "jobs", memberId: "" }), "empty member");
    await invalid(shareFetch({ topic: "jobs", memberId: "m".repeat(256) }), "long member");
    await invalid(shareFetch({ topic: "jobs", maxRecords: 10_001 }), "max records");
    await invalid(shareFetch({ topic: "jobs", maxRecords: -1 }), "negative max records");
    await invalid(shareFetch({ topic: "jobs", maxWaitMs: 60_001 }), "max wait");
    await invalid(shareFetch({ topic: "jobs", lockDurationMs: 999 }), "short lock");
    await invalid(shareFetch({ topic: "jobs", lockDurationMs: 3_600_001 }), "long lock");
    await invalid(shareFetch({ topic: "jobs", partitions: [0, 0] }), "duplicate partitions");
    const acks = (list: ShareAcknowledgement[], partitions = [0]) => [{ topic: "jobs", partitions: partitions.map((partition) => ({ partition, acknowledgements: list })) }];
    await invalid(shareFetch({ topic: "jobs", acknowledgements: acks([ack(A.SHARE_ACKNOWLEDGE_ACCEPT, 0n, 5n), ack(A.SHARE_ACKNOWLEDGE_ACCEPT, 5n, 6n)]) }), "overlapping acks");
    await invalid(shareFetch({ topic: "jobs", acknowledgements: acks([ack(A.SHARE_ACKNOWLEDGE_ACCEPT, 3n, 2n)]) }), "first > last");
    await invalid(shareFetch({ topic: "jobs", acknowledgements: acks([ack(A.SHARE_ACKNOWLEDGE_ACCEPT, 0n, 0n)], [1, 1]) }), "duplicate ack partitions");
    await invalid(shareAck("jobs", [ack(A.SHARE_ACKNOWLEDGE_TYPE_UNSPECIFIED, 0n, 0n)]), "unspecified type");
    await invalid(shareAck("jobs", [ack(99 as ShareAcknowledgeType, 0n, 0n)]), "unknown type");
    await invalid(shareAck("jobs", [ack(A.SHARE_ACKNOWLEDGE_ACCEPT, -1n, 0n)]), "negative offset");
    await invalid(shareAck("jobs", [ack(A.SHARE_ACKNOWLEDGE_ACCEPT, 0n, 20_000n)]), "run too long");
    await invalid(shareAck("jobs", [ack(A.SHARE_ACKNOWLEDGE_RELEASE, 0n, 0n, { releaseDelayMs: 86_400_001n })]), "release delay");
    await invalid(shareAck("jobs", [ack(A.SHARE_ACKNOWLEDGE_REJECT, 0n, 0n, { reason: "é".repeat(513) })]), "reason bytes");
    await invalid(shareAck("jobs", [ack(A.SHARE_ACKNOWLEDGE_RENEW, 0n, 0n, { lockDurationMs: 10 })]), "renew lock");
    await invalid(shareAck("jobs", [], { groupId: "" }), "ack empty group");
    await invalid(shareAck("jobs", [], { memberId: "" }), "ack empty member");
  });

  it("per-partition problems are error codes: unknown topic or partition, not leader with a hint, stale epoch", async () => {
    const res = await callUnary(
      client,
      client.shareFetch,
      {
        groupId: "workers",
        memberId: "m1",
        maxRecords: 10,
        maxWaitMs: 5_000,
        lockDurationMs: 0,
        acknowledgements: [],
        acquiredRecordsOnly: false,
        topics: [
          { topic: "nope", partitions: [{ partition: 0, currentLeaderEpoch: undefined }] },
          { topic: "jobs", partitions: [{ partition: 7, currentLeaderEpoch: undefined }, { partition: 0, currentLeaderEpoch: 2 }, { partition: 1, currentLeaderEpoch: 9 }] },
          { topic: "elsewhere", partitions: [{ partition: 0, currentLeaderEpoch: undefined }] },
          { topic: "bad name!", partitions: [{ partition: 0, currentLeaderEpoch: undefined }] },
        ],
      },
      10_000,
    );
    expect(part(res, "nope").errorCode).toBe(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    expect(part(res, "jobs", 7).errorCode).toBe(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    expect(part(res, "jobs", 0)).toMatchObject({ errorCode: ErrorCode.FENCED_LEADER_EPOCH, currentLeader: { leaderId: 1, leaderEpoch: 3 } });
    expect(part(res, "jobs", 1).errorCode).toBe(ErrorCode.UNKNOWN_LEADER_EPOCH);
    expect(part(res, "elsewhere")).toMatchObject({ errorCode: ErrorCode.NOT_LEADER, currentLeader: { leaderId: 2, leaderEpoch: 3 } });
    expect(part(res, "bad name!").errorCode).toBe(ErrorCode.INVALID_TOPIC_NAME);

    const acked = await shareAck("elsewhere", [ack(ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, 0n, 0n)]);
    expect(acked.topics[0]!.partitions[0]).toMatchObject({ errorCode: ErrorCode.NOT_LEADER, currentLeader: { leaderId: 2 } });
    expect(ackCodes(acked)).toEqual([ErrorCode.NOT_LEADER]);
  });

  it("the broker keeps serving after all of that", async () => {
    await produce("poll", 0, [{ value: enc.encode("still here") }]);
    expect(acquiredValues(part(await shareFetch({ topic: "poll", memberId: "after" }), "poll"))).toEqual(["still here"]);
    const metrics = await broker.metrics.text();
    expect(metrics).toMatch(/runnel_share_records_acquired_total \d+/);
    expect(metrics).toMatch(/runnel_share_partitions_loaded [1-9]/);
  });
});
