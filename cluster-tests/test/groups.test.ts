// Issue 6's promises with real processes: consumers are `runnel consume --group` processes (the CLI
// on the client library), the cluster is a real controller and three brokers. Checks: 3 members over
// 6 partitions get 2 each; a SIGKILLed member's partitions move within session timeout + 1 s and every
// record is processed at least once with no gap; a fourth member takes partitions while the others keep
// consuming; two groups each get every record; a controller SIGKILL + restart keeps group state and
// offsets and consumption goes on; `runnel group describe` shows members, assignment and lag.
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { describe, expect, it } from "vitest";
import { Runnel, type GroupDescription } from "@runnel/client";
import { pollUntil, repoRoot, startClusterForTest, type TestContextLike } from "../src/harness/index.js";

const groupSessionTimeoutMs = 3_000;
const groupHeartbeatIntervalMs = 300;
const cliEntry = join(repoRoot, "client", "dist", "cli", "main.js");
const controllerArgs = ["--group-session-timeout-ms", String(groupSessionTimeoutMs), "--group-heartbeat-interval-ms", String(groupHeartbeatIntervalMs)];

interface Seen {
  partition: number;
  offset: number;
  value: string;
}

/** A `runnel consume --group` process whose JSON lines are collected. */
class ConsumerProcess {
  readonly seen: Seen[] = [];
  readonly proc: ResultPromise;
  private partial = "";

  constructor(bootstrap: string, topic: string, group: string, extra: string[] = []) {
    this.proc = execa("node", [cliEntry, "--bootstrap", bootstrap, "--json", "consume", topic, "--group", group, "--from-beginning", "--commit-interval-ms", "300", ...extra], {
      cwd: repoRoot,
      reject: false,
      buffer: false,
      env: { RUNNEL_LOG_LEVEL: "warn" },
    });
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stdout!.on("data", (chunk: string) => {
      const text = this.partial + chunk;
      const lines = text.split("\n");
      this.partial = lines.pop()!;
      for (const l of lines) {
        if (l.trim() === "") continue;
        const r = JSON.parse(l) as Seen;
        this.seen.push({ partition: r.partition, offset: Number(r.offset), value: r.value });
      }
    });
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}

function track(ctx: TestContextLike, consumers: ConsumerProcess[]): void {
  ctx.onTestFinished(async () => {
    for (const c of consumers) c.proc.kill("SIGKILL");
    await Promise.allSettled(consumers.map((c) => c.proc));
  });
}

async function produce(client: Runnel, topic: string, from: number, count: number): Promise<void> {
  // Not idempotent: producer ids come from the controller, which one test kills.
  const producer = client.producer({ acks: "all", idempotent: false });
  await Promise.all(Array.from({ length: count }, (_, i) => producer.send({ topic, key: `k${from + i}`, value: `v${from + i}` })));
  await producer.close();
}

/** Every offset below each partition's high watermark was seen by some consumer (at least once, no gap). */
async function everyRecordSeen(client: Runnel, topic: string, consumers: ConsumerProcess[], timeoutMs: number): Promise<void> {
  const hws = await client.admin().listOffsets(topic, "latest");
  const missing = (): string[] => {
    const seen = new Set(consumers.flatMap((c) => c.seen.map((s) => `${s.partition}/${s.offset}`)));
    const out: string[] = [];
    for (const hw of hws) for (let o = 0; o < Number(hw.offset); o++) if (!seen.has(`${hw.partition}/${o}`)) out.push(`${hw.partition}/${o}`);
    return out;
  };
  await until(`every record of ${topic} was consumed`, () => missing().length === 0, timeoutMs).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; missing ${missing().length}: ${missing().slice(0, 10).join(" ")}`);
  });
}

async function waitForGroup(client: Runnel, group: string, what: string, predicate: (d: GroupDescription) => boolean, timeoutMs: number): Promise<GroupDescription> {
  let last: GroupDescription | undefined;
  await until(what, async () => {
    last = await client.groupAdmin().describeGroup(group).catch(() => undefined);
    return last !== undefined && predicate(last);
  }, timeoutMs).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last: ${JSON.stringify(last, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`);
  });
  return last!;
}

