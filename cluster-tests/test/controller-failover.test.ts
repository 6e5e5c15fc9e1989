// Issue 3's promises with real processes: balanced leadership, leader election within the session
// timeout after SIGKILL, preferred leadership returning after a restart, controller state surviving
// SIGKILL and restart, and controlled shutdown moving leaderships before a SIGTERMed broker exits.
import { describe, expect, it } from "vitest";
import type { MetadataResponse } from "@runnel/proto";
import { callUnary, type Cluster, startClusterForTest } from "../src/harness/index.js";

const sessionTimeoutMs = 2_000;
const topic = "orders";

function leaders(md: MetadataResponse): Map<number, number> {
  return new Map(md.topics.find((t) => t.name === topic)!.partitions.map((p) => [p.partition, p.leaderId]));
}

function leaderCounts(md: MetadataResponse): Map<number, number> {
  const counts = new Map<number, number>();
  for (const leader of leaders(md).values()) counts.set(leader, (counts.get(leader) ?? 0) + 1);
  return counts;
}

/** Waits until every broker's metadata agrees and `predicate` holds on it. */
async function waitForMetadata(cluster: Cluster, predicate: (md: MetadataResponse) => boolean, timeoutMs: number): Promise<MetadataResponse> {
  const deadline = Date.now() + timeoutMs;
  let last: MetadataResponse | undefined;
  while (Date.now() < deadline) {
    try {
      last = await cluster.metadata([topic]);
      if (predicate(last)) return last;
    } catch {
      // a broker may be restarting
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`metadata did not reach the expected state within ${timeoutMs} ms; last leaders: ${last ? JSON.stringify([...leaders(last)]) : "none"}`);
}

describe("controller: placement, election, preferred leaders, durability, controlled shutdown", () => {
  it("spreads 6 partitions over 3 brokers, fails over within the session timeout and returns leadership to the preferred replica", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs, heartbeatIntervalMs: 200, brokerArgs: ["--replica-lag-time-max-ms", "2000"] });
    await cluster.createTopic({ name: topic, partitions: 6, replicationFactor: 3 });
    const initial = await waitForMetadata(cluster, (md) => md.topics[0]!.partitions.every((p) => p.isr.length === 3), 10_000);
    expect([...leaderCounts(initial).entries()].sort()).toEqual([[1, 2], [2, 2], [3, 2]]);
    const preferred = new Map(initial.topics[0]!.partitions.map((p) => [p.partition, p.replicas[0]!]));
    expect([...preferred.values()].sort()).toEqual([1, 1, 2, 2, 3, 3]);

    const victim = 2;
    const victimPartitions = [...leaders(initial)].filter(([, l]) => l === victim).map(([p]) => p);
    const killedAt = Date.now();
    await cluster.kill(victim);
    const moved = await waitForMetadata(cluster, (md) => victimPartitions.every((p) => { const l = leaders(md).get(p); return l !== undefined && l >= 0 && l !== victim; }), sessionTimeoutMs + 5_000);
    const failoverMs = Date.now() - killedAt;
    console.log(`leaderships of broker ${victim} moved after ${failoverMs} ms (session timeout ${sessionTimeoutMs} ms)`);
    expect(failoverMs).toBeLessThanOrEqual(sessionTimeoutMs + 1_000 + 500);
    for (const p of moved.topics[0]!.partitions) {
      expect(p.isr).not.toContain(victim);
      if (victimPartitions.includes(p.partition)) expect(p.leaderEpoch).toBeGreaterThan(initial.topics[0]!.partitions[p.partition]!.leaderEpoch);
    }

    await cluster.restart(victim);
    const back = await waitForMetadata(cluster, (md) => md.topics[0]!.partitions.every((p) => p.leaderId === preferred.get(p.partition) && p.isr.length === 3), 20_000);
    expect([...leaderCounts(back).entries()].sort()).toEqual([[1, 2], [2, 2], [3, 2]]);
  });

  it("keeps every topic, epoch and leader across a controller SIGKILL and restart", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs, heartbeatIntervalMs: 200 });
    await cluster.createTopic({ name: topic, partitions: 6, replicationFactor: 3, configs: { "retention.ms": "3600000" } });
    await cluster.createTopic({ name: "audit", partitions: 2, replicationFactor: 2 });
    const before = await waitForMetadata(cluster, (md) => md.topics[0]!.partitions.every((p) => p.isr.length === 3), 10_000);
    const describeBefore = await cluster.describe();
    await cluster.kill("controller");
    await cluster.restart("controller");
    await cluster.waitForBrokersAlive(3);
    const c = cluster.controllerClient();
    const afterDescribe = await callUnary(c, c.describeCluster, {}, 5_000);
    expect(afterDescribe.clusterId).toBe(describeBefore.clusterId);
    expect(afterDescribe.metadataVersion).toBeGreaterThanOrEqual(describeBefore.metadataVersion);
    expect(afterDescribe.topicCount).toBe(2);
    const after = await cluster.metadata([]);
    const shape = (md: MetadataResponse) =>
      md.topics.map((t) => ({ name: t.name, id: t.topicId, configs: t.configs, partitions: t.partitions.map((p) => [p.partition, p.leaderId, p.leaderEpoch, p.replicas.join(",")]) }));
    expect(shape(after).find((t) => t.name === topic)).toEqual(shape(before).find((t) => t.name === topic));
    expect(after.topics.find((t) => t.name === "audit")?.partitions).toHaveLength(2);
    // And the restarted controller still acts: a new topic gets leaders.
    await cluster.createTopic({ name: "after-restart", partitions: 3, replicationFactor: 3 });
  });

  it("moves a SIGTERMed broker's leaderships away before it exits (controlled shutdown)", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs: 10_000, heartbeatIntervalMs: 200 });
    await cluster.createTopic({ name: topic, partitions: 6, replicationFactor: 3 });
    const initial = await waitForMetadata(cluster, (md) => md.topics[0]!.partitions.every((p) => p.isr.length === 3), 10_000);
    const victim = 1;
    const led = [...leaders(initial)].filter(([, l]) => l === victim).map(([p]) => p);
    expect(led.length).toBe(2);
    const stoppedAt = Date.now();
    const exit = await cluster.stop(victim);
    expect(exit).toEqual({ exitCode: 0, signal: undefined });
    // With a 10 s session timeout, leaderships can only have moved this fast through controlled shutdown.
    const md = await cluster.metadata([topic]);
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    for (const p of led) expect(leaders(md).get(p)).not.toBe(victim);
    for (const p of md.topics[0]!.partitions) expect(p.isr).not.toContain(victim);
  });
});
