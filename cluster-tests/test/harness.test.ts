// The harness's own promises: processes on their own ports and data dirs, kill/pause/resume/stop/
// restart doing what they say, waits that end with readable errors, logs kept on failure, and no
// process outliving the cluster or the test process. Runs against small fake controller and broker
// programs (written to a temp dir below) that speak the real gRPC contract, so the mechanics are
// tested without depending on the real processes; the last test uses the real controller.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, ClusterStartError, defaultControllerEntry, procStateLetter, pollUntil, repoRoot, startCluster, type ClusterOptions } from "../src/index.js";

const require = createRequire(import.meta.url);
const grpcUrl = pathToFileURL(require.resolve("@grpc/grpc-js")).href;
const protoUrl = pathToFileURL(join(repoRoot, "proto", "dist", "index.js")).href;

/** Session timeout of the fake controller: short, so "declared dead" comes quickly. */
const fakeSessionTimeoutMs = 1_000;
const fakeHeartbeatIntervalMs = 100;

const commonFake = `
import * as grpc from ${JSON.stringify(grpcUrl)};
import * as proto from ${JSON.stringify(protoUrl)};
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
const flag = (name) => { const i = process.argv.indexOf("--" + name); return i < 0 ? undefined : process.argv[i + 1]; };
const has = (name) => process.argv.includes("--" + name);
const log = (msg, fields = {}) => process.stdout.write(JSON.stringify({ level: "info", time: new Date().toISOString(), msg, ...fields }) + "\\n");
const dataDir = flag("data-dir");
mkdirSync(dataDir, { recursive: true });
const startsFile = join(dataDir, "starts");
const starts = (existsSync(startsFile) ? Number(readFileSync(startsFile, "utf8")) : 0) + 1;
writeFileSync(startsFile, String(starts));
const [host, port] = flag("listen").split(":");
const httpPort = Number(flag("http").split(":")[1]);
if (has("crash-on-start")) { process.stderr.write("fake: crashing on purpose\\n"); process.exit(3); }
if (has("ignore-sigterm")) process.on("SIGTERM", () => log("ignoring SIGTERM"));
else process.on("SIGTERM", () => { log("stopping on SIGTERM"); process.exit(0); });
const server = new grpc.Server();
const bind = () => new Promise((res, rej) => server.bindAsync(host + ":" + port, grpc.ServerCredentials.createInsecure(), (e, p) => e ? rej(e) : res(p)));
const http = createServer((req, res) => res.end("ok\\n"));
await new Promise((res) => http.listen(httpPort, host, res));
`;

const fakeControllerSource = `${commonFake}
const sessionTimeoutMs = Number(flag("session-timeout-ms") ?? 5000);
const heartbeatIntervalMs = Number(flag("heartbeat-interval-ms") ?? 500);
const brokers = new Map();
let nextEpoch = 1;
server.addService(proto.ControllerServiceService, {
  registerBroker(call, cb) {
    const r = call.request;
    const epoch = nextEpoch++;
    brokers.set(r.brokerId, { endpoint: { brokerId: r.brokerId, host: r.host, port: r.port, rack: r.rack }, epoch, last: Date.now() });
    cb(null, proto.RegisterBrokerResponse.fromPartial({ brokerEpoch: BigInt(epoch), heartbeatIntervalMs, sessionTimeoutMs }));
  },
  brokerHeartbeat(call, cb) {
    const b = brokers.get(call.request.brokerId);
    if (b === undefined || BigInt(b.epoch) !== call.request.brokerEpoch) return cb(null, proto.BrokerHeartbeatResponse.fromPartial({ errorCode: proto.ErrorCode.STALE_BROKER_EPOCH }));
    b.last = Date.now();
    cb(null, proto.BrokerHeartbeatResponse.fromPartial({}));
  },
  describeCluster(call, cb) {
    const now = Date.now();
    cb(null, proto.DescribeClusterResponse.fromPartial({
      clusterId: "fake", controller: { brokerId: -1, host, port: Number(port) },
      brokers: [...brokers.values()].map((b) => ({ endpoint: b.endpoint, alive: now - b.last < sessionTimeoutMs, brokerEpoch: BigInt(b.epoch) })),
    }));
  },
});
const grpcPort = await bind();
log("controller listening", { grpcPort, httpPort, starts });
`;

