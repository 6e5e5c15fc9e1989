// Issue 10's promises with real processes: a controller and three brokers, task queues on a topic with
// 1 partition (RF 3, min.insync.replicas 2), workers as Runnel clients in this process (one client per
// member) and, where one must die, as a separate process (src/workload/task-worker.ts) that is SIGKILLed.
// Checks: 4 workers share 2,000 jobs and each job is accepted exactly once, and `runnel share describe`
// shows the group settled; a SIGKILLed worker's jobs go to the others only after their lock deadline and
// are accepted once; a job that always fails is dead-lettered after max.delivery.attempts with the
// runnel.dlq.* headers, its handler having run exactly that often; a delayed job is never delivered
// before its time; a SIGKILL of the partition leader mid-run loses no job and re-runs no accepted one;
// `runnel dlq list` and `runnel dlq redrive` round-trip dead letters.
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Runnel, type AckResult, type Job, type ShareConsumer, type ShareRecord } from "@runnel/client";
import { deadLetterHeaders, notBeforeHeader, type SharePartitionState } from "@runnel/proto";
import { type Cluster, callUnary, pollUntil, repoRoot, sleep, startCluster, startClusterForTest, type TestContextLike } from "../src/harness/index.js";

const cliEntry = join(repoRoot, "client", "dist", "cli", "main.js");
const taskWorkerEntry = join(repoRoot, "cluster-tests", "dist", "workload", "task-worker.js");
/** Deadline of one CLI run: Node start-up plus a few requests on a loaded 2-core machine. */
const cliRunTimeoutMs = 30_000;
/** Lock of the in-process workers: long enough that no lock expires in a test that does not want it to. */
const workerLockMs = 15_000;
/** Deadline for a run of 2,000 jobs to be accepted (a loaded 2-core machine, three brokers, four workers). */
const bigRunTimeoutMs = 90_000;
const topicConfigs = { "min.insync.replicas": "2" };

let shared: Cluster;
let sharedFailed = false;

beforeAll(async () => {
  shared = await startCluster({ brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200 });
});

afterAll(async () => {
  await shared?.close({ failed: sharedFailed });
});

/** The shared cluster's logs are kept when any test that used it failed. */
function useShared(ctx: { onTestFailed(fn: () => void): void }): Cluster {
  ctx.onTestFailed(() => {
    sharedFailed = true;
  });
  return shared;
}

function client(ctx: TestContextLike, cluster: Cluster, clientId: string): Runnel {
  const runnel = new Runnel({ bootstrap: cluster.bootstrap, clientId });
  ctx.onTestFinished(() => runnel.close());
  return runnel;
}

async function createQueue(cluster: Cluster, name: string, configs: Record<string, string> = {}): Promise<void> {
  await cluster.createTopic({ name, partitions: 1, replicationFactor: 3, configs: { ...topicConfigs, ...configs }, fullIsr: true });
}

function jobIdOf(topic: string, partition: number, offset: bigint): string {
  return `${topic}/${partition}/${offset}`;
}

/** Enqueues `count` jobs { n } concurrently; returns their job ids in n order. */
async function enqueueJobs(runnel: Runnel, queue: string, count: number): Promise<string[]> {
  const placed = await Promise.all(Array.from({ length: count }, (_, n) => runnel.tasks.enqueue(queue, { n })));
  return placed.map((p) => jobIdOf(p.topic, p.partition, p.offset));
}

/** The share state the partition leader last wrote for group/topic-0 (DescribeShareGroups on the controller). */
async function shareState(cluster: Cluster, group: string, topic: string): Promise<SharePartitionState | undefined> {
  const c = cluster.controllerClient();
  const res = await callUnary(c, c.describeShareGroups, { groupIds: [group] }, 5_000);
  return res.groups[0]?.partitions.find((p) => p.topic === topic && p.partition === 0)?.state;
}

/** Waits until every record below `endOffset` is settled: start offset = end offset = endOffset, nothing in flight. */
async function waitSettled(cluster: Cluster, group: string, topic: string, endOffset: bigint, timeoutMs: number): Promise<SharePartitionState> {
  let last: SharePartitionState | undefined;
  return pollUntil(
    async () => {
      last = await shareState(cluster, group, topic);
      return last !== undefined && last.startOffset === endOffset && last.endOffset === endOffset && last.ranges.length === 0 ? last : undefined;
    },
    {
      timeoutMs,
      what: `share group ${group} on ${topic}-0 did not settle at offset ${endOffset}`,
      describeLast: () => `last state: ${json(last)}`,
      hint: () => `logs: ${cluster.dir}`,
    },
  );
}

