// The `runnel` command as a person runs it: the built executable (client/dist/cli/main.js) in its own
// process, against a real controller and three brokers. Covers the command-line contract of
// DESIGN.md: cluster status, the topic commands, produce from stdin and consume back with --json,
// offsets, and the error cases a person meets first (cluster not running, unknown topic, bad flag):
// one line on stderr, a non-zero exit code, never a stack trace.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { type Cluster, findFreePorts, pollUntil, repoRoot, startCluster } from "../src/harness/index.js";

const cliEntry = join(repoRoot, "client", "dist", "cli", "main.js");
/** Deadline of one CLI run: Node start-up plus a request on a loaded 2-core machine. */
const cliRunTimeoutMs = 30_000;

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200 });
});

afterAll(async () => {
  await cluster?.close();
});

interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

async function runnel(args: string[], options: { input?: string; bootstrap?: string } = {}): Promise<CliResult> {
  const r = await execa("node", [cliEntry, "--bootstrap", options.bootstrap ?? cluster.bootstrap.join(","), ...args], {
    cwd: repoRoot,
    reject: false,
    timeout: cliRunTimeoutMs,
    ...(options.input === undefined ? { stdin: "ignore" as const } : { input: options.input }),
    env: { RUNNEL_BOOTSTRAP: undefined },
    extendEnv: true,
    stripFinalNewline: false,
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a command that must succeed; the error names the command and its stderr. */
async function ok(args: string[], options: { input?: string } = {}): Promise<string> {
  const r = await runnel(args, options);
  expect(r.exitCode, `runnel ${args.join(" ")} failed: ${r.stderr}`).toBe(0);
  return r.stdout;
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** An error as the contract promises it: one "runnel: ..." line on stderr, exit code as given, no stack trace. */
function expectOneLineError(r: CliResult, exitCode: number, message: RegExp): void {
  expect(r.exitCode, `stderr: ${r.stderr}`).toBe(exitCode);
  expect(r.stderr).toMatch(message);
  expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr.startsWith("runnel: ")).toBe(true);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stdout).toBe("");
}

describe("runnel CLI against a real cluster", () => {
  it("cluster status shows the controller and 3 live brokers", async () => {
    const status = jsonLines(await ok(["cluster", "status", "--json"]))[0]!;
    expect(status["controller"]).toBe(cluster.controllerAddress);
    const brokers = status["brokers"] as Array<{ id: number; address: string; alive: boolean }>;
    expect(brokers.map((b) => [b.id, b.address, b.alive])).toEqual([1, 2, 3].map((id) => [id, cluster.brokerAddress(id), true]));

    const table = await ok(["cluster", "status"]);
    expect(table).toContain(`controller ${cluster.controllerAddress}`);
    for (const id of [1, 2, 3]) expect(table).toMatch(new RegExp(`^${id}\\s+${cluster.brokerAddress(id).replace(/\./g, "\\.")}\\s+yes`, "m"));
  });

  it("creates, lists, describes, alters and deletes a topic", async () => {
    const created = jsonLines(await ok(["topic", "create", "cli-orders", "--partitions", "3", "--replication-factor", "3", "--config", "retention.ms=86400000", "--json"]))[0]!;
    expect(created).toMatchObject({ topic: "cli-orders", partitions: 3 });
    expect(await ok(["topic", "create", "cli-audit"])).toBe('created topic "cli-audit" with 1 partition\n');

    const listed = jsonLines(await ok(["topic", "list", "--json"]));
    expect(listed).toEqual(expect.arrayContaining([{ topic: "cli-orders", partitions: 3 }, { topic: "cli-audit", partitions: 1 }]));
    expect(await ok(["topic", "list"])).toMatch(/^cli-orders\s+3$/m);

    const described = jsonLines(await ok(["topic", "describe", "cli-orders", "--json"]))[0]!;
    expect(described["configs"]).toEqual({ "retention.ms": "86400000" });
    const partitions = described["partitions"] as Array<{ partition: number; leader: number; replicas: number[]; isr: number[] }>;
    expect(partitions.map((p) => p.partition)).toEqual([0, 1, 2]);
    for (const p of partitions) {
      expect([...p.replicas].sort()).toEqual([1, 2, 3]);
      expect(p.replicas).toContain(p.leader);
    }
    const describedTable = await ok(["topic", "describe", "cli-orders"]);
    expect(describedTable).toContain("PARTITION  LEADER  EPOCH  REPLICAS  ISR");
    expect(describedTable).toContain("configs: retention.ms=86400000");

    expect(await ok(["topic", "alter", "cli-orders", "--config", "retention.ms=3600000"])).toBe('updated topic "cli-orders"\n');
    // Brokers learn the change from the controller's metadata stream, a moment later.
    await pollUntil(async () => {
      const d = jsonLines(await ok(["topic", "describe", "cli-orders", "--json"]))[0]!;
      return (d["configs"] as Record<string, string>)["retention.ms"] === "3600000" ? true : undefined;
    }, { timeoutMs: 10_000, what: "topic describe did not show the altered retention.ms" });

    expect(await ok(["topic", "delete", "cli-orders"])).toBe('deleted topic "cli-orders"\n');
    await pollUntil(async () => {
      const names = jsonLines(await ok(["topic", "list", "--json"])).map((t) => t["topic"]);
      return names.includes("cli-orders") ? undefined : true;
    }, { timeoutMs: 10_000, what: "deleted topic still listed" });
    expect((await ok(["topic", "list", "--json"])).includes("cli-audit")).toBe(true);
  });

  it("produces stdin lines and consumes them back from the beginning with --json, and prints offsets", async () => {
    await ok(["topic", "create", "cli-lines", "--partitions", "1", "--replication-factor", "3"]);
    const acks = jsonLines(await ok(["produce", "cli-lines", "--json"], { input: "a\nb\n" }));
    expect(acks).toEqual([
      { partition: 0, offset: 0, key: null, value: "a" },
      { partition: 0, offset: 1, key: null, value: "b" },
    ]);

    const consumed = jsonLines(await ok(["consume", "cli-lines", "--from-beginning", "--max-messages", "2", "--json"]));
    expect(consumed.map((r) => [r["partition"], r["offset"], r["key"], r["value"]])).toEqual([[0, 0, null, "a"], [0, 1, null, "b"]]);
    for (const r of consumed) {
      expect(typeof r["timestamp"]).toBe("number");
      expect(r["headers"]).toEqual({});
    }
    expect(await ok(["consume", "cli-lines", "--from-beginning", "--max-messages", "2"])).toBe("a\nb\n");

    expect(jsonLines(await ok(["offsets", "cli-lines", "--json"]))).toEqual([{ partition: 0, offset: 2 }]);
    expect(jsonLines(await ok(["offsets", "cli-lines", "--time", "earliest", "--json"]))).toEqual([{ partition: 0, offset: 0 }]);
    expect(await ok(["offsets", "cli-lines"])).toMatch(/^PARTITION\s+OFFSET\n0\s+2\n$/);
  });

  it("produces more stdin lines than it keeps pending and consumes every one back in order", { timeout: 180_000 }, async () => {
    const count = 25_000; // above cliMaxPendingRecords, so produce waits for acknowledgements while reading
    await ok(["topic", "create", "cli-bulk", "--partitions", "3", "--replication-factor", "3"]);
    const lines = Array.from({ length: count }, (_, i) => `line-${i}`);
    const acks = jsonLines(await ok(["produce", "cli-bulk", "--key", "one-key", "--json"], { input: lines.join("\n") + "\n" }));
    expect(acks.map((a) => a["value"])).toEqual(lines);
    const partition = acks[0]!["partition"];
    expect(acks.every((a) => a["partition"] === partition)).toBe(true);
    expect(acks.map((a) => a["offset"])).toEqual(lines.map((_, i) => i));

    const consumed = await ok(["consume", "cli-bulk", "--from-beginning", "--max-messages", String(count)]);
    expect(consumed).toBe(lines.join("\n") + "\n");
  });

  it("consumes many records with --timeout-ms without printing anything but the records", { timeout: 120_000 }, async () => {
    // The idle timeout restarts with every record; it must not pile up timers or abort listeners (Node
    // warns on stderr after 10 listeners on one AbortSignal).
    await ok(["topic", "create", "cli-idle", "--partitions", "1", "--replication-factor", "3"]);
    const lines = Array.from({ length: 50 }, (_, i) => `idle-${i}`);
    await ok(["produce", "cli-idle"], { input: lines.join("\n") + "\n" });
    const timed = await runnel(["consume", "cli-idle", "--from-beginning", "--timeout-ms", "1500"]);
    expect(timed.exitCode, timed.stderr).toBe(0);
    expect(timed.stderr).toBe("");
    expect(timed.stdout).toBe(lines.join("\n") + "\n");
  });

  it("says in one line, without a stack trace, when the cluster is unreachable", async () => {
    const [port] = await findFreePorts(1, "127.0.0.1");
    const address = `127.0.0.1:${port}`;
    for (const args of [["cluster", "status"], ["topic", "list"], ["produce", "t", "--value", "v"]]) {
      const r = await runnel(args, { bootstrap: address });
      expectOneLineError(r, 1, new RegExp(`cannot reach the cluster at ${address.replace(/\./g, "\\.")}`));
    }
  });

  it("names an unknown topic in one line", async () => {
    expectOneLineError(await runnel(["topic", "describe", "cli-ghost"]), 1, /^runnel: topic "cli-ghost" does not exist$/m);
    expectOneLineError(await runnel(["produce", "cli-ghost", "--value", "v"]), 1, /^runnel: topic "cli-ghost" does not exist$/m);
    expectOneLineError(await runnel(["consume", "cli-ghost", "--from-beginning", "--max-messages", "1"]), 1, /^runnel: topic "cli-ghost" does not exist$/m);
    expectOneLineError(await runnel(["offsets", "cli-ghost"]), 1, /^runnel: topic "cli-ghost" does not exist$/m);
    expectOneLineError(await runnel(["topic", "delete", "cli-ghost"]), 1, /cli-ghost/);
  });

  it("rejects a bad flag with exit code 2 in one line", async () => {
    expectOneLineError(await runnel(["topic", "list", "--nope"]), 2, /unknown option '--nope'/);
    expectOneLineError(await runnel(["topic", "create", "cli-x", "--partitions", "zero"]), 2, /--partitions must be an integer >= 1, got "zero"/);
    expectOneLineError(await runnel(["produce", "cli-lines", "--acks", "2"]), 2, /--acks must be all, 1 or 0/);
  });
});
