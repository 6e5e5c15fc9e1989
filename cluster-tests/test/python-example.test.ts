// Issue 8 item 1, "any language, proven": the Python client in examples/python (stubs generated from
// proto/ with Debian's python3-grpcio and python3-grpc-tools, run with /usr/bin/python3) against a real
// cluster. Checks: its offline codec tests pass; its batch encoding is byte-identical to @runnel/proto's
// buildBatch; records the TypeScript producer wrote are read by a Python group member (keys, values,
// headers, offsets; offsets committed; the member leaves); records the Python producer wrote are read
// by the TypeScript consumer, each on the partition the TypeScript partitioner picks for its key; a
// Python member and a TypeScript member share one group; NOT_LEADER redirects, duplicate-sequence
// resends and CRC refusal behave as docs/protocol.md says; two Python share-group workers
// (examples/python/runnel_share.py) split jobs TypeScript enqueued, each accepted exactly once, and a
// Python reject dead-letters its job with the reason. Missing Debian packages FAIL the tests (CI
// installs them), they never skip.
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBatch } from "@runnel/proto";
import { Runnel, partitionForKey, type ConsumerRecord } from "@runnel/client";
import { type Cluster, pollUntil, repoRoot, startCluster } from "../src/harness/index.js";

/** Debian's interpreter: the python3 first on PATH may be another one without Debian's packages. */
const python = "/usr/bin/python3";
const exampleDir = join(repoRoot, "examples", "python");
/** Deadline of one Python run (interpreter start, stub generation, the run's own waits). */
const pythonRunTimeoutMs = 30_000;
/** How long a consumer may take to read what was produced, in milliseconds. */
const readTimeoutMs = 20_000;
const partitions = 3;
/** How long a Python share-work run may take on its own (--timeout-ms): start-up, joining, the jobs. */
const shareWorkTimeoutMs = 45_000;
/** Deadline of one share-work process, above its own timeout so it can close and print its summary. */
const shareRunTimeoutMs = 60_000;
/** Dead letters are produced by the partition leader's share tick, not before the reject is answered. */
const deadLetterTimeoutMs = 20_000;
/** Budget of a share-group test: two runs' deadline plus checks. */
const shareTestTimeoutMs = 120_000;

let cluster: Cluster;
let bootstrap: string;
let client: Runnel;
let pythonProblem: string | undefined;

beforeAll(async () => {
  const probe = await execa(python, ["-c", "import grpc, grpc_tools"], { reject: false, timeout: pythonRunTimeoutMs });
  if (probe.exitCode !== 0) {
    pythonProblem = `${python} cannot import grpc and grpc_tools: install Debian's packages with ` +
      `"apt-get install -y python3-grpcio python3-grpc-tools" (.ci/run does). ${probe.stderr || probe.message}`;
    return;
  }
  cluster = await startCluster({
    brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200,
    controllerArgs: ["--group-session-timeout-ms", "3000", "--group-heartbeat-interval-ms", "300"],
  });
  bootstrap = cluster.bootstrap.join(",");
  client = new Runnel({ bootstrap, clientId: "python-interop" });
});

afterAll(async () => {
  await client?.close();
  await cluster?.close();
});

function requirePython(): void {
  if (pythonProblem !== undefined) throw new Error(pythonProblem);
}

/** Runs `script` in examples/python with Debian's Python against the test cluster. */
async function runPython(script: string, args: string[], options: { input?: string; timeoutMs?: number } = {}) {
  requirePython();
  const res = await execa(python, [join(exampleDir, script), ...args], {
    cwd: exampleDir, reject: false, timeout: options.timeoutMs ?? pythonRunTimeoutMs,
    env: { RUNNEL_BOOTSTRAP: bootstrap ?? "", PYTHONDONTWRITEBYTECODE: "1" },
    ...(options.input === undefined ? {} : { input: options.input }),
  });
  expect(res.exitCode, `${script} ${args.join(" ")} failed:\n${res.stderr}\n${res.stdout}`).toBe(0);
  return { lines: res.stdout.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Record<string, unknown>), stderr: res.stderr };
}

function summaryOf(stderr: string): Record<string, unknown> {
  const line = stderr.split("\n").find((l) => l.startsWith("{\"summary\""));
  expect(line, `no summary line in stderr:\n${stderr}`).toBeDefined();
  return (JSON.parse(line!) as { summary: Record<string, unknown> }).summary;
}

interface Seen {
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
}

function fromTs(r: ConsumerRecord): Seen {
  return {
    partition: r.partition, offset: Number(r.offset), key: r.key?.toString() ?? null, value: r.value?.toString() ?? null,
    headers: Object.fromEntries(r.headers.map((h) => [h.key, h.value.toString()])),
  };
}