function json(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

interface Delivery {
  id: string;
  worker: string;
  deliveryCount: number;
  lockDeadlineMs: number;
  /** Date.now() right after the poll that returned it. */
  receivedAtMs: number;
}

interface Accept {
  id: string;
  worker: string;
  deliveryCount: number;
  /** Date.now() right after the leader's answer confirmed it. */
  confirmedAtMs: number;
}

interface AckFailure {
  id: string;
  worker: string;
  deliveryCount: number;
  error: string;
}

/** What a set of workers saw: every delivery, every confirmed accept, every accept that failed. */
class Ledger {
  readonly deliveries: Delivery[] = [];
  readonly accepts: Accept[] = [];
  readonly ackFailures: AckFailure[] = [];
  readonly pollErrors: string[] = [];

  acceptedIds(): Set<string> {
    return new Set(this.accepts.map((a) => a.id));
  }

  /** Job ids accepted more than once (each must be accepted exactly once). */
  acceptedTwice(): string[] {
    const count = new Map<string, number>();
    for (const a of this.accepts) count.set(a.id, (count.get(a.id) ?? 0) + 1);
    return [...count].filter(([, n]) => n > 1).map(([id, n]) => `${id} x${n}`);
  }
}

/**
 * A share-group member in this process: polls, "runs" each record (handle), accepts it and waits for
 * the outcome, writing what happened in the ledger. One Runnel client per worker, so each is a member of its own.
 */
class ShareWorker {
  private readonly consumer: ShareConsumer;
  private stopping = false;
  private readonly loop: Promise<void>;

  constructor(
    readonly name: string,
    runnel: Runnel,
    private readonly ledger: Ledger,
    options: { groupId: string; topic: string; lockDurationMs: number; maxInFlightRecords?: number; handle?: (r: ShareRecord) => Promise<void> },
  ) {
    this.consumer = runnel.shareConsumer({
      groupId: options.groupId,
      topics: [options.topic],
      lockDurationMs: options.lockDurationMs,
      ...(options.maxInFlightRecords === undefined ? {} : { maxInFlightRecords: options.maxInFlightRecords }),
      clientId: name,
    });
    const handle = options.handle ?? (() => new Promise<void>((r) => setImmediate(r)));
    this.loop = this.run(handle);
  }

  private async run(handle: (r: ShareRecord) => Promise<void>): Promise<void> {
    while (!this.stopping) {
      let records: ShareRecord[];
      try {
        records = await this.consumer.poll({ maxRecords: 50, timeoutMs: 500 });
      } catch (err) {
        this.ledger.pollErrors.push(`${this.name}: poll: ${errorText(err)}`);
        await sleep(100);
        continue;
      }
      const receivedAtMs = Date.now();
      if (records.length === 0) continue;
      for (const r of records) {
        this.ledger.deliveries.push({ id: jobIdOf(r.topic, r.partition, r.offset), worker: this.name, deliveryCount: r.deliveryCount, lockDeadlineMs: r.lockDeadlineMs, receivedAtMs });
      }
      const outcomes: Array<Promise<void>> = [];
      for (const r of records) {
        await handle(r);
        outcomes.push(this.accept(r));
      }
      await Promise.all(outcomes);
    }
  }

  /** Accepts `r` and writes the outcome in the ledger once the leader answered (or the client gave up). */
  private async accept(r: ShareRecord): Promise<void> {
    const id = jobIdOf(r.topic, r.partition, r.offset);
    let result: AckResult;
    try {
      result = await this.consumer.acknowledge(r, "accept");
    } catch (err) {
      this.ledger.ackFailures.push({ id, worker: this.name, deliveryCount: r.deliveryCount, error: `acknowledge threw ${errorText(err)}` });
      return;
    }
    if (result.error === undefined) this.ledger.accepts.push({ id, worker: this.name, deliveryCount: r.deliveryCount, confirmedAtMs: Date.now() });
    else this.ledger.ackFailures.push({ id, worker: this.name, deliveryCount: r.deliveryCount, error: errorText(result.error) });
  }

  /** Stops polling after the current round and leaves the group. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
    await this.consumer.close();
  }
}

function startWorkers(
  ctx: TestContextLike, cluster: Cluster, ledger: Ledger, count: number, prefix: string,
  options: { groupId: string; topic: string; lockDurationMs: number; maxInFlightRecords?: number; handle?: (r: ShareRecord) => Promise<void> },
): ShareWorker[] {
  const workers = Array.from({ length: count }, (_, i) => new ShareWorker(`${prefix}-${i + 1}`, client(ctx, cluster, `${prefix}-${i + 1}`), ledger, options));
  ctx.onTestFinished(async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
  });
  return workers;
}

async function waitAccepted(ledger: Ledger, ids: readonly string[], timeoutMs: number, hint: () => string): Promise<void> {
  const missing = () => {
    const accepted = ledger.acceptedIds();
    return ids.filter((id) => !accepted.has(id));
  };
  await pollUntil(() => (missing().length === 0 ? true : undefined), {
    timeoutMs,
    what: `every one of ${ids.length} jobs was not accepted`,
    describeLast: () => `${missing().length} missing (${missing().slice(0, 5).join(" ")}); ${ledger.ackFailures.length} accept failures (${ledger.ackFailures.slice(0, 3).map((f) => `${f.id}: ${f.error}`).join("; ")}); poll errors: ${ledger.pollErrors.slice(0, 3).join("; ")}`,
    hint,
  });
}

interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

async function runnelCli(cluster: Cluster, args: string[]): Promise<CliResult> {
  const r = await execa("node", [cliEntry, "--bootstrap", cluster.bootstrap.join(","), ...args], {
    cwd: repoRoot,
    reject: false,
    timeout: cliRunTimeoutMs,
    stdin: "ignore",
    env: { RUNNEL_BOOTSTRAP: undefined },
    extendEnv: true,
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function cliOk(cluster: Cluster, args: string[]): Promise<string> {
  const r = await runnelCli(cluster, args);
  expect(r.exitCode, `runnel ${args.join(" ")} failed: ${r.stderr}`).toBe(0);
  return r.stdout;
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Every record of topic-0 from the earliest offset, read with a plain consumer (for dead-letter topics). */
async function readAll(runnel: Runnel, topic: string, count: number, timeoutMs: number): Promise<Array<{ offset: bigint; key: string | undefined; value: string; headers: Record<string, string> }>> {
  const consumer = runnel.consumer({ resetPolicy: "none", maxWaitMs: 200 });
  consumer.assign([{ topic, partition: 0 }]);
  consumer.seek({ topic, partition: 0 }, "earliest");
  const out: Array<{ offset: bigint; key: string | undefined; value: string; headers: Record<string, string> }> = [];
  const timer = setTimeout(() => void consumer.close(), timeoutMs);
  try {
    while (out.length < count) {
      const r = await consumer.next();
      if (r === undefined) break;
      out.push({
        offset: r.offset,
        key: r.key?.toString("utf8"),
        value: r.value?.toString("utf8") ?? "",
        headers: Object.fromEntries(r.headers.map((h) => [h.key, h.value.toString("utf8")])),
      });
    }
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
  if (out.length < count) throw new Error(`read ${out.length} of ${count} records of ${topic}-0 within ${timeoutMs} ms`);
  return out;
}

/** The task-worker process: its JSON lines as they come. */
class WorkerProcess {
  readonly events: Array<Record<string, unknown>> = [];
  readonly proc: ResultPromise;
  private partial = "";

  constructor(args: string[]) {
    this.proc = execa("node", [taskWorkerEntry, ...args], { cwd: repoRoot, reject: false, buffer: false, env: { RUNNEL_LOG_LEVEL: "warn" } });
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stdout!.on("data", (chunk: string) => {
      const lines = (this.partial + chunk).split("\n");
      this.partial = lines.pop()!;
      for (const l of lines) if (l.trim() !== "") this.events.push(JSON.parse(l) as Record<string, unknown>);
    });
    let stderr = "";
    this.proc.stderr!.setEncoding("utf8");
    this.proc.stderr!.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4_000);
    });
    this.stderrTail = () => stderr;
  }

  readonly stderrTail: () => string;

  of(event: string): Array<Record<string, unknown>> {
    return this.events.filter((e) => e["event"] === event);
  }
}

