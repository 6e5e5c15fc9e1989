// Issue 4's promises with real processes: with replication factor 3 and min.insync.replicas=2, an
// acks=all producer writing while the partition leader is SIGKILLed loses no acknowledged record,
// reads back in order without duplicates, and all replicas agree below the high watermark; with 2 of
// 3 brokers down, acks=all writes fail with NOT_ENOUGH_REPLICAS and nothing unacknowledged appears.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "@runnel/proto";
import { checkReplicas } from "../src/checker/index.js";
import { type Cluster, startClusterForTest } from "../src/harness/index.js";
import { TestProducer } from "../src/workload/producer.js";
import { readPartition } from "../src/workload/reader.js";

const sessionTimeoutMs = 2_000;

function brokerDataDirs(cluster: Cluster, ids: number[]): Map<number, string> {
  return new Map(ids.map((id) => [id, join(cluster.dir, `broker-${id}`)]));
}

describe("replication", () => {
  it("loses no acknowledged record when the leader is SIGKILLed during acks=all writes", { timeout: 180_000 }, async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs, heartbeatIntervalMs: 200, brokerArgs: ["--replica-lag-time-max-ms", "2000"] });
    const topic = "payments";
    await cluster.createTopic({ name: topic, partitions: 2, replicationFactor: 3, configs: { "min.insync.replicas": "2" }, fullIsr: true });
    const producer = new TestProducer(cluster, topic);
    await producer.init();

    const acked = new Map<number, string[]>([[0, []], [1, []]]);
    let stop = false;
    let failed = false;
    let batchNo = 0;
    const writers = [0, 1].map(async (partition) => {
      try {
        while (!stop) {
          const values = Array.from({ length: 5 }, (_, i) => `p${partition}-b${batchNo}-r${i}`);
          batchNo++;
          const res = await producer.send(partition, values, Date.now() + 30_000);
          expect(res.acked, `batch ${values[0]} not acknowledged: ${ErrorCode[res.errorCode]}`).toBe(true);
          acked.get(partition)!.push(...values);
        }
      } catch (err) {
        failed = true;
        throw err;
      }
    });

    // Progress is counted in acknowledged records, not in time, so a slow machine changes only how long it takes.
    const ackedAtLeast = async (n: number) => {
      while (!failed && [0, 1].some((p) => acked.get(p)!.length < n)) await new Promise((r) => setTimeout(r, 20));
    };
    await ackedAtLeast(50);
    const leader = (await cluster.waitForLeader(topic, 0)).leaderId;
    await cluster.kill(leader);
    await cluster.waitForLeader(topic, 0, (p) => p.leaderId !== leader);
    await ackedAtLeast(100);
    await cluster.restart(leader);
    await cluster.waitForLeader(topic, 0, (p) => p.isr.length === 3, { timeoutMs: 30_000 });
    await cluster.waitForLeader(topic, 1, (p) => p.isr.length === 3, { timeoutMs: 30_000 });
    await ackedAtLeast(150);
    stop = true;
    await Promise.all(writers);

    for (const partition of [0, 1]) {
      const records = await readPartition(cluster, topic, partition);
      const values = records.map((r) => r.value);
      const expected = acked.get(partition)!;
      expect(expected.length).toBeGreaterThanOrEqual(150);
      // Every acknowledged record, in the order it was acknowledged, and no duplicates.
      expect(new Set(values).size).toBe(values.length);
      expect(values.filter((v) => expected.includes(v))).toEqual(expected);
      for (let i = 1; i < records.length; i++) expect(records[i]!.offset).toBe(records[i - 1]!.offset + 1n);
      console.log(`partition ${partition}: ${expected.length} acknowledged, ${values.length} stored`);
    }

    // Stop everything and compare what each replica holds on disk.
    for (const id of [1, 2, 3]) await cluster.stop(id);
    const report = await checkReplicas(brokerDataDirs(cluster, [1, 2, 3]));
    console.log(`replica check: ${report.partitionsChecked} partitions, ${report.batchesCompared} batch comparisons, ${report.divergences.length} divergences`);
    expect(report.partitionsChecked).toBe(2);
    expect(report.batchesCompared).toBeGreaterThan(0);
    expect(report.divergences).toEqual([]);
  });

  it("refuses acks=all writes with NOT_ENOUGH_REPLICAS when 2 of 3 brokers are down, and stores nothing unacknowledged", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs, heartbeatIntervalMs: 200, brokerArgs: ["--replica-lag-time-max-ms", "2000"] });
    const topic = "ledger";
    await cluster.createTopic({ name: topic, partitions: 1, replicationFactor: 3, configs: { "min.insync.replicas": "2" }, fullIsr: true });
    const producer = new TestProducer(cluster, topic);
    await producer.init();
    const ok = await producer.send(0, ["before-1", "before-2"], Date.now() + 10_000);
    expect(ok.acked).toBe(true);

    const leader = (await cluster.waitForLeader(topic, 0)).leaderId;
    const others = [1, 2, 3].filter((id) => id !== leader);
    for (const id of others) await cluster.kill(id);
    await cluster.waitForLeader(topic, 0, (p) => p.isr.length === 1, { timeoutMs: sessionTimeoutMs + 10_000 });

    const refused = await producer.send(0, ["during-1"], Date.now() + 3_000);
    expect(refused.acked).toBe(false);
    expect(refused.errorCode).toBe(ErrorCode.NOT_ENOUGH_REPLICAS);
    const records = await readPartition(cluster, topic, 0);
    expect(records.map((r) => r.value)).toEqual(["before-1", "before-2"]);
  });
});
