// The client library's error contract against real processes: each failure a caller can meet arrives
// as the typed RunnelError the docs name (with its retriable flag and where it happened), and the
// client finds its way around dead brokers in the bootstrap list and in metadata.
import { describe, expect, it } from "vitest";
import {
  InvalidReplicationFactorError, NotEnoughReplicasError, OffsetOutOfRangeError, RecordTooLargeError, Runnel, TopicAlreadyExistsError, UnknownTopicError,
} from "@runnel/client";
import { findFreePorts, startClusterForTest } from "../src/harness/index.js";

const sessionTimeoutMs = 2_000;
const clusterOptions = { brokers: 3, sessionTimeoutMs, heartbeatIntervalMs: 200, brokerArgs: ["--replica-lag-time-max-ms", "2000"] } as const;

describe("client library errors against a real cluster", () => {
  it("types admin, produce and fetch errors, and seeks by offset and timestamp", async (ctx) => {
    const cluster = await startClusterForTest(ctx, clusterOptions);
    // A dead address first in the bootstrap list: any live broker will do.
    const [deadPort] = await findFreePorts(1, "127.0.0.1");
    const runnel = new Runnel({ bootstrap: [`127.0.0.1:${deadPort}`, ...cluster.bootstrap], clientId: "client-errors-test" });
    ctx.onTestFinished(() => runnel.close());
    await runnel.connect();
    expect(runnel.metadata.brokerList().map((b) => b.brokerId)).toEqual([1, 2, 3]);

    const admin = runnel.admin();
    await admin.createTopic({ name: "errors-a", partitions: 2, replicationFactor: 3 });
    const again = await admin.createTopic({ name: "errors-a", partitions: 2 }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(TopicAlreadyExistsError);
    expect((again as TopicAlreadyExistsError).topic).toBe("errors-a");
    const tooMany = await admin.createTopic({ name: "errors-b", replicationFactor: 4 }).catch((e: unknown) => e);
    expect(tooMany).toBeInstanceOf(InvalidReplicationFactorError);
    expect((tooMany as InvalidReplicationFactorError).retriable).toBe(false);

    const producer = runnel.producer();
    const missing = await producer.send({ topic: "errors-missing", value: "x" }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(UnknownTopicError);
    expect((missing as UnknownTopicError).topic).toBe("errors-missing");
    const noPartition = await producer.send({ topic: "errors-a", partition: 7, value: "x" }).catch((e: unknown) => e);
    expect(noPartition).toBeInstanceOf(UnknownTopicError);
    expect((noPartition as UnknownTopicError).partition).toBe(7);

    const before = Date.now();
    const first = await Promise.all(["a0", "a1", "a2"].map((value, i) => producer.send({ topic: "errors-a", partition: 0, value, timestamp: before - 10_000 + i })));
    const later = await producer.send({ topic: "errors-a", partition: 0, value: "a3", timestamp: before + 5_000 });
    expect(first.map((m) => m.offset)).toEqual([0n, 1n, 2n]);
    expect(later.offset).toBe(3n);
    expect((await admin.listOffsets("errors-a", "latest")).map((o) => o.offset)).toEqual([4n, 0n]);
    expect((await admin.listOffsets("errors-a", { timestamp: before }, [0]))[0]!.offset).toBe(3n);

    // A batch the broker refuses for good leaves a gap in the producer's sequence: the producer bumps its
    // epoch and goes on, so the records after it are written, once each, in order.
    await admin.createTopic({ name: "errors-size", partitions: 1, replicationFactor: 3, configs: { "max.message.bytes": "2048" } });
    await cluster.waitForLeader("errors-size", 0, (p) => p.isr.length === 3);
    const small1 = await producer.send({ topic: "errors-size", value: "small-1" });
    const big = producer.send({ topic: "errors-size", value: "x".repeat(4096) }).catch((e: unknown) => e);
    await producer.flush();
    const small2 = await producer.send({ topic: "errors-size", value: "small-2" });
    expect(await big).toBeInstanceOf(RecordTooLargeError);
    expect((await big as RecordTooLargeError).retriable).toBe(false);
    expect([small1.offset, small2.offset]).toEqual([0n, 1n]);

    // resetPolicy "none": a position past the log end is the caller's error, with the log's bounds.
    const strict = runnel.consumer({ resetPolicy: "none", maxWaitMs: 100 });
    const tp = { topic: "errors-a", partition: 0 };
    strict.assign([tp]);
    strict.seek(tp, 99n);
    const outOfRange = await strict.next().catch((e: unknown) => e);
    expect(outOfRange).toBeInstanceOf(OffsetOutOfRangeError);
    expect((outOfRange as OffsetOutOfRangeError).logEndOffset).toBe(4n);
    expect((outOfRange as OffsetOutOfRangeError).partition).toBe(0);
    // Seeking again recovers: by timestamp, then by offset.
    strict.seek(tp, { timestamp: before });
    expect((await strict.next())?.value?.toString()).toBe("a3");
    strict.seek(tp, 1n);
    expect((await strict.next())?.value?.toString()).toBe("a1");
    expect(strict.position(tp)).toBe(2n);
    await strict.close();

    // resetPolicy "earliest": the same bad position moves to the log start instead.
    const lenient = runnel.consumer({ resetPolicy: "earliest", maxWaitMs: 100 });
    lenient.assign([tp]);
    lenient.seek(tp, 99n);
    expect((await lenient.next())?.offset).toBe(0n);
    await lenient.close();
  });

  it("refuses acks=all writes with NotEnoughReplicasError once 2 of 3 brokers are down, and finds the survivor through metadata", async (ctx) => {
    const cluster = await startClusterForTest(ctx, clusterOptions);
    const runnel = new Runnel({ bootstrap: cluster.bootstrap, clientId: "client-errors-test", retry: { maxTotalMs: 4_000 } });
    ctx.onTestFinished(() => runnel.close());
    const admin = runnel.admin();
    await admin.createTopic({ name: "errors-isr", partitions: 1, replicationFactor: 3, configs: { "min.insync.replicas": "2" } });
    await cluster.waitForLeader("errors-isr", 0, (p) => p.isr.length === 3);
    const producer = runnel.producer({ acks: "all" });
    expect((await producer.send({ topic: "errors-isr", value: "before" })).offset).toBe(0n);

    const leader = (await cluster.waitForLeader("errors-isr", 0)).leaderId;
    for (const id of [1, 2, 3].filter((x) => x !== leader)) await cluster.kill(id);
    await cluster.waitForLeader("errors-isr", 0, (p) => p.isr.length === 1, { timeoutMs: sessionTimeoutMs + 10_000 });

    const refused = await producer.send({ topic: "errors-isr", value: "during" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NotEnoughReplicasError);
    expect((refused as NotEnoughReplicasError).retriable).toBe(true);
    expect((refused as NotEnoughReplicasError).partition).toBe(0);

    // acks "leader" does not need the ISR: the survivor takes it.
    const leaderOnly = runnel.producer({ acks: "leader" });
    expect((await leaderOnly.send({ topic: "errors-isr", value: "leader-only" })).offset).toBe(1n);
    const consumer = runnel.consumer({ resetPolicy: "earliest", maxWaitMs: 100 });
    consumer.assign([{ topic: "errors-isr", partition: 0 }]);
    const first = await consumer.next();
    expect(first?.value?.toString()).toBe("before");
    await consumer.close();
  });
});
