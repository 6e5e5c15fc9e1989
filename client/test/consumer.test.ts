import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeCluster } from "./fakes/fake-cluster.js";
import { OffsetOutOfRangeError, Runnel, type Consumer, type ConsumerRecord } from "../src/index.js";

let fake: FakeCluster;
let client: Runnel;
const enc = (s: string) => new TextEncoder().encode(s);

beforeEach(async () => {
  fake = await FakeCluster.start({ brokers: 2 });
  client = new Runnel({ bootstrap: fake.bootstrap, retry: { initialBackoffMs: 10, maxBackoffMs: 50 } });
});

afterEach(async () => {
  await client.close();
  await fake.stop();
});

/** Seeds `count` records in batches of `perBatch`, values "r<offset>", timestamps 1000 + offset. */
function seed(topic: string, partition: number, count: number, perBatch: number): void {
  for (let start = 0; start < count; start += perBatch) {
    const n = Math.min(perBatch, count - start);
    fake.append(topic, partition, Array.from({ length: n }, (_, i) => ({ key: enc(`k${start + i}`), value: enc(`r${start + i}`), timestamp: 1000 + start + i, headers: [{ key: "h", value: enc("x") }] })));
  }
}

async function take(consumer: Consumer, n: number): Promise<ConsumerRecord[]> {
  const out: ConsumerRecord[] = [];
  for await (const r of consumer) {
    out.push(r);
    if (out.length === n) break;
  }
  return out;
}