/** Polls until `predicate` holds (a throwing attempt counts as "not yet"). */
function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs: number): Promise<true> {
  return pollUntil(async () => ((await predicate()) ? true : undefined), { timeoutMs, what });
}

const stableWith = (members: number, perMember: number[]) => (d: GroupDescription) =>
  d.state === "stable" && d.members.length === members && JSON.stringify(d.members.map((m) => m.assignment.length).sort()) === JSON.stringify(perMember);

describe("consumer groups with real processes", () => {
  it("balances 6 partitions over 3 members, moves a SIGKILLed member's partitions within the session timeout, processes every record, and takes in a fourth member", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs: 3_000, heartbeatIntervalMs: 200, controllerArgs });
    const topic = "orders";
    await cluster.createTopic({ name: topic, partitions: 6, replicationFactor: 3 });
    const client = new Runnel({ bootstrap: cluster.bootstrap, clientId: "groups-test" });
    ctx.onTestFinished(() => client.close());
    await produce(client, topic, 0, 300);

    const consumers = [0, 1, 2].map(() => new ConsumerProcess(cluster.bootstrap.join(","), topic, "G"));
    track(ctx, consumers);
    const stable = await waitForGroup(client, "G", "3 members with 2 partitions each", stableWith(3, [2, 2, 2]), 20_000);
    const owned = stable.members.flatMap((m) => m.assignment.map((tp) => `${tp.topic}-${tp.partition}`));
    expect(new Set(owned).size).toBe(6);

    // Records produced now land on every member's partitions (the first member may have consumed
    // the backlog alone before the others joined).
    const seenBefore = consumers.map((c) => c.seen.length);
    await produce(client, topic, 300, 300);
    await until("every member consumed records", () => consumers.every((c, i) => c.seen.length > seenBefore[i]!), 15_000);
    const victim = consumers[0]!;
    const victimPartitions = [...new Set(victim.seen.map((s) => s.partition))].sort();
    const killedAt = Date.now();
    victim.kill();
    const moved = await waitForGroup(client, "G", "the killed member's partitions to move", stableWith(2, [3, 3]), groupSessionTimeoutMs + 10_000);
    const moveMs = Date.now() - killedAt;
    console.log(`partitions ${victimPartitions.join(",")} of the killed member moved after ${moveMs} ms (group session timeout ${groupSessionTimeoutMs} ms)`);
    expect(moveMs).toBeLessThanOrEqual(groupSessionTimeoutMs + 1_000);
    expect(moved.members.flatMap((m) => m.assignment).length).toBe(6);

    await produce(client, topic, 600, 300);
    await everyRecordSeen(client, topic, consumers, 20_000);

    // A fourth member: the two survivors keep partitions they own and go on consuming.
    const before = new Map(moved.members.map((m) => [m.memberId, new Set(m.assignment.map((tp) => tp.partition))]));
    const fourth = new ConsumerProcess(cluster.bootstrap.join(","), topic, "G");
    consumers.push(fourth);
    const rebalanced = await waitForGroup(client, "G", "3 live members sharing 6 partitions 2/2/2", stableWith(3, [2, 2, 2]), 20_000);
    for (const m of rebalanced.members) {
      const old = before.get(m.memberId);
      if (old === undefined) continue;
      // Sticky: a survivor only gives partitions away, it is not shuffled.
      for (const tp of m.assignment) expect(old.has(tp.partition)).toBe(true);
    }
    await produce(client, topic, 900, 300);
    await everyRecordSeen(client, topic, consumers, 20_000);
    expect(fourth.seen.length).toBeGreaterThan(0);
  });

  it("two groups on one topic each get every record; a controller SIGKILL and restart keeps group state and offsets while consumption goes on", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs: 3_000, heartbeatIntervalMs: 200, controllerArgs });
    const topic = "events";
    await cluster.createTopic({ name: topic, partitions: 4, replicationFactor: 3 });
    const client = new Runnel({ bootstrap: cluster.bootstrap, clientId: "groups-test" });
    ctx.onTestFinished(() => client.close());
    await produce(client, topic, 0, 200);
    const bootstrap = cluster.bootstrap.join(",");
    const groupA = [new ConsumerProcess(bootstrap, topic, "A"), new ConsumerProcess(bootstrap, topic, "A")];
    const groupB = [new ConsumerProcess(bootstrap, topic, "B")];
    track(ctx, [...groupA, ...groupB]);
    await everyRecordSeen(client, topic, groupA, 20_000);
    await everyRecordSeen(client, topic, groupB, 20_000);
    const beforeA = await waitForGroup(client, "A", "group A stable with 2 members and its offsets committed", (d) => stableWith(2, [2, 2])(d) && d.partitions.every((p) => p.lag === 0n), 15_000);

    await cluster.kill("controller");
    // Brokers and partition leaders are untouched: consumers keep consuming their current partitions.
    await produce(client, topic, 200, 100);
    await everyRecordSeen(client, topic, groupA, 20_000);
    await everyRecordSeen(client, topic, groupB, 20_000);
    await cluster.restart("controller");

    const afterA = await waitForGroup(client, "A", "group A back with the same members and assignment", (d) => d.members.length === 2, 15_000);
    expect(afterA.members.map((m) => [m.memberId, m.memberEpoch, m.assignment])).toEqual(beforeA.members.map((m) => [m.memberId, m.memberEpoch, m.assignment]));
    expect(afterA.groupEpoch).toBe(beforeA.groupEpoch);
    for (const p of afterA.partitions) {
      const old = beforeA.partitions.find((q) => q.partition === p.partition)!;
      expect(p.committedOffset).toBeGreaterThanOrEqual(old.committedOffset);
    }
    await produce(client, topic, 300, 100);
    await everyRecordSeen(client, topic, groupA, 20_000);
    await everyRecordSeen(client, topic, groupB, 20_000);
    await waitForGroup(client, "B", "group B committed everything", (d) => d.partitions.length === 4 && d.partitions.every((p) => p.lag === 0n), 15_000);

    // The CLI describes the running group: members, assignment and lag.
    const described = await execa("node", [cliEntry, "--bootstrap", bootstrap, "group", "describe", "A"], { cwd: repoRoot, reject: false });
    expect(described.exitCode, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/^group A {2}state stable/);
    for (const m of afterA.members) expect(described.stdout).toContain(m.memberId);
    expect(described.stdout).toMatch(/TOPIC\s+PARTITION\s+COMMITTED\s+HIGH-WATERMARK\s+LAG/);

    // Offsets of an inactive group can be reset from the CLI; while it has members they cannot.
    const busy = await execa("node", [cliEntry, "--bootstrap", bootstrap, "group", "reset-offsets", "B", "--topic", topic, "--to-earliest"], { cwd: repoRoot, reject: false });
    expect(busy.exitCode).toBe(1);
    groupB[0]!.proc.kill("SIGTERM");
    await groupB[0]!.proc;
    await waitForGroup(client, "B", "group B empty after its member left", (d) => d.members.length === 0, 10_000);
    const reset = await execa("node", [cliEntry, "--bootstrap", bootstrap, "--json", "group", "reset-offsets", "B", "--topic", topic, "--to-earliest"], { cwd: repoRoot, reject: false });
    expect(reset.exitCode, reset.stderr).toBe(0);
    const lagged = await client.groupAdmin().describeGroup("B");
    expect(lagged.partitions.every((p) => p.committedOffset === 0n)).toBe(true);
    expect(lagged.partitions.reduce((sum, p) => sum + (p.lag ?? 0n), 0n)).toBe(400n);
  });
});
