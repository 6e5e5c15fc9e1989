import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorCode } from "@runnel/proto";
import { FakeCluster } from "./fakes/fake-cluster.js";
import { Runnel, UnknownTopicError, partitionForKey, RecordTooLargeError } from "../src/index.js";

let fake: FakeCluster;
let client: Runnel;

beforeEach(async () => {
  fake = await FakeCluster.start({ brokers: 2 });
});

afterEach(async () => {
  await client?.close();
  await fake.stop();
});

const values = (topic: string, partition: number) => fake.records(topic, partition).map((r) => new TextDecoder().decode(r.value));

describe("producer batching", () => {
  it("coalesces records sent within lingerMs into one batch per partition", async () => {
    fake.createTopic("events", 1);
    client = new Runnel({ bootstrap: fake.bootstrap });
    const producer = client.producer({ lingerMs: 50 });
    const acks = await Promise.all(Array.from({ length: 10 }, (_, i) => producer.send({ topic: "events", value: `v${i}` })));
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i)));
    expect(fake.produceCalls).toHaveLength(1);
    expect(fake.produceCalls[0]!.recordCount).toBe(10);
    expect(values("events", 0)).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
  });

  it("seals a batch at batchMaxBytes and keeps records in order across batches", async () => {
    fake.createTopic("events", 1);
    client = new Runnel({ bootstrap: fake.bootstrap });
    const producer = client.producer({ lingerMs: 100, batchMaxBytes: 400 });
    const value = "x".repeat(100); // ~124 bytes per record with overhead: 2 records per 400-byte batch
    const acks = await Promise.all(Array.from({ length: 9 }, (_, i) => producer.send({ topic: "events", value: `${i}${value}` })));
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 9 }, (_, i) => BigInt(i)));
    const counts = fake.produceCalls.map((c) => c.recordCount);
    expect(counts.slice(0, 4)).toEqual([2, 2, 2, 2]);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(9);
    expect(values("events", 0).map((v) => v[0])).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8"]);
  });

  it("routes keys with murmur2 and an explicit partition as given", async () => {
    fake.createTopic("keyed", 5);
    client = new Runnel({ bootstrap: fake.bootstrap });
    const producer = client.producer();
    for (const key of ["foobar", "abc", "21", "user-42"]) {
      const ack = await producer.send({ topic: "keyed", key, value: "v" });
      expect(ack.partition).toBe(partitionForKey(new TextEncoder().encode(key), 5));
    }
    expect((await producer.send({ topic: "keyed", key: "foobar", value: "v", partition: 4 })).partition).toBe(4);
    await expect(producer.send({ topic: "keyed", value: "v", partition: 9 })).rejects.toBeInstanceOf(UnknownTopicError);
  });

  it("fails fast on an unknown topic", async () => {
    client = new Runnel({ bootstrap: fake.bootstrap });
    const err = await client.producer().send({ topic: "nope", value: "v" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownTopicError);
    expect((err as UnknownTopicError).topic).toBe("nope");
  });

  it("acks none resolves without offsets and without idempotence", async () => {
    fake.createTopic("events", 1);
    client = new Runnel({ bootstrap: fake.bootstrap });
    const producer = client.producer({ acks: "none" });
    expect(producer.idempotent).toBe(false);
    expect((await producer.send({ topic: "events", value: "v" })).offset).toBe(-1n);
    expect(fake.produceCalls[0]!.producerId).toBe(0n);
    expect(values("events", 0)).toEqual(["v"]);
  });
});

describe("bounded buffer", () => {
  it("send waits while bufferMaxBytes are unacknowledged, and everything still arrives in order", async () => {
    fake.createTopic("events", 1);
    fake.hooks.produce = () => ({ kind: "delay", ms: 30 });
    client = new Runnel({ bootstrap: fake.bootstrap });
    const producer = client.producer({ lingerMs: 0, batchMaxBytes: 600, bufferMaxBytes: 1200 });
    const value = "y".repeat(200);
    let peak = 0;
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < 30; i++) {
      sends.push(producer.send({ topic: "events", value: `${String(i).padStart(2, "0")}${value}` }));
      peak = Math.max(peak, producer.bufferedBytesNow);
    }
    const timer = setInterval(() => { peak = Math.max(peak, producer.bufferedBytesNow); }, 1);
    await Promise.all(sends);
    clearInterval(timer);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(1200);
    expect(producer.bufferedBytesNow).toBe(0);
    expect(values("events", 0).map((v) => v.slice(0, 2))).toEqual(Array.from({ length: 30 }, (_, i) => String(i).padStart(2, "0")));
  });

  it("rejects a record larger than the whole buffer", async () => {
    fake.createTopic("events", 1);
    client = new Runnel({ bootstrap: fake.bootstrap });
    const producer = client.producer({ batchMaxBytes: 1024, bufferMaxBytes: 2048 });
    await expect(producer.send({ topic: "events", value: "z".repeat(4096) })).rejects.toBeInstanceOf(RecordTooLargeError);
  });
});