const fakeBrokerSource = `${commonFake}
const id = Number(flag("id"));
server.addService(proto.BrokerServiceService, {
  metadata(call, cb) {
    const self = { brokerId: id, host, port: Number(port), rack: flag("rack") ?? "" };
    cb(null, proto.MetadataResponse.fromPartial({ clusterId: "fake", brokers: [self], topics: [
      { name: "fake-topic", partitions: [{ partition: 0, leaderId: id, leaderEpoch: starts, replicas: [id], isr: [id] }] },
    ] }));
  },
});
const grpcPort = await bind();
log("broker listening", { grpcPort, httpPort, starts });
const controller = new proto.ControllerServiceClient(flag("controller"), grpc.credentials.createInsecure());
const call = (method, req) => new Promise((res, rej) => controller[method](req, new grpc.Metadata(), { deadline: Date.now() + 1000 }, (e, r) => e ? rej(e) : res(r)));
let epoch;
async function register() {
  for (;;) {
    try {
      const r = await call("registerBroker", proto.RegisterBrokerRequest.fromPartial({ brokerId: id, host, port: Number(port), rack: flag("rack") ?? "" }));
      epoch = r.brokerEpoch;
      log("broker registered", { brokerEpoch: String(epoch) });
      return r.heartbeatIntervalMs;
    } catch { await new Promise((res) => setTimeout(res, 100)); }
  }
}
const interval = await register();
setInterval(async () => {
  try {
    const r = await call("brokerHeartbeat", proto.BrokerHeartbeatRequest.fromPartial({ brokerId: id, brokerEpoch: epoch }));
    if (r.errorCode !== 0) await register();
  } catch {}
}, interval);
`;

let fakeDir: string;
let fakes: Pick<ClusterOptions, "controllerEntry" | "brokerEntry" | "sessionTimeoutMs" | "heartbeatIntervalMs">;

beforeAll(() => {
  fakeDir = mkdtempSync(join(tmpdir(), "runnel-harness-fakes-"));
  writeFileSync(join(fakeDir, "controller.mjs"), fakeControllerSource);
  writeFileSync(join(fakeDir, "broker.mjs"), fakeBrokerSource);
  fakes = {
    controllerEntry: join(fakeDir, "controller.mjs"),
    brokerEntry: join(fakeDir, "broker.mjs"),
    sessionTimeoutMs: fakeSessionTimeoutMs,
    heartbeatIntervalMs: fakeHeartbeatIntervalMs,
  };
});

afterAll(() => {
  rmSync(fakeDir, { recursive: true, force: true });
});