function byPosition(a: Seen, b: Seen): number {
  return a.partition - b.partition || a.offset - b.offset;
}

async function createTopicWithPython(name: string): Promise<void> {
  const { lines } = await runPython("example.py", ["create-topic", name, "--partitions", String(partitions), "--replication-factor", "3"]);
  expect(lines).toEqual([{ topic: name, created: true, partitions }]);
}

describe("Python client example (examples/python)", () => {
  it("passes its offline tests: CRC32C vectors, murmur2 equal to the TypeScript client, batch round trip", async () => {
    requirePython();
    const res = await execa(python, ["-m", "unittest", "discover", "-s", exampleDir, "-p", "test_*.py"], {
      cwd: exampleDir, reject: false, timeout: pythonRunTimeoutMs, env: { PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(res.exitCode, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/Ran \d+ tests/);
  });

  it("encodes a record batch byte for byte like @runnel/proto's buildBatch, CRC32C included", async () => {
    const nowMs = 1_700_000_000_000;
    const input = [
      { key: "k1", value: "v1", headers: [["h", "1"], ["h", "2"]], timestamp: nowMs + 5 },
      { key: "", value: null, headers: [] },
      { key: null, value: "", headers: [["only", "header"]], timestamp: nowMs - 3 },
    ];
    const { lines } = await runPython("example.py", ["encode-batch", "--now-ms", String(nowMs)], { input: input.map((r) => JSON.stringify(r)).join("\n") });
    const enc = new TextEncoder();
    const ts = buildBatch(input.map((r) => ({
      key: r.key === null ? undefined : enc.encode(r.key),
      value: r.value === null ? undefined : enc.encode(r.value),
      headers: r.headers.map(([key, value]) => ({ key: key!, value: enc.encode(value!) })),
      timestamp: r.timestamp,
    })), { nowMs });
    expect(lines).toEqual([{
      records_hex: Buffer.from(ts.records).toString("hex"), crc: ts.header!.crc, record_count: 3,
      first_timestamp: Number(ts.header!.firstTimestamp), max_timestamp: Number(ts.header!.maxTimestamp),
    }]);
  });

  it("a Python group member reads what the TypeScript producer wrote, commits its offsets and leaves", async () => {
    const topic = "interop-ts-to-py";
    await createTopicWithPython(topic);
    const producer = client.producer({ acks: "all" });
    const count = 30;
    const acks = await Promise.all(Array.from({ length: count }, (_, i) =>
      producer.send({ topic, key: `ts-k${i}`, value: `ts-v${i}`, headers: { origin: "typescript", n: String(i) } })));
    await producer.flush();
    const expected: Seen[] = acks.map((a, i) => ({
      partition: a.partition, offset: Number(a.offset), key: `ts-k${i}`, value: `ts-v${i}`, headers: { origin: "typescript", n: String(i) },
    }));

    const { lines, stderr } = await runPython("example.py", ["consume", topic, "--group", "py-readers", "--max-messages", String(count), "--timeout-ms", String(readTimeoutMs)]);
    const seen = lines.map((l) => ({ partition: l["partition"], offset: l["offset"], key: l["key"], value: l["value"], headers: l["headers"] }) as Seen);
    expect(seen.sort(byPosition)).toEqual(expected.sort(byPosition));
    expect(lines.every((l) => l["topic"] === topic && typeof l["timestamp"] === "number")).toBe(true);
    const summary = summaryOf(stderr);
    expect(summary["assignment"]).toEqual([0, 1, 2].map((p) => `${topic}/${p}`));

    // The member committed the next offset of every partition and left the group.
    const hws = await client.admin().listOffsets(topic, "latest");
    const group = await client.groupAdmin().describeGroup("py-readers");
    expect(group.members).toEqual([]);
    const committed = await client.groupAdmin().committedOffsets("py-readers");
    expect(committed.map((c) => [c.partition, c.offset]).sort()).toEqual(hws.map((h) => [h.partition, h.offset]).sort());
  });

  it("the TypeScript consumer reads what the Python producer wrote, on the partitions the TypeScript partitioner picks", async () => {
    const topic = "interop-py-to-ts";
    await createTopicWithPython(topic);
    const count = 30;
    const { lines, stderr } = await runPython("example.py", ["produce", topic, "--count", String(count), "--key-prefix", "py-k", "--value-prefix", "py-v", "--header", "origin=python", "--send-size", "7"]);
    expect(lines).toHaveLength(count);
    const enc = new TextEncoder();
    for (const l of lines) expect(l["partition"], `key ${String(l["key"])}`).toBe(partitionForKey(enc.encode(l["key"] as string), partitions));
    expect(summaryOf(stderr)["producer_id"]).toBeGreaterThan(0); // idempotent: it asked the controller for an id
    const expected: Seen[] = lines.map((l, i) => ({
      partition: l["partition"] as number, offset: l["offset"] as number, key: `py-k${i}`, value: `py-v${i}`, headers: { origin: "python", index: String(i) },
    }));
    expect(lines.map((l) => [l["key"], l["value"]])).toEqual(expected.map((e) => [e.key, e.value]));

    const consumer = client.consumer({ maxWaitMs: 200, resetPolicy: "earliest" });
    const tps = [0, 1, 2].map((partition) => ({ topic, partition }));
    consumer.assign(tps);
    for (const tp of tps) consumer.seek(tp, "earliest");
    const seen: Seen[] = [];
    const timer = setTimeout(() => void consumer.close(), readTimeoutMs);
    for await (const r of consumer) {
      seen.push(fromTs(r));
      if (seen.length === count) break;
    }
    clearTimeout(timer);
    await consumer.close();
    expect(seen.sort(byPosition)).toEqual(expected.sort(byPosition));
  });

  it("a Python member and a TypeScript member share one group: each partition read by one of them, every record once", async () => {
    const topic = "interop-mixed-group";
    await createTopicWithPython(topic);
    const groupId = "mixed";
    const tsSeen: Seen[] = [];
    const tsMember = client.groupConsumer({ groupId, topics: [topic], resetPolicy: "earliest", autoCommitIntervalMs: 300 });
    const tsReading = (async () => {
      for await (const r of tsMember) tsSeen.push(fromTs(r));
    })();
    // The Python member joins while the TypeScript one holds every partition: they are split between them.
    const pyRun = runPython("example.py", ["consume", topic, "--group", groupId, "--timeout-ms", "8000", "--commit-interval-ms", "300"], { timeoutMs: 30_000 });
    // Produce once the group is stable with both members owning partitions, so no record is produced
    // while a partition changes hands (at-least-once could then legitimately deliver it twice).
    let lastGroup = "";
    await pollUntil(async () => {
      const g = await client.groupAdmin().describeGroup(groupId);
      lastGroup = JSON.stringify({ state: g.state, members: g.members.map((m) => [m.clientId, m.assignment.length]) });
      return g.state === "stable" && g.members.length === 2 && g.members.every((m) => m.assignment.length > 0) ? g : undefined;
    }, { timeoutMs: readTimeoutMs, what: "the group did not settle with two members", describeLast: () => lastGroup });
    expect((await client.groupAdmin().describeGroup(groupId)).members.map((m) => m.clientId).sort()).toEqual(["python-interop", "runnel-python"]);
    const count = 60;
    const producer = client.producer({ acks: "all" });
    const acks = await Promise.all(Array.from({ length: count }, (_, i) => producer.send({ topic, key: `m${i}`, value: `m${i}` })));
    await producer.flush();
    const { lines, stderr } = await pyRun;
    await tsMember.close();
    await tsReading;

    const pySeen = lines.map((l) => ({ partition: l["partition"], offset: l["offset"], key: l["key"], value: l["value"], headers: {} }) as Seen);
    const pyPartitions = new Set(pySeen.map((s) => s.partition));
    const tsPartitions = new Set(tsSeen.map((s) => s.partition));
    expect(pySeen.length, `python read nothing; its summary: ${stderr}`).toBeGreaterThan(0);
    expect(tsSeen.length).toBeGreaterThan(0);
    expect([...pyPartitions].filter((p) => tsPartitions.has(p))).toEqual([]);
    const all = [...pySeen, ...tsSeen].sort(byPosition);
    expect(all.map((s) => [s.partition, s.offset, s.value])).toEqual(
      acks.map((a, i) => [a.partition, Number(a.offset), `m${i}`]).sort((x, y) => (x[0] as number) - (y[0] as number) || (x[1] as number) - (y[1] as number)));
  });

  it("two Python share-group workers split the jobs TypeScript enqueued: each job accepted once, nothing left in flight", async () => {
    const topic = "interop-share-jobs";
    const groupId = "py-share-workers";
    await client.tasks.createQueue(topic, { partitions, replicationFactor: 3 });
    const count = 60;
    const jobs = await Promise.all(Array.from({ length: count }, (_, i) => client.tasks.enqueue(topic, { job: i }, { key: `job-${i}` })));
    expect(new Set(jobs.map((j) => j.partition)).size).toBe(partitions); // the keys spread the jobs over every partition

    // Each worker stops after half the jobs, holding at most 5 at a time, so they take turns on every
    // partition while both run; together they must settle every job exactly once.
    const worker = () => runPython("example.py", [
      "share-work", topic, "--group", groupId, "--max-messages", String(count / 2), "--max-in-flight", "5", "--timeout-ms", String(shareWorkTimeoutMs),
    ], { timeoutMs: shareRunTimeoutMs });
    const [a, b] = await Promise.all([worker(), worker()]);
    expect(a.lines).toHaveLength(count / 2);
    expect(b.lines).toHaveLength(count / 2);
    const [summaryA, summaryB] = [summaryOf(a.stderr), summaryOf(b.stderr)];
    expect(typeof summaryA["member_id"]).toBe("string");
    expect(summaryA["member_id"]).not.toEqual(summaryB["member_id"]);
    expect([summaryA["failed_acks"], summaryB["failed_acks"]]).toEqual([0, 0]);
    // Acknowledgements rode ShareFetch requests (not only flush's ShareAcknowledge).
    expect(Number(summaryA["acks_piggybacked"] ?? 0) + Number(summaryB["acks_piggybacked"] ?? 0), JSON.stringify([summaryA, summaryB])).toBeGreaterThan(0);

    const accepted = [...a.lines, ...b.lines];
    expect(accepted.every((l) => l["topic"] === topic && l["delivery_count"] === 1), JSON.stringify(accepted)).toBe(true);
    const byPos = (x: unknown[], y: unknown[]) => (x[0] as number) - (y[0] as number) || (x[1] as number) - (y[1] as number);
    expect(accepted.map((l) => [l["partition"], l["offset"], l["key"], l["value"]]).sort(byPos)).toEqual(
      jobs.map((j, i) => [j.partition, Number(j.offset), `job-${i}`, JSON.stringify({ job: i })]).sort(byPos));

    // The leaders wrote every acceptance before answering it, and both members left the group.
    const hws = await client.admin().listOffsets(topic, "latest");
    const described = await client.shareAdmin().describeShareGroup(groupId);
    expect(described.members).toEqual([]);
    expect(described.partitions.map((p) => [p.topic, p.partition, p.acquired, p.available, p.deadLettering, Number(p.endOffset)])).toEqual(
      hws.map((h) => [topic, h.partition, 0, 0, 0, Number(h.offset)]).sort((x, y) => (x[1] as number) - (y[1] as number)));
  }, shareTestTimeoutMs);

  it("a Python share-group worker rejects a job: it lands in <topic>.dlq with the worker's reason", async () => {
    const topic = "interop-share-reject";
    await client.tasks.createQueue(topic, { partitions, replicationFactor: 3 });
    const producer = client.producer({ acks: "all" });
    const count = 6;
    const acks = await Promise.all(Array.from({ length: count }, (_, i) => producer.send({ topic, key: `r${i}`, value: `job-${i}` })));
    await producer.flush();
    const poison = acks[3]!;

    const { lines, stderr } = await runPython("example.py", [
      "share-work", topic, "--group", "py-rejecter", "--max-messages", String(count - 1), "--reject-value", "job-3", "--timeout-ms", String(shareWorkTimeoutMs),
    ], { timeoutMs: shareRunTimeoutMs });
    expect(lines.filter((l) => "rejected" in l)).toEqual([
      { rejected: Number(poison.offset), topic, partition: poison.partition, value: "job-3", delivery_count: 1, reason: "python says no" },
    ]);
    expect(lines.filter((l) => !("rejected" in l)).map((l) => l["value"]).sort()).toEqual(["job-0", "job-1", "job-2", "job-4", "job-5"]);
    expect(summaryOf(stderr)["rejected"]).toBe(1);

    let lastSeen = "";
    const deadLetters = await pollUntil(async () => {
      const d = await client.shareAdmin().dlqList(topic);
      lastSeen = JSON.stringify(d.map((x) => [x.dlqTopic, x.offset.toString(), x.reason]));
      return d.length > 0 ? d : undefined;
    }, { timeoutMs: deadLetterTimeoutMs, what: `the rejected job did not reach ${topic}.dlq`, describeLast: () => lastSeen });
    expect(deadLetters.map((d) => ({
      dlqTopic: d.dlqTopic, topic: d.topic, partition: d.partition, offset: d.offset, attempts: d.attempts, reason: d.reason,
      key: d.key?.toString(), value: d.value?.toString(),
    }))).toEqual([{
      dlqTopic: `${topic}.dlq`, topic, partition: poison.partition, offset: poison.offset, attempts: 1, reason: "python says no", key: "r3", value: "job-3",
    }]);
  }, shareTestTimeoutMs);

  it("follows NOT_LEADER redirects, resends an idempotent batch without duplicating it, and gets CORRUPT_BATCH for a bad CRC", async () => {
    const { lines } = await runPython("cluster_check.py", ["interop-check"]);
    expect(lines).toHaveLength(1);
    expect(lines[0], JSON.stringify(lines[0])).toMatchObject({ ok: true });
  });
});