describe("consumer", () => {
  it("iterates a partition from the earliest offset with keys, values, headers, timestamps", async () => {
    fake.createTopic("t", 1);
    seed("t", 0, 10, 4);
    const consumer = client.consumer({ maxWaitMs: 50 });
    consumer.assign([{ topic: "t", partition: 0 }]);
    consumer.seek({ topic: "t", partition: 0 }, "earliest");
    const got = await take(consumer, 10);
    expect(got.map((r) => r.offset)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i)));
    expect(got[3]).toMatchObject({ topic: "t", partition: 0, timestamp: 1003, leaderEpoch: 0 });
    expect(got[3]!.key!.toString()).toBe("k3");
    expect(got[3]!.value!.toString()).toBe("r3");
    expect(got[3]!.headers.map((h) => [h.key, h.value.toString()])).toEqual([["h", "x"]]);
    expect(consumer.position({ topic: "t", partition: 0 })).toBe(10n);
  });

  it("seeking into the middle of a batch skips the records below the offset", async () => {
    fake.createTopic("t", 1);
    seed("t", 0, 10, 5);
    const consumer = client.consumer({ maxWaitMs: 50 });
    consumer.assign([{ topic: "t", partition: 0 }]);
    consumer.seek({ topic: "t", partition: 0 }, 7n);
    const got = await take(consumer, 3);
    expect(got.map((r) => r.value!.toString())).toEqual(["r7", "r8", "r9"]);
  });

  it("seeks by timestamp and to latest, then receives new records by long poll", async () => {
    fake.createTopic("t", 1);
    seed("t", 0, 10, 3);
    const consumer = client.consumer({ maxWaitMs: 200 });
    consumer.assign([{ topic: "t", partition: 0 }]);
    consumer.seek({ topic: "t", partition: 0 }, { timestamp: 1006 });
    expect((await take(consumer, 1))[0]!.offset).toBe(6n);
    consumer.seek({ topic: "t", partition: 0 }, "latest");
    const next = take(consumer, 2);
    // "latest" is the high watermark when the seek resolves; append only after that.
    await vi.waitFor(() => expect(consumer.position({ topic: "t", partition: 0 })).toBe(10n), { timeout: 5000, interval: 5 });
    fake.append("t", 0, [{ value: enc("new1") }, { value: enc("new2") }]);
    expect((await next).map((r) => [r.offset, r.value!.toString()])).toEqual([[10n, "new1"], [11n, "new2"]]);
  });

  it("reads several partitions on different leaders", async () => {
    fake.createTopic("t", 3);
    for (const p of [0, 1, 2]) seed("t", p, 4, 2);
    const consumer = client.consumer({ maxWaitMs: 50 });
    const tps = [0, 1, 2].map((partition) => ({ topic: "t", partition }));
    consumer.assign(tps);
    for (const tp of tps) consumer.seek(tp, "earliest");
    const got = await take(consumer, 12);
    for (const p of [0, 1, 2]) expect(got.filter((r) => r.partition === p).map((r) => r.offset)).toEqual([0n, 1n, 2n, 3n]);
  });

  it("follows a leader change (NOT_LEADER -> metadata refresh)", async () => {
    fake.createTopic("t", 1);
    seed("t", 0, 3, 3);
    const consumer = client.consumer({ maxWaitMs: 50 });
    consumer.assign([{ topic: "t", partition: 0 }]);
    consumer.seek({ topic: "t", partition: 0 }, "earliest");
    expect((await take(consumer, 3)).map((r) => r.offset)).toEqual([0n, 1n, 2n]);
    fake.setLeader("t", 0, 2);
    fake.append("t", 0, [{ value: enc("after") }]);
    const [r] = await take(consumer, 1);
    expect(r!.value!.toString()).toBe("after");
    expect(r!.leaderEpoch).toBe(1);
  });

  it("OFFSET_OUT_OF_RANGE raises OffsetOutOfRangeError with both bounds when resetPolicy is none", async () => {
    fake.createTopic("t", 1);
    seed("t", 0, 5, 5);
    const consumer = client.consumer({ maxWaitMs: 50, resetPolicy: "none" });
    consumer.assign([{ topic: "t", partition: 0 }]);
    consumer.seek({ topic: "t", partition: 0 }, 50n);
    const err = await consumer.next().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OffsetOutOfRangeError);
    expect(err).toMatchObject({ topic: "t", partition: 0, offset: 50n, logStartOffset: 0n, logEndOffset: 5n });
    consumer.seek({ topic: "t", partition: 0 }, 4n);
    expect((await consumer.next())!.offset).toBe(4n);
  });

  it("resetPolicy earliest moves an out-of-range position to the log start", async () => {
    fake.createTopic("t", 1);
    seed("t", 0, 6, 2);
    fake.truncateBefore("t", 0, 4n);
    const consumer = client.consumer({ maxWaitMs: 50, resetPolicy: "earliest" });
    consumer.assign([{ topic: "t", partition: 0 }]);
    consumer.seek({ topic: "t", partition: 0 }, 1n);
    expect((await take(consumer, 2)).map((r) => r.offset)).toEqual([4n, 5n]);
  });

  it("pause stops a partition, resume continues where the application stopped reading", async () => {
    fake.createTopic("t", 2);
    seed("t", 0, 3, 3);
    seed("t", 1, 3, 3);
    const consumer = client.consumer({ maxWaitMs: 50 });
    const p0 = { topic: "t", partition: 0 };
    const p1 = { topic: "t", partition: 1 };
    consumer.assign([p0, p1]);
    consumer.seek(p0, "earliest");
    consumer.seek(p1, "earliest");
    consumer.pause([p0]);
    const first = await take(consumer, 3);
    expect(first.every((r) => r.partition === 1)).toBe(true);
    expect(consumer.paused()).toEqual([p0]);
    consumer.resume([p0]);
    expect((await take(consumer, 3)).map((r) => `${r.partition}:${r.offset}`)).toEqual(["0:0", "0:1", "0:2"]);
  });

  it("stops fetching when maxPrefetchBytes of records wait, then goes on as they are taken", async () => {
    fake.createTopic("t", 1);
    seed("t", 0, 40, 1);
    const consumer = client.consumer({ maxWaitMs: 20, maxPrefetchBytes: 200, partitionMaxBytes: 100 });
    consumer.assign([{ topic: "t", partition: 0 }]);
    consumer.seek({ topic: "t", partition: 0 }, "earliest");
    const got = await take(consumer, 40);
    expect(got.map((r) => r.offset)).toEqual(Array.from({ length: 40 }, (_, i) => BigInt(i)));
  });

  it("close ends the iteration", async () => {
    fake.createTopic("t", 1);
    const consumer = client.consumer({ maxWaitMs: 100 });
    consumer.assign([{ topic: "t", partition: 0 }]);
    const pending = consumer.next();
    await consumer.close();
    expect(await pending).toBeUndefined();
  });
});