/** Alive and not a zombie (an orphan's zombie lingers where pid 1 does not reap). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return procStateLetter(pid) !== "Z";
}


async function expectAllGone(pids: readonly number[], what: string): Promise<void> {
  await pollUntil(() => (pids.some(isRunning) ? undefined : true), {
    timeoutMs: 10_000,
    what: `${what}: pids [${pids.filter(isRunning).join(", ")}] still running`,
  });
}

function startsOf(cluster: Cluster, name: string): number {
  return Number(readFileSync(join(cluster.dir, name, "starts"), "utf8"));
}

describe("cluster harness (fake processes)", () => {
  it("starts a controller and brokers on distinct ports with their own data dirs, and close() leaves no process and no directory", async (ctx) => {
    const cluster = await startCluster({ brokers: 2, racks: ["r1", undefined], ...fakes });
    // Not tied to the test: this test checks that close() itself removes the directory.
    ctx.onTestFailed(() => cluster.close({ failed: true }));
    const described = await cluster.describe();
    const brokers = described.brokers.map((b) => [b.endpoint?.brokerId, b.alive, b.endpoint?.rack]).sort();
    expect(brokers).toEqual([
      [1, true, "r1"],
      [2, true, ""],
    ]);
    const addresses = [cluster.controllerAddress, ...cluster.bootstrap];
    expect(new Set(addresses).size).toBe(3);
    expect(cluster.bootstrap).toEqual([cluster.brokerAddress(1), cluster.brokerAddress(2)]);
    for (const a of addresses) expect(a).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(readFileSync(cluster.logPath(1), "utf8")).toContain('"msg":"broker registered"');
    expect(startsOf(cluster, "broker-1")).toBe(1);

    const pids = cluster.allPids();
    expect(pids).toHaveLength(3);
    expect(pids.every(isRunning)).toBe(true);
    await cluster.close();
    expect(pids.some(isRunning)).toBe(false);
    expect(existsSync(cluster.dir)).toBe(false);
  });

  it("kill() SIGKILLs a broker, the controller declares it dead, and restart() brings it back on the same port and data dir", async (ctx) => {
    const cluster = await startCluster({ brokers: 2, ...fakes });
    cluster.keepLogsOnFailure(ctx);
    const address = cluster.brokerAddress(2);
    const oldPid = cluster.pid(2)!;

    await cluster.kill(2);
    expect(isRunning(oldPid)).toBe(false);
    expect(cluster.state(2)).toBe("exited");
    expect(cluster.exitOf(2)?.signal).toBe("SIGKILL");
    expect(cluster.pid(2)).toBeUndefined();
    await cluster.waitForBrokersAlive(1);
    await cluster.waitForBrokerAlive(2, false);

    await cluster.restart(2);
    expect(cluster.pid(2)).not.toBe(oldPid);
    expect(cluster.brokerAddress(2)).toBe(address);
    expect(startsOf(cluster, "broker-2")).toBe(2);
    const described = await cluster.waitForBrokersAlive(2);
    expect(described.brokers.find((b) => b.endpoint?.brokerId === 2)?.endpoint?.port).toBe(Number(address.split(":")[1]));
    // The leader epoch of the fake's topic is its start count: metadata came from the new incarnation.
    const p = await cluster.waitForLeader("fake-topic", 0, (m) => m.leaderEpoch === 2, { timeoutMs: 5_000, preferBroker: 2 });
    expect(p.leaderId).toBe(2);

    // A killed controller comes back on the same address and the brokers are described again.
    await cluster.kill("controller");
    await expect(cluster.describe(500)).rejects.toThrow();
    await cluster.restart("controller");
    expect(startsOf(cluster, "controller")).toBe(2);
    await cluster.waitForBrokersAlive(2);
    await cluster.close();
  });

  it("pause() stops a process with SIGSTOP (it answers nothing, a paused broker is declared dead) and resume() continues it", async (ctx) => {
    const cluster = await startCluster({ brokers: 2, ...fakes });
    cluster.keepLogsOnFailure(ctx);

    await cluster.pause(1);
    expect(cluster.state(1)).toBe("paused");
    expect(procStateLetter(cluster.pid(1)!)).toBe("T");
    await cluster.resume(1);
    expect(procStateLetter(cluster.pid(1)!)).not.toBe("T");
    await cluster.pause(1);
    await expect(cluster.metadata([], { preferBroker: 1, timeoutMs: 500 })).resolves.toMatchObject({
      // Metadata skips a paused broker and asks a running one.
      brokers: [{ brokerId: 2 }],
    });
    await cluster.waitForBrokerAlive(1, false);
    await cluster.resume(1);
    expect(cluster.state(1)).toBe("running");
    await cluster.waitForBrokersAlive(2);

    await cluster.pause("controller");
    await expect(cluster.describe(300)).rejects.toThrow(/deadline/i);
    await cluster.resume("controller");
    await cluster.waitForBrokersAlive(2);
    await cluster.close();
  });

  it("stop() sends SIGTERM and waits for a clean exit; a process that ignores SIGTERM is killed at the deadline with an error", async (ctx) => {
    const cluster = await startCluster({ brokers: 2, brokerArgs: (id) => (id === 2 ? ["--ignore-sigterm"] : []), ...fakes });
    cluster.keepLogsOnFailure(ctx);

    const exit = await cluster.stop(1);
    expect(exit).toEqual({ exitCode: 0, signal: undefined });
    expect(readFileSync(cluster.logPath(1), "utf8")).toContain("stopping on SIGTERM");

    const stubborn = cluster.pid(2)!;
    await expect(cluster.stop(2, { timeoutMs: 500 })).rejects.toThrow(/broker-2 did not exit within 500 ms of SIGTERM/);
    expect(isRunning(stubborn)).toBe(false);

    // A paused process is continued after SIGTERM so it can act on it.
    await cluster.pause("controller");
    expect(await cluster.stop("controller")).toEqual({ exitCode: 0, signal: undefined });
    await cluster.close();
  });

  it("a broker that dies at start fails startCluster with its name, exit and log tail, keeps the logs and leaves no process", async () => {
    const error = await startCluster({ brokers: 2, brokerArgs: (id) => (id === 2 ? ["--crash-on-start"] : []), ...fakes }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(error?.message).toMatch(/broker 2 did not start listening: broker-2 exited \(exit code 3\)/);
    expect(error?.message).toContain("fake: crashing on purpose");
    expect(error).toBeInstanceOf(ClusterStartError);
    const failed = error as ClusterStartError;
    expect(error?.message).toContain(join(failed.dir, "broker-2.log"));
    expect(readFileSync(join(failed.dir, "broker-2.log"), "utf8")).toContain("fake: crashing on purpose");
    expect(failed.pids).toHaveLength(3);
    expect(failed.pids.some(isRunning)).toBe(false);
    rmSync(failed.dir, { recursive: true, force: true });
  });

  it("waits end at their deadline with a readable error", async (ctx) => {
    const cluster = await startCluster({ brokers: 2, ...fakes });
    cluster.keepLogsOnFailure(ctx);
    await expect(cluster.waitForBrokersAlive(3, { timeoutMs: 300 })).rejects.toThrow(
      /expected 3 alive brokers within 300 ms; alive brokers: \[1, 2\]; logs: .*runnel-test-/,
    );
    await cluster.kill(1);
    await expect(cluster.waitForBrokersAlive(2, { timeoutMs: 300 })).resolves.toBeDefined();
    await expect(cluster.waitForLeader("no-such-topic", 0, undefined, { timeoutMs: 300 })).rejects.toThrow(
      /no-such-topic-0 did not get a matching leader within 300 ms; topic no-such-topic partition 0 not in metadata/,
    );
    await cluster.kill("controller");
    await expect(cluster.waitForBrokerAlive(2, true, { timeoutMs: 300 })).rejects.toThrow(/broker 2 did not become alive within 300 ms; DescribeCluster never answered; last error: .*; logs: .*broker-2\.log/);
    await cluster.close();
  });

  it("close({ failed: true }) keeps the directory; keepLogsOnFailure() decides by the test's result", async () => {
    const a = await startCluster({ brokers: 0, ...fakes });
    await a.close({ failed: true });
    expect(existsSync(a.logPath("controller"))).toBe(true);
    rmSync(a.dir, { recursive: true, force: true });

    for (const state of ["fail", "pass"] as const) {
      const handlers: ((context: { task: { result?: { state?: string } } }) => unknown)[] = [];
      const cluster = await startCluster({ brokers: 0, ...fakes });
      cluster.keepLogsOnFailure({ onTestFinished: (h) => handlers.push(h) });
      const pid = cluster.pid("controller")!;
      await cluster.close(); // Kills now; the directory waits for the test's result.
      expect(isRunning(pid)).toBe(false);
      expect(existsSync(cluster.dir)).toBe(true);
      for (const h of handlers) await h({ task: { result: { state } } });
      expect(existsSync(cluster.dir)).toBe(state === "fail");
      rmSync(cluster.dir, { recursive: true, force: true });
    }
  });

  it("no process outlives the test process, whether it exits without close() or is SIGKILLed", async () => {
    const scriptDir = mkdtempSync(join(tmpdir(), "runnel-harness-orphans-"));
    try {
      const script = join(scriptDir, "start.mts");
      writeFileSync(
        script,
        `import { startCluster } from ${JSON.stringify(pathToFileURL(join(repoRoot, "cluster-tests", "src", "index.ts")).href)};
const cluster = await startCluster({ brokers: 1, ...JSON.parse(process.argv[3]!) });
console.log(JSON.stringify({ pids: cluster.allPids(), dir: cluster.dir }));
if (process.argv[2] === "exit") process.exit(0);
setInterval(() => {}, 1000);
`,
      );
      for (const mode of ["exit", "sigkill"] as const) {
        const child = execa(process.execPath, ["--import", "tsx", script, mode, JSON.stringify(fakes)], {
          cwd: repoRoot,
          reject: false,
          buffer: false,
          stderr: "inherit",
        });
        const firstLine = await new Promise<string>((resolve, reject) => {
          let text = "";
          child.stdout.on("data", (chunk: Buffer) => {
            text += chunk.toString("utf8");
            if (text.includes("\n")) resolve(text.slice(0, text.indexOf("\n")));
          });
          child.stdout.on("end", () => reject(new Error(`the ${mode} script printed no line: ${text}`)));
        });
        const started = JSON.parse(firstLine) as { pids: number[]; dir: string };
        expect(started.pids).toHaveLength(2);
        if (mode === "sigkill") {
          expect(started.pids.every(isRunning)).toBe(true);
          child.kill("SIGKILL");
        }
        await child;
        await expectAllGone(started.pids, `after the test process ${mode === "exit" ? "exited" : "was SIGKILLed"}`);
        rmSync(started.dir, { recursive: true, force: true });
      }
    } finally {
      rmSync(scriptDir, { recursive: true, force: true });
    }
  });
});


describe("cluster harness (the real controller, from controller/dist/main.js)", () => {
  it("starts the controller alone, and kill/restart/pause/resume/stop keep its address and data", async (ctx) => {
    const cluster = await startCluster({ brokers: 0, controllerEntry: defaultControllerEntry });
    ctx.onTestFailed(() => cluster.close({ failed: true }));
    const first = await cluster.describe();
    expect(first.brokers).toEqual([]);
    expect(first.controller?.port).toBe(Number(cluster.controllerAddress.split(":")[1]));

    await cluster.kill("controller");
    await expect(cluster.describe(500)).rejects.toThrow();
    await cluster.restart("controller");
    // The cluster id is fixed when the controller first starts: the restart found its data dir.
    expect((await cluster.describe()).clusterId).toBe(first.clusterId);

    await cluster.pause("controller");
    await expect(cluster.describe(300)).rejects.toThrow(/deadline/i);
    await cluster.resume("controller");
    expect((await cluster.describe()).clusterId).toBe(first.clusterId);

    expect(await cluster.stop("controller")).toEqual({ exitCode: 0, signal: undefined });
    await cluster.restart("controller");
    const pids = cluster.allPids();
    expect(pids).toHaveLength(3);
    await cluster.close();
    expect(pids.some(isRunning)).toBe(false);
    expect(existsSync(cluster.dir)).toBe(false);
  });
});