describe("task queues on share groups with real processes", () => {
  it("4 workers share 2,000 jobs on one partition: each accepted exactly once, and `runnel share describe` shows the group settled", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "jobs";
    const group = `${queue}.workers`;
    const jobCount = 2_000;
    await createQueue(cluster, queue);
    const producer = client(ctx, cluster, "enqueuer");
    const ledger = new Ledger();
    // Workers first, so all four are waiting when the jobs arrive: any number of members share one partition.
    const workers = startWorkers(ctx, cluster, ledger, 4, "worker", { groupId: group, topic: queue, lockDurationMs: workerLockMs, maxInFlightRecords: 50 });
    const ids = await enqueueJobs(producer, queue, jobCount);
    expect(new Set(ids).size).toBe(jobCount);
    await waitAccepted(ledger, ids, bigRunTimeoutMs, () => `logs: ${cluster.dir}`);
    await Promise.all(workers.map((w) => w.stop()));

    console.log(`4 workers: ${ledger.deliveries.length} deliveries, ${ledger.accepts.length} accepts, per worker ${workers.map((w) => `${w.name} ${ledger.accepts.filter((a) => a.worker === w.name).length}`).join(", ")}; ${ledger.ackFailures.length} accept failures, ${ledger.pollErrors.length} poll errors`);
    expect(ledger.acceptedTwice()).toEqual([]);
    expect(ledger.accepts.length).toBe(jobCount);
    expect([...ledger.acceptedIds()].sort()).toEqual([...ids].sort());
    expect(ledger.ackFailures).toEqual([]);
    for (const w of workers) expect(ledger.accepts.filter((a) => a.worker === w.name).length, `${w.name} accepted no job`).toBeGreaterThan(0);

    await waitSettled(cluster, group, queue, BigInt(jobCount), 15_000);
    const described = jsonLines(await cliOk(cluster, ["--json", "share", "describe", group]));
    expect(described).toHaveLength(1);
    const partitions = described[0]!["partitions"] as Array<Record<string, unknown>>;
    expect(partitions, `runnel share describe ${group} --json: ${json(described)}`).toHaveLength(1);
    expect(partitions[0]).toMatchObject({ topic: queue, partition: 0, startOffset: jobCount, endOffset: jobCount, acquired: 0, available: 0, deadLettering: 0 });
    const table = await cliOk(cluster, ["share", "describe", group]);
    expect(table).toMatch(new RegExp(`^share group ${group.replace(/\./g, "\\.")}  members 0  in flight 0$`, "m"));
    expect(table).toMatch(new RegExp(`^${queue}\\s+0\\s+${jobCount}\\s+${jobCount}\\s+0\\s`, "m"));
  }, 150_000);

  it("a worker SIGKILLed mid-job: its jobs go to the other workers only after their lock deadline, and each job is accepted once", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "worker-kill";
    const group = `${queue}.workers`;
    const jobCount = 60;
    const childLockMs = 3_000;
    await createQueue(cluster, queue);
    const ids = await enqueueJobs(client(ctx, cluster, "enqueuer"), queue, jobCount);

    // The worker process takes its jobs first: it accepts 3, then holds 5 as if stuck in long jobs,
    // renewing their locks so that they stay its own for as long as it lives.
    const child = new WorkerProcess(["--bootstrap", cluster.bootstrap.join(","), "--topic", queue, "--group", group, "--lock-ms", String(childLockMs), "--fast-jobs", "3", "--hold-jobs", "5", "--renew-every-ms", "500"]);
    ctx.onTestFinished(async () => {
      child.proc.kill("SIGKILL");
      await child.proc;
    });
    const childHint = () => `task-worker stderr: ${child.stderrTail()}; events: ${json(child.events.slice(-5))}; logs: ${cluster.dir}`;
    await pollUntil(() => (child.of("holding").length > 0 ? true : undefined), { timeoutMs: 30_000, what: "the worker process did not start holding jobs", hint: childHint });
    const held = child.of("holding")[0]!["ids"] as string[];
    const childAccepted = child.of("accepted").map((e) => e["id"] as string);
    expect(held).toHaveLength(5);
    expect(childAccepted).toHaveLength(3);

    // The others do the rest while the worker process holds its five.
    const ledger = new Ledger();
    const workers = startWorkers(ctx, cluster, ledger, 3, "survivor", { groupId: group, topic: queue, lockDurationMs: workerLockMs });
    const rest = ids.filter((id) => !held.includes(id) && !childAccepted.includes(id));
    await waitAccepted(ledger, rest, 30_000, childHint);
    // At least one renew after the others started, so they had their chance to take the held jobs early.
    const renewsBefore = child.of("renewed").length;
    await pollUntil(() => (child.of("renewed").length > renewsBefore ? true : undefined), { timeoutMs: 15_000, what: "the worker process did not renew its locks", hint: childHint });

    const killedAtMs = Date.now();
    child.proc.kill("SIGKILL");
    await child.proc;
    await waitAccepted(ledger, held, childLockMs + 30_000, childHint);
    await Promise.all(workers.map((w) => w.stop()));

    // The earliest each held lock can expire: its acquisition deadline, and every renew that succeeded
    // (a renew the leader applied at or after its start sets the deadline to at least start + lock).
    const lockFloorMs = new Map<string, number>();
    for (const e of child.of("acquired")) lockFloorMs.set(e["id"] as string, e["lockDeadlineMs"] as number);
    for (const e of child.of("renewed")) {
      for (const id of e["ids"] as string[]) {
        lockFloorMs.set(id, Math.max(lockFloorMs.get(id) ?? 0, (e["startedAtMs"] as number) + childLockMs, e["lockDeadlineMs"] as number));
      }
    }
    const redelivered = ledger.deliveries.filter((d) => held.includes(d.id));
    console.log(`killed the worker process at ${killedAtMs}; held jobs redelivered: ${redelivered.map((d) => `${d.id} to ${d.worker} at ${d.receivedAtMs} (lock floor ${lockFloorMs.get(d.id)}, count ${d.deliveryCount})`).join("; ")}`);
    expect(redelivered.map((d) => d.id).sort()).toEqual([...held].sort());
    for (const d of redelivered) {
      const floor = lockFloorMs.get(d.id)!;
      expect(d.deliveryCount, `${d.id} delivery count`).toBe(2);
      expect(d.receivedAtMs, `${d.id} received before its lock deadline`).toBeGreaterThanOrEqual(floor);
      // The leader acquired it at lockDeadlineMs - lock duration (its own clock: the same machine).
      expect(d.lockDeadlineMs - workerLockMs, `${d.id} acquired before its lock deadline`).toBeGreaterThanOrEqual(floor);
    }
    // Jobs the worker process accepted are never delivered again.
    expect(ledger.deliveries.filter((d) => childAccepted.includes(d.id))).toEqual([]);
    // Every job accepted exactly once, by the worker process or the others.
    const allAccepts = [...childAccepted, ...ledger.accepts.map((a) => a.id)];
    expect(allAccepts.length - new Set(allAccepts).size, "jobs accepted twice").toBe(0);
    expect([...new Set(allAccepts)].sort()).toEqual([...ids].sort());
    expect(child.of("ack-failed")).toEqual([]);
    await waitSettled(cluster, group, queue, BigInt(jobCount), 15_000);
  }, 120_000);

  it("a job that always fails is dead-lettered after max.delivery.attempts with the runnel.dlq.* headers, its handler having run exactly that often", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "always-fails";
    const group = `${queue}.workers`;
    const maxDeliveryAttempts = 3;
    await createQueue(cluster, queue, { "max.delivery.attempts": String(maxDeliveryAttempts) });
    const runnel = client(ctx, cluster, "always-fails");
    const placed = await runnel.tasks.enqueue(queue, { order: 17 }, { key: "order-17", headers: { "trace-id": "t-17" } });
    const id = jobIdOf(placed.topic, placed.partition, placed.offset);
    const runs: Array<{ id: string; attempt: number; maxAttempts: number }> = [];
    const reasonOf = (attempt: number) => `card declined (attempt ${attempt})`;
    const worker = runnel.tasks.worker(queue, async (job) => {
      runs.push({ id: job.id, attempt: job.attempt, maxAttempts: job.maxAttempts });
      throw new Error(reasonOf(job.attempt));
    }, { lockDurationMs: workerLockMs, backoff: { initialMs: 100, maxMs: 400 } });
    ctx.onTestFinished(() => worker.close());

    const dlqTopic = `${queue}.dlq`;
    const admin = runnel.admin();
    await pollUntil(async () => ((await admin.listOffsets(dlqTopic, "latest"))[0]!.offset >= 1n ? true : undefined), {
      timeoutMs: 45_000,
      what: `no dead letter in ${dlqTopic}`,
      describeLast: () => `handler runs: ${json(runs)}`,
      hint: () => `logs: ${cluster.dir}`,
    });
    await waitSettled(cluster, group, queue, placed.offset + 1n, 15_000);
    await worker.close();

    const dead = await readAll(runnel, dlqTopic, 1, 15_000);
    expect((await admin.listOffsets(dlqTopic, "latest"))[0]!.offset, "dead letters").toBe(1n);
    const letter = dead[0]!;
    console.log(`dead letter: ${json(letter)}; handler runs: ${json(runs)}`);
    expect(letter.headers[deadLetterHeaders.topic]).toBe(queue);
    expect(letter.headers[deadLetterHeaders.partition]).toBe("0");
    expect(letter.headers[deadLetterHeaders.offset]).toBe(String(placed.offset));
    expect(letter.headers[deadLetterHeaders.attempts]).toBe(String(maxDeliveryAttempts));
    // The last failure's reason, not the first.
    expect(letter.headers[deadLetterHeaders.reason]).toBe(reasonOf(maxDeliveryAttempts));
    expect(Number(letter.headers[deadLetterHeaders.time])).toBeGreaterThan(0);
    // The original record comes along: key, value and its own headers.
    expect(letter.key).toBe("order-17");
    expect(JSON.parse(letter.value)).toEqual({ order: 17 });
    expect(letter.headers["trace-id"]).toBe("t-17");
    // The handler ran exactly max.delivery.attempts times, once per attempt; the job is settled, so never again.
    expect(runs).toEqual([1, 2, 3].map((attempt) => ({ id, attempt, maxAttempts: maxDeliveryAttempts })));
    expect(worker.stats).toEqual({ accepted: 0, released: maxDeliveryAttempts - 1, deadLettered: 1 });
  }, 90_000);

  it("a worker's close() lets a running job finish (accepted) and releases one that outlives the timeout to another worker at once", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "graceful";
    await createQueue(cluster, queue);
    const runnel = client(ctx, cluster, "graceful-a");
    let finishQuick!: () => void;
    const quickMayFinish = new Promise<void>((r) => { finishQuick = r; });
    const started: string[] = [];
    // A long lock: if close() did not release the stuck job, nobody else could get it within this test.
    const longLockMs = 120_000;
    const worker = runnel.tasks.worker(queue, async (job) => {
      started.push((job.payload as { kind: string }).kind);
      if ((job.payload as { kind: string }).kind === "quick") await quickMayFinish;
      else await new Promise(() => undefined); // stuck forever
    }, { concurrency: 2, lockDurationMs: longLockMs });
    ctx.onTestFinished(() => worker.close({ timeoutMs: 1 }));
    await runnel.tasks.enqueue(queue, { kind: "quick" });
    await runnel.tasks.enqueue(queue, { kind: "stuck" });
    await pollUntil(() => (started.length === 2 ? true : undefined), { timeoutMs: 30_000, what: "both jobs did not start", hint: () => `logs: ${cluster.dir}` });

    const closing = worker.close({ timeoutMs: 2_000 });
    finishQuick();
    await closing;
    expect(worker.stats.accepted).toBe(1); // the quick job; the stuck one was released by close(), not by a handler error

    const other = client(ctx, cluster, "graceful-b").tasks;
    const rerun: Job[] = [];
    const second = other.worker(queue, async (job) => {
      rerun.push(job);
    }, { concurrency: 2, lockDurationMs: workerLockMs });
    ctx.onTestFinished(() => second.close());
    await pollUntil(() => (rerun.length >= 1 ? true : undefined), { timeoutMs: 30_000, what: "the released job was not redelivered", hint: () => `logs: ${cluster.dir}` });
    await second.close();
    // Only the released job comes back (the finished one was accepted), as its second delivery.
    expect(rerun.map((j) => [(j.payload as { kind: string }).kind, j.attempt])).toEqual([["stuck", 2]]);
  }, 90_000);

  it("a delayed job is never delivered before enqueue time + delay", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "delayed";
    await createQueue(cluster, queue);
    const runnel = client(ctx, cluster, "delayed");
    const runs: Array<{ job: Job; startedAtMs: number }> = [];
    const worker = runnel.tasks.worker(queue, async (job) => {
      runs.push({ job, startedAtMs: Date.now() });
    }, { concurrency: 2, lockDurationMs: workerLockMs });
    ctx.onTestFinished(() => worker.close());
    // A first job shows the worker is fetching before the delayed ones are enqueued.
    await runnel.tasks.enqueue(queue, { kind: "warm-up" });
    await pollUntil(() => (runs.length === 1 ? true : undefined), { timeoutMs: 30_000, what: "the warm-up job did not run", hint: () => `logs: ${cluster.dir}` });

    const delays = [1_000, 2_000, 3_000];
    const enqueued: Array<{ id: string; delayMs: number; enqueuedAtMs: number }> = [];
    for (const delayMs of delays) {
      const enqueuedAtMs = Date.now();
      const placed = await runnel.tasks.enqueue(queue, { kind: "delayed", delayMs }, { delayMs });
      enqueued.push({ id: jobIdOf(placed.topic, placed.partition, placed.offset), delayMs, enqueuedAtMs });
    }
    const immediate = await runnel.tasks.enqueue(queue, { kind: "immediate" });
    const all = [...enqueued.map((e) => e.id), jobIdOf(immediate.topic, immediate.partition, immediate.offset)];
    await pollUntil(() => (all.every((id) => runs.some((r) => r.job.id === id)) ? true : undefined), {
      timeoutMs: 30_000,
      what: "the delayed and immediate jobs did not all run",
      describeLast: () => `ran: ${runs.map((r) => r.job.id).join(" ")}`,
      hint: () => `logs: ${cluster.dir}`,
    });
    await worker.close();

    for (const e of enqueued) {
      const ran = runs.filter((r) => r.job.id === e.id);
      console.log(`job ${e.id} delayed ${e.delayMs} ms: enqueued at ${e.enqueuedAtMs}, ran at ${ran.map((r) => r.startedAtMs).join(", ")} (+${ran[0]!.startedAtMs - e.enqueuedAtMs} ms)`);
      expect(ran, `${e.id} ran more than once`).toHaveLength(1);
      const run = ran[0]!;
      expect(run.job.attempt).toBe(1);
      expect(run.startedAtMs, `${e.id} delivered before enqueue time + ${e.delayMs} ms`).toBeGreaterThanOrEqual(e.enqueuedAtMs + e.delayMs);
      const notBefore = Number(run.job.headers[notBeforeHeader]);
      expect(notBefore, `${e.id} ${notBeforeHeader} header`).toBeGreaterThanOrEqual(e.enqueuedAtMs + e.delayMs);
      expect(run.startedAtMs).toBeGreaterThanOrEqual(notBefore);
    }
  }, 90_000);

  it("a worker with the default concurrency (1) runs the jobs of every partition, whichever broker leads each", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "one-at-a-time";
    const partitions = 3;
    await cluster.createTopic({ name: queue, partitions, replicationFactor: 3, configs: topicConfigs, fullIsr: true });
    const runnel = client(ctx, cluster, "one-at-a-time");
    // The point is a member whose in-flight bound (1) is below its number of partition leaders.
    const leaders = new Set((await runnel.admin().describeTopic(queue)).partitions.map((p) => p.leaderId));
    expect(leaders.size, `leaders of ${queue}: ${[...leaders].join(", ")}`).toBeGreaterThan(1);
    const producer = runnel.producer({ acks: "all" });
    ctx.onTestFinished(() => producer.close());
    const placed = await Promise.all(Array.from({ length: 2 * partitions }, (_, n) =>
      producer.send({ topic: queue, partition: n % partitions, value: JSON.stringify({ n }) })));
    const ran: string[] = [];
    const worker = runnel.tasks.worker(queue, async (job) => {
      ran.push(job.id);
    }, { lockDurationMs: workerLockMs });
    ctx.onTestFinished(() => worker.close());
    const ids = placed.map((p) => jobIdOf(p.topic, p.partition, p.offset));
    await pollUntil(() => (ids.every((id) => ran.includes(id)) ? true : undefined), {
      timeoutMs: 30_000,
      what: `a worker with concurrency 1 did not run the jobs of all ${partitions} partitions`,
      describeLast: () => `ran: ${ran.join(" ")}`,
      hint: () => `logs: ${cluster.dir}`,
    });
    await worker.close();
    expect([...ran].sort()).toEqual([...ids].sort());
  }, 90_000);

  it("two share consumers on two topics of 3 partitions each, 2 records in flight apiece: every record accepted exactly once", async (ctx) => {
    const cluster = useShared(ctx);
    const topics = ["multi-a", "multi-b"];
    const partitions = 3;
    for (const name of topics) await cluster.createTopic({ name, partitions, replicationFactor: 3, configs: topicConfigs, fullIsr: true });
    const runnel = client(ctx, cluster, "multi-topic");
    const producer = runnel.producer({ acks: "all" });
    ctx.onTestFinished(() => producer.close());
    const perPartition = 10;
    const placed = await Promise.all(topics.flatMap((topic) => Array.from({ length: partitions * perPartition }, (_, n) =>
      producer.send({ topic, partition: n % partitions, value: `${topic}-${n}` }))));
    const expected = placed.map((p) => jobIdOf(p.topic, p.partition, p.offset)).sort();
    const group = "multi-topic.workers";
    const accepted: Array<{ id: string; member: number }> = [];
    const failures: string[] = [];
    let stop = false;
    const members = [0, 1].map((member) => {
      const consumer = client(ctx, cluster, `multi-topic-${member}`).shareConsumer({ groupId: group, topics, maxInFlightRecords: 2, lockDurationMs: workerLockMs });
      const loop = (async () => {
        while (!stop) {
          for (const r of await consumer.poll({ timeoutMs: 500 })) {
            void consumer.acknowledge(r, "accept").then((res) => {
              if (res.error === undefined) accepted.push({ id: jobIdOf(r.topic, r.partition, r.offset), member });
              else failures.push(`${r.topic}-${r.partition}@${r.offset}: ${res.error.message}`);
            });
          }
        }
        await consumer.close();
      })();
      return loop;
    });
    try {
      await pollUntil(() => (accepted.length >= expected.length || failures.length > 0 ? true : undefined), {
        timeoutMs: 60_000,
        what: `two members with 2 records in flight each did not accept all ${expected.length} records`,
        describeLast: () => `accepted ${accepted.length}: ${accepted.map((a) => a.id).sort().join(" ")}`,
        hint: () => `logs: ${cluster.dir}`,
      });
    } finally {
      stop = true;
      await Promise.all(members);
    }
    expect(failures).toEqual([]);
    expect(accepted.map((a) => a.id).sort()).toEqual(expected);
    // Both members took part (each holds at most 2, so one alone would be a coincidence worth knowing about).
    expect(new Set(accepted.map((a) => a.member)).size).toBe(2);
  }, 120_000);

  it("two share groups on one topic each get every record once: their share states are separate", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "two-groups";
    await cluster.createTopic({ name: queue, partitions: 2, replicationFactor: 3, configs: topicConfigs, fullIsr: true });
    const runnel = client(ctx, cluster, "two-groups");
    const producer = runnel.producer({ acks: "all" });
    ctx.onTestFinished(() => producer.close());
    const placed = await Promise.all(Array.from({ length: 20 }, (_, n) => producer.send({ topic: queue, partition: n % 2, value: String(n) })));
    const expected = placed.map((p) => jobIdOf(p.topic, p.partition, p.offset)).sort();
    const take = async (group: string, release: boolean): Promise<string[]> => {
      const consumer = client(ctx, cluster, group).shareConsumer({ groupId: group, topics: [queue], lockDurationMs: workerLockMs });
      const got: string[] = [];
      const released = new Set<string>();
      await pollUntil(async () => {
        for (const r of await consumer.poll({ timeoutMs: 500 })) {
          const id = jobIdOf(r.topic, r.partition, r.offset);
          // Group b releases each record once first: a release in one group must not touch the other.
          if (release && !released.has(id)) {
            released.add(id);
            consumer.release(r);
            continue;
          }
          got.push(id);
          const res = await consumer.acknowledge(r, "accept");
          expect(res.error, `${group} accepting ${id}`).toBeUndefined();
        }
        return got.length >= expected.length ? true : undefined;
      }, { timeoutMs: 30_000, what: `share group ${group} did not get all ${expected.length} records`, describeLast: () => `got ${got.join(" ")}`, hint: () => `logs: ${cluster.dir}` });
      await consumer.close();
      return got.sort();
    };
    expect(await take("two-groups.a", false)).toEqual(expected);
    expect(await take("two-groups.b", true)).toEqual(expected);
    // Group a is settled and saw no more deliveries: a later member of it gets nothing.
    const late = client(ctx, cluster, "two-groups-late").shareConsumer({ groupId: "two-groups.a", topics: [queue], lockDurationMs: workerLockMs });
    expect(await late.poll({ timeoutMs: 2_000 })).toEqual([]);
    await late.close();
  }, 120_000);

  it("`runnel dlq list` shows dead letters and `runnel dlq redrive` puts each back once for another try", async (ctx) => {
    const cluster = useShared(ctx);
    const queue = "redrive";
    const group = `${queue}.workers`;
    const dlqTopic = `${queue}.dlq`;
    await createQueue(cluster, queue);
    const runnel = client(ctx, cluster, "redrive");
    const ids = await enqueueJobs(runnel, queue, 3);
    expect(ids).toEqual([0, 1, 2].map((n) => jobIdOf(queue, 0, BigInt(n))));

    // A member rejects all three as poison.
    const rejecter = runnel.shareConsumer({ groupId: group, topics: [queue], lockDurationMs: workerLockMs });
    ctx.onTestFinished(() => rejecter.close());
    const poisoned: ShareRecord[] = [];
    await pollUntil(async () => {
      poisoned.push(...(await rejecter.poll({ timeoutMs: 500 })));
      return poisoned.length >= 3 ? true : undefined;
    }, { timeoutMs: 30_000, what: "the 3 jobs were not delivered", hint: () => `logs: ${cluster.dir}` });
    const rejected = await Promise.all(poisoned.map((r) => rejecter.acknowledge(r, "reject", { reason: `poison ${r.offset}` })));
    expect(rejected.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
    await rejecter.close();
    await waitSettled(cluster, group, queue, 3n, 15_000);

    const listed = jsonLines(await cliOk(cluster, ["--json", "dlq", "list", queue]));
    expect(listed.map((l) => [l["dlqTopic"], l["topic"], l["partition"], l["originalOffset"], l["attempts"], l["reason"], l["value"]])).toEqual(
      [0, 1, 2].map((n) => [dlqTopic, queue, 0, n, 1, `poison ${n}`, JSON.stringify({ n })]),
    );
    for (const l of listed) expect(Object.keys(l["headers"] as object).filter((k) => k.startsWith("runnel.dlq."))).toEqual([]);
    const table = await cliOk(cluster, ["dlq", "list", queue]);
    for (const n of [0, 1, 2]) expect(table).toMatch(new RegExp(`^0/${n}\\s+${queue}-0@${n}\\s+1\\s+poison ${n}\\s`, "m"));

    const redriven = jsonLines(await cliOk(cluster, ["--json", "dlq", "redrive", queue]));
    expect(redriven).toEqual([{ dlqTopic, redriven: 3, skipped: 0 }]);

    // The redriven jobs come back as new records of the queue: same payloads, no runnel.dlq.* headers,
    // first delivery; a worker accepts them.
    const worker = runnel.shareConsumer({ groupId: group, topics: [queue], lockDurationMs: workerLockMs });
    ctx.onTestFinished(() => worker.close());
    const again: ShareRecord[] = [];
    await pollUntil(async () => {
      again.push(...(await worker.poll({ timeoutMs: 500 })));
      return again.length >= 3 ? true : undefined;
    }, { timeoutMs: 30_000, what: "the redriven jobs were not delivered", hint: () => `logs: ${cluster.dir}` });
    expect(again.map((r) => [r.offset, r.deliveryCount, r.value?.toString("utf8")]).sort()).toEqual([3n, 4n, 5n].map((o, n) => [o, 1, JSON.stringify({ n })]));
    for (const r of again) expect(r.headers.filter((h) => h.key.startsWith("runnel.dlq."))).toEqual([]);
    const accepted = await Promise.all(again.map((r) => worker.acknowledge(r, "accept")));
    expect(accepted.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
    await worker.close();
    await waitSettled(cluster, group, queue, 6n, 15_000);

    // Each dead letter is redriven once: a second redrive finds nothing new.
    expect(jsonLines(await cliOk(cluster, ["--json", "dlq", "redrive", queue]))).toEqual([{ dlqTopic, redriven: 0, skipped: 0 }]);
    expect(await cliOk(cluster, ["dlq", "redrive", queue])).toBe(`redrove 0 dead letters from "${dlqTopic}"`);
  }, 90_000);
});