describe("retries and idempotence", () => {
  it("a response dropped after the append is retried with the same sequence: DUPLICATE_SEQUENCE, no duplicate, original offset", async () => {
    fake.createTopic("events", 1);
    fake.append("events", 0, [{ value: new TextEncoder().encode("earlier") }]);
    let dropped = false;
    fake.hooks.produce = () => {
      if (dropped) return undefined;
      dropped = true;
      return { kind: "dropResponseAfterAppend" };
    };
    client = new Runnel({ bootstrap: fake.bootstrap, requestTimeoutMs: 300, retry: { initialBackoffMs: 10 } });
    const producer = client.producer({ lingerMs: 20 });
    const acks = await Promise.all(["a", "b", "c"].map((value) => producer.send({ topic: "events", value })));
    expect(acks.map((a) => a.offset)).toEqual([1n, 2n, 3n]);
    expect(values("events", 0)).toEqual(["earlier", "a", "b", "c"]);
    // On a loaded machine a retry may itself time out and go again; every attempt is the same batch.
    const calls = fake.produceCalls;
    expect(calls.length).toBeGreaterThanOrEqual(2);
    expect(new Set(calls.map((c) => `${c.producerId}/${c.baseSequence}/${c.recordCount}`)).size).toBe(1);
    expect(calls[0]!.producerId).toBeGreaterThan(0n);
  });

  it("a retriable error on batch N resends N and the batches after it in order (no reordering, no duplicates)", async () => {
    fake.createTopic("events", 1);
    let first = true;
    fake.hooks.produce = () => {
      if (!first) return undefined;
      first = false;
      return { kind: "error", code: ErrorCode.NOT_ENOUGH_REPLICAS };
    };
    client = new Runnel({ bootstrap: fake.bootstrap, retry: { initialBackoffMs: 10 } });
    // One record per batch, five batches in flight at once: batches 1..4 reach the leader while
    // batch 0 failed, so the leader answers them OUT_OF_ORDER_SEQUENCE.
    const producer = client.producer({ lingerMs: 0, batchMaxBytes: 1 + 24 + 64 });
    const sent = Array.from({ length: 12 }, (_, i) => `m${i}`);
    const acks = await Promise.all(sent.map((value) => producer.send({ topic: "events", value })));
    expect(values("events", 0)).toEqual(sent);
    expect(acks.map((a) => a.offset)).toEqual(sent.map((_, i) => BigInt(i)));
    const sequencesInFlightAtFailure = fake.produceCalls.slice(0, 5).map((c) => c.baseSequence);
    expect(sequencesInFlightAtFailure).toEqual([0, 1, 2, 3, 4]);
    expect(fake.produceCalls.length).toBeGreaterThan(12);
  });

  it("NOT_LEADER makes the producer refresh metadata and send to the new leader", async () => {
    fake.createTopic("events", 1); // leader: broker 1
    client = new Runnel({ bootstrap: fake.bootstrap, retry: { initialBackoffMs: 10 } });
    const producer = client.producer();
    expect((await producer.send({ topic: "events", value: "before" })).offset).toBe(0n);
    fake.setLeader("events", 0, 2);
    expect((await producer.send({ topic: "events", value: "after" })).offset).toBe(1n);
    // The old leader answers NOT_LEADER (once, or again when a refresh already under way returned the old
    // view); the batch then lands on the new leader, exactly once.
    const brokers = fake.produceCalls.map((c) => c.brokerId);
    expect(brokers.slice(0, 2)).toEqual([1, 1]);
    expect(brokers.at(-1)).toBe(2);
    expect(brokers.filter((b) => b === 2)).toHaveLength(1);
    expect(values("events", 0)).toEqual(["before", "after"]);
  });

  it("a non-retriable error fails only that batch; the producer bumps its epoch and goes on", async () => {
    fake.createTopic("events", 1);
    let calls = 0;
    fake.hooks.produce = () => (++calls === 2 ? { kind: "error", code: ErrorCode.CORRUPT_BATCH } : undefined);
    client = new Runnel({ bootstrap: fake.bootstrap, retry: { initialBackoffMs: 10 } });
    const producer = client.producer({ lingerMs: 0 });
    expect((await producer.send({ topic: "events", value: "one" })).offset).toBe(0n);
    await expect(producer.send({ topic: "events", value: "two" })).rejects.toMatchObject({ name: "CorruptBatchError", topic: "events", partition: 0 });
    expect((await producer.send({ topic: "events", value: "three" })).offset).toBe(1n);
    expect(values("events", 0)).toEqual(["one", "three"]);
    expect(fake.partition("events", 0).producers.get(fake.produceCalls[0]!.producerId)!.epoch).toBe(1);
  });

  it("gives up after the retry budget with the last error", async () => {
    fake.createTopic("events", 1);
    fake.hooks.produce = () => ({ kind: "error", code: ErrorCode.LEADER_NOT_AVAILABLE });
    client = new Runnel({ bootstrap: fake.bootstrap, retry: { initialBackoffMs: 5, maxBackoffMs: 10, maxAttempts: 3 } });
    const producer = client.producer({ lingerMs: 0 });
    await expect(producer.send({ topic: "events", value: "v" })).rejects.toMatchObject({ name: "LeaderNotAvailableError", retriable: true });
    expect(fake.produceCalls).toHaveLength(3);
  });

  it("flush waits for every record; close refuses later sends", async () => {
    fake.createTopic("events", 2);
    client = new Runnel({ bootstrap: fake.bootstrap });
    const producer = client.producer({ lingerMs: 10_000 });
    const pending = Array.from({ length: 5 }, (_, i) => producer.send({ topic: "events", key: `k${i}`, value: "v" }));
    await producer.flush();
    expect(fake.records("events", 0).length + fake.records("events", 1).length).toBe(5);
    await Promise.all(pending);
    await producer.close();
    await expect(producer.send({ topic: "events", value: "late" })).rejects.toMatchObject({ name: "ClientUsageError" });
  });
});
