import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Readable } from "node:stream";
import { FakeCluster } from "./fakes/fake-cluster.js";
import { runCli } from "../src/cli/run.js";

let fake: FakeCluster;
const enc = (s: string) => new TextEncoder().encode(s);

beforeEach(async () => {
  fake = await FakeCluster.start({ brokers: 2 });
});

afterEach(async () => {
  await fake.stop();
});

async function cli(args: string[], options: { stdin?: string; env?: Record<string, string> } = {}) {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, {
    stdin: Readable.from(options.stdin === undefined ? [] : [options.stdin]),
    stdout: { write: (s: string) => { stdout += s; } },
    stderr: { write: (s: string) => { stderr += s; } },
    env: { RUNNEL_BOOTSTRAP: fake.bootstrap, ...options.env },
  });
  return { code, stdout, stderr };
}

const jsonLines = (text: string) => text.trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);

describe("runnel CLI: usage errors", () => {
  it.each([
    [["topic", "create", "x", "--partitions", "zero"], /--partitions must be an integer >= 1, got "zero"/],
    [["topic", "create", "x", "--config", "novalue"], /--config takes key=value/],
    [["produce", "t", "--acks", "2"], /--acks must be all, 1 or 0/],
    [["consume", "t", "--offset", "5"], /--offset needs --partition/],
    [["topic", "frobnicate"], /unknown command 'frobnicate'/],
    [["topic", "list", "--nope"], /unknown option '--nope'/],
    [["offsets", "t", "--time", "yesterday"], /--time must be earliest, latest or milliseconds/],
    [["group", "reset-offsets", "g", "--topic", "t"], /give exactly one of --to-earliest/],
    [["produce", "t", "--delay-ms", "soon"], /--delay-ms must be an integer >= 0, got "soon"/],
    [["dlq", "list", "t", "--max-messages", "0"], /--max-messages must be an integer >= 1, got "0"/],
    [["dlq", "redrive", "t", "--max-messages", "-3"], /--max-messages must be an integer >= 1/],
    [["share", "describe"], /missing required argument 'group'/],
    [["dlq", "purge", "t"], /unknown command 'purge'/],
    [["consume", "t", "--ack", "reject"], /--ack and --reason need --share-group/],
    [["consume", "t", "--share-group", "g", "--from-beginning"], /--share-group takes records from every partition/],
    [["consume", "t", "--share-group", "g", "--ack", "drop"], /option '--ack <type>' argument 'drop' is invalid/],
  ])("runnel %j exits 2 with one line", async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr.startsWith("runnel: ")).toBe(true);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("says the cluster is unreachable in one line", async () => {
    const r = await cli(["topic", "list", "--bootstrap", "127.0.0.1:1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("runnel: cannot reach the cluster at 127.0.0.1:1 (is it running? try npm start)\n");
  });

  it("names a missing topic", async () => {
    const r = await cli(["topic", "describe", "ghost"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('runnel: topic "ghost" does not exist\n');
    expect((await cli(["produce", "ghost", "--value", "v"])).stderr).toBe('runnel: topic "ghost" does not exist\n');
  });

  it("rejects a bad topic name or config before calling the cluster", async () => {
    const r = await cli(["topic", "create", "bad/name"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^runnel: topic name "bad\/name" has characters outside/);
    const c = await cli(["topic", "create", "ok", "--config", "retention.ms=soon"]);
    expect(c.stderr).toMatch(/invalid value "soon" for retention.ms/);
  });
});

describe("runnel CLI: topics and cluster", () => {
  it("creates, lists, describes, alters and deletes a topic", async () => {
    const created = await cli(["topic", "create", "orders", "--partitions", "3", "--replication-factor", "2", "--config", "retention.ms=60000"]);
    expect(created).toMatchObject({ code: 0, stdout: 'created topic "orders" with 3 partitions\n' });
    expect((await cli(["topic", "create", "orders"])).stderr).toBe('runnel: topic "orders" already exists\n');

    const list = await cli(["topic", "list"]);
    expect(list.stdout).toBe("TOPIC   PARTITIONS\norders  3\n");
    expect(jsonLines((await cli(["--json", "topic", "list"])).stdout)).toEqual([{ topic: "orders", partitions: 3 }]);

    const described = await cli(["topic", "describe", "orders"]);
    expect(described.stdout).toContain("PARTITION  LEADER  EPOCH  REPLICAS  ISR");
    expect(described.stdout).toContain("configs: retention.ms=60000");
    const dj = jsonLines((await cli(["topic", "describe", "orders", "--json"])).stdout)[0]!;
    expect(dj).toMatchObject({ topic: "orders", configs: { "retention.ms": "60000" } });
    expect((dj.partitions as unknown[]).length).toBe(3);

    expect((await cli(["topic", "alter", "orders", "--config", "retention.ms=120000"])).code).toBe(0);
    expect(fake.topics.get("orders")!.configs["retention.ms"]).toBe("120000");
    expect((await cli(["topic", "alter", "orders"])).code).toBe(2);

    expect(await cli(["topic", "delete", "orders"])).toMatchObject({ code: 0, stdout: 'deleted topic "orders"\n' });
    expect((await cli(["topic", "list"])).stdout).toBe("no topics\n");
  });

  it("cluster status shows the controller, brokers and partition counts", async () => {
    fake.createTopic("a", 2);
    const r = await cli(["cluster", "status"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`controller ${fake.controllerAddress}`);
    expect(r.stdout).toMatch(/BROKER\s+ADDRESS\s+ALIVE\s+LEADERS\s+REPLICAS/);
    expect(r.stdout).toContain("topics 1  partitions 2");
    const j = jsonLines((await cli(["cluster", "status", "--json"])).stdout)[0]!;
    expect(j).toMatchObject({ controller: fake.controllerAddress, partitions: 2, topics: 1 });
    expect(j.brokers).toEqual([
      { id: 1, address: fake.brokerAddress(1), alive: true, leaders: 1, replicas: 2 },
      { id: 2, address: fake.brokerAddress(2), alive: true, leaders: 1, replicas: 2 },
    ]);
  });
});

describe("runnel CLI: produce, consume, offsets", () => {
  it("produces one record per stdin line and prints acknowledgements in input order with --json", async () => {
    fake.createTopic("t", 1);
    const r = await cli(["produce", "t", "--key", "k", "--json", "--progress"], { stdin: "one\ntwo\nthree\n" });
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)).toEqual([
      { partition: 0, offset: 0, key: "k", value: "one" },
      { partition: 0, offset: 1, key: "k", value: "two" },
      { partition: 0, offset: 2, key: "k", value: "three" },
    ]);
    expect(r.stderr).toMatch(/^runnel: produced 3 records in [\d.]+ s \(\d+ records\/s\)\n$/);
    expect(fake.records("t", 0).map((x) => new TextDecoder().decode(x.key))).toEqual(["k", "k", "k"]);
  });

  it("produces --value once and prints nothing without --json", async () => {
    fake.createTopic("t", 1);
    const r = await cli(["produce", "t", "--value", "hello", "--acks", "1"]);
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(fake.records("t", 0)).toHaveLength(1);
  });

  it("consumes from the beginning with --max-messages and --json", async () => {
    fake.createTopic("t", 2);
    fake.append("t", 0, [{ key: enc("a"), value: enc("v0"), timestamp: 5, headers: [{ key: "trace", value: enc("1") }] }, { value: enc("v1"), timestamp: 6 }]);
    fake.append("t", 1, [{ value: enc("w0"), timestamp: 7 }]);
    const r = await cli(["consume", "t", "--from-beginning", "--max-messages", "3", "--json"]);
    expect(r.code).toBe(0);
    const lines = jsonLines(r.stdout).sort((x, y) => Number(x.partition) - Number(y.partition) || Number(x.offset) - Number(y.offset));
    expect(lines).toEqual([
      { partition: 0, offset: 0, key: "a", value: "v0", timestamp: 5, headers: { trace: "1" } },
      { partition: 0, offset: 1, key: null, value: "v1", timestamp: 6, headers: {} },
      { partition: 1, offset: 0, key: null, value: "w0", timestamp: 7, headers: {} },
    ]);
  });

  it("consumes one partition from an offset and exits after --timeout-ms without new records", async () => {
    fake.createTopic("t", 2);
    fake.append("t", 1, ["a", "b", "c", "d"].map((v) => ({ value: enc(v) })));
    const r = await cli(["consume", "t", "--partition", "1", "--offset", "2", "--timeout-ms", "1500"]);
    expect(r).toEqual({ code: 0, stdout: "c\nd\n", stderr: "" });
    const missing = await cli(["consume", "t", "--partition", "5", "--timeout-ms", "100"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('runnel: topic "t" has 2 partitions; --partition 5 does not exist\n');
  });

  it("starts at the latest offset without --from-beginning", async () => {
    fake.createTopic("t", 1);
    fake.append("t", 0, [{ value: enc("old") }]);
    const r = await cli(["consume", "t", "--timeout-ms", "200"]);
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  it("prints offsets per partition", async () => {
    fake.createTopic("t", 2);
    fake.append("t", 0, [{ value: enc("a"), timestamp: 100 }, { value: enc("b"), timestamp: 200 }]);
    expect((await cli(["offsets", "t"])).stdout).toBe("PARTITION  OFFSET\n0          2\n1          0\n");
    expect(jsonLines((await cli(["offsets", "t", "--time", "earliest", "--json"])).stdout)).toEqual([{ partition: 0, offset: 0 }, { partition: 1, offset: 0 }]);
    const byTime = jsonLines((await cli(["offsets", "t", "--time", "150", "--json"])).stdout);
    expect(byTime[0]).toEqual({ partition: 0, offset: 1, timestamp: 200 });
  });
});