describe("task queues through a partition leader failover", () => {
  it("SIGKILL of the partition leader during a 2,000-job run: no job lost, no accepted job run again", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200, brokerArgs: ["--replica-lag-time-max-ms", "2000"] });
    const queue = "failover-jobs";
    const group = `${queue}.workers`;
    const jobCount = 2_000;
    /** The leader is killed once this many jobs are accepted. */
    const acceptsBeforeKill = 400;
    await createQueue(cluster, queue);
    const ids = await enqueueJobs(client(ctx, cluster, "enqueuer"), queue, jobCount);
    const leader = (await cluster.waitForLeader(queue, 0)).leaderId;

    const ledger = new Ledger();
    // A job "runs" for a moment so that some are always in flight when the leader dies.
    const workers = startWorkers(ctx, cluster, ledger, 4, "worker", { groupId: group, topic: queue, lockDurationMs: workerLockMs, maxInFlightRecords: 50, handle: () => sleep(2) });
    await pollUntil(() => (ledger.accepts.length >= acceptsBeforeKill ? true : undefined), { timeoutMs: 60_000, what: `${acceptsBeforeKill} jobs were not accepted`, hint: () => `logs: ${cluster.dir}` });
    const killedAtAccepts = ledger.accepts.length;
    const inFlightAtKill = ledger.deliveries.length - ledger.accepts.length - ledger.ackFailures.length;
    const killedAtMs = Date.now();
    await cluster.kill(leader);
    const moved = await cluster.waitForLeader(queue, 0, (p) => p.leaderId !== leader);
    const movedAtMs = Date.now();
    console.log(`SIGKILLed broker ${leader} (leader of ${queue}-0) at ${killedAtAccepts} accepted, ${inFlightAtKill} in flight; broker ${moved.leaderId} leads in epoch ${moved.leaderEpoch} after ${movedAtMs - killedAtMs} ms`);

    // Everything settles: every record below 2,000 archived, none dead-lettered.
    await waitSettled(cluster, group, queue, BigInt(jobCount), bigRunTimeoutMs);
    const settledAtMs = Date.now();
    await Promise.all(workers.map((w) => w.stop()));
    const acceptsAfterKill = ledger.accepts.filter((a) => a.confirmedAtMs > killedAtMs).map((a) => a.confirmedAtMs).sort((a, b) => a - b);
    // Records the dying leader handed out (state written) in answers the crash cut off reach no worker
    // until their lock runs out: their first delivery seen here has a count above 1.
    const seen = new Set<string>();
    const lostAnswers = ledger.deliveries.filter((d) => {
      const first = !seen.has(d.id);
      seen.add(d.id);
      return first && d.deliveryCount > 1;
    }).length;
    console.log(`${lostAnswers} records first seen at delivery count > 1 (acquired in an answer the crash cut off, redelivered after their lock)`);
    console.log(`after the kill: first accept confirmed at +${(acceptsAfterKill[0] ?? NaN) - killedAtMs} ms, the last at +${(acceptsAfterKill.at(-1) ?? NaN) - killedAtMs} ms, settled state seen at +${settledAtMs - killedAtMs} ms`);
    const deadLetters = await cluster.metadata([`${queue}.dlq`]);
    const dlq = deadLetters.topics.find((t) => t.name === `${queue}.dlq`);
    if (dlq !== undefined && dlq.partitions.length > 0) {
      const offsets = await client(ctx, cluster, "dlq-check").admin().listOffsets(`${queue}.dlq`, "latest");
      expect(offsets.map((o) => o.offset), "dead letters").toEqual(offsets.map(() => 0n));
    }

    console.log(`${ledger.deliveries.length} deliveries, ${ledger.accepts.length} confirmed accepts, ${ledger.ackFailures.length} accept failures (${[...new Set(ledger.ackFailures.map((f) => f.error))].slice(0, 3).join("; ")}), ${ledger.pollErrors.length} poll errors (${ledger.pollErrors.slice(0, 3).join("; ")})`);
    // No accepted job accepted again, and no delivery of an accepted job after its accept: a redelivery
    // with a higher delivery count, or one received after the accept was confirmed.
    expect(ledger.acceptedTwice()).toEqual([]);
    const acceptOf = new Map(ledger.accepts.map((a) => [a.id, a]));
    const rerun = ledger.deliveries.filter((d) => {
      const a = acceptOf.get(d.id);
      return a !== undefined && (d.deliveryCount > a.deliveryCount || d.receivedAtMs > a.confirmedAtMs);
    });
    expect(rerun.map((d) => `${d.id} delivered to ${d.worker} (count ${d.deliveryCount}) at ${d.receivedAtMs} after its accept ${json(acceptOf.get(d.id))}`)).toEqual([]);
    // No job lost: each ran and its accept was confirmed, or (an accept whose answer the failover cut
    // off) its last delivery's accept failed and the job was settled without running again.
    const lastDelivery = new Map<string, Delivery>();
    for (const d of ledger.deliveries) if ((lastDelivery.get(d.id)?.deliveryCount ?? 0) <= d.deliveryCount) lastDelivery.set(d.id, d);
    const unknownOutcome: string[] = [];
    const lost: string[] = [];
    for (const id of ids) {
      if (acceptOf.has(id)) continue;
      const last = lastDelivery.get(id);
      if (last !== undefined && ledger.ackFailures.some((f) => f.id === id && f.deliveryCount === last.deliveryCount)) unknownOutcome.push(id);
      else lost.push(id);
    }
    console.log(`${ids.length - unknownOutcome.length} jobs with a confirmed accept, ${unknownOutcome.length} settled after an accept whose answer was lost`);
    expect(lost, "jobs never run to an accept").toEqual([]);
  }, 180_000);
});
