// A local Runnel cluster of real processes for tests: one controller and N brokers started from the
// built dist/ code, each on its own free ports and data directory under one temp dir, with process
// control (SIGKILL, SIGSTOP/SIGCONT, SIGTERM, restart on the same ports and data) and waits that end
// with a readable error naming the process and its log file.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { channelOptions } from "@runnel/common";
import {
  BrokerServiceClient,
  ErrorCode,
  ControllerServiceClient,
  type DescribeClusterResponse,
  type MetadataResponse,
  type PartitionMetadata,
} from "@runnel/proto";
import { describeExit, ManagedProcess, type ExitInfo, type ProcessState } from "./process.js";
import { callUnary, harnessRpcTimeoutMs } from "./rpc.js";
import { findFreePorts } from "./ports.js";
import { pollUntil } from "./wait.js";

/** Repository root: this file is <root>/cluster-tests/{src,dist}/harness/cluster.{ts,js}. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const defaultControllerEntry = join(repoRoot, "controller", "dist", "main.js");
export const defaultBrokerEntry = join(repoRoot, "broker", "dist", "main.js");

/** How long a process may take from spawn to "listening" (Node start-up on a loaded 2-core machine). */
export const processStartTimeoutMs = 20_000;
/** How long a broker may take from "listening" to registered and alive in DescribeCluster. */
export const brokerRegisterTimeoutMs = 15_000;
/** Default deadline of waitForBrokersAlive, waitForLeader and similar waits on cluster state. */
export const clusterWaitTimeoutMs = 20_000;
/** How long stop() waits after SIGTERM (brokers do a controlled shutdown first). */
export const stopTimeoutMs = 20_000;
/** How long the kernel may take to report a process stopped or continued after SIGSTOP/SIGCONT. */
export const signalDeliveryTimeoutMs = 5_000;
/** Largest cluster the harness starts (ports and memory on a test machine). */
export const maxBrokers = 16;

const host = "127.0.0.1";

/** A process of the cluster: a broker id, or "controller". */
export type ProcessId = number | "controller";

export interface ClusterOptions {
  /** Number of brokers, with ids 1..brokers. 0 starts the controller only. */
  brokers: number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** Extra broker flags, the same for all, or per broker id. */
  brokerArgs?: readonly string[] | ((brokerId: number) => readonly string[]);
  /** Extra controller flags. */
  controllerArgs?: readonly string[];
  /** racks[i] is the rack of broker i + 1 (none when undefined). */
  racks?: readonly (string | undefined)[];
  /** --log-level of every process; default RUNNEL_TEST_LOG_LEVEL or "info". */
  logLevel?: string;
  /** Entry points, for testing the harness itself or another build; default <repo>/{controller,broker}/dist/main.js. */
  controllerEntry?: string;
  brokerEntry?: string;
  /** Deadline for the whole start-up wait of each step; default processStartTimeoutMs. */
  startTimeoutMs?: number;
  /** Called with the Cluster before any process starts (ports are chosen): fault layers hook in here. */
  onCreated?: (cluster: Cluster) => void;
}

/** What restart() waits for before resolving. A broker restarted while the controller is down can only reach "listening". */
export type StartWait = "registered" | "listening" | "none";

/** The part of vitest's test context the harness uses (kept structural so src does not import vitest). */
export interface TestContextLike {
  onTestFinished(handler: (context: { task: { result?: { state?: string } } }) => unknown, timeout?: number): void;
}

interface BrokerSlot {
  id: number;
  grpcPort: number;
  httpPort: number;
  process: ManagedProcess;
}

export class Cluster {
  /** The cluster's temp dir: data dirs and one log file per process. */
  readonly dir: string;
  readonly controllerAddress: string;
  private readonly controller: ManagedProcess;
  private readonly brokers = new Map<number, BrokerSlot>();
  private readonly options: ClusterOptions;
  private readonly logLevel: string;
  private controllerClientInstance: ControllerServiceClient | undefined;
  private readonly brokerClients = new Map<number, BrokerServiceClient>();
  private closed = false;
  private attachedToTest = false;
  private dirRemoved = false;

  /** Use startCluster(); the constructor starts nothing. */
  constructor(dir: string, controllerPorts: { grpcPort: number; httpPort: number }, options: ClusterOptions) {
    this.dir = dir;
    this.options = options;
    this.logLevel = options.logLevel ?? process.env["RUNNEL_TEST_LOG_LEVEL"] ?? "info";
    this.controllerAddress = `${host}:${controllerPorts.grpcPort}`;
    const dataDir = join(dir, "controller");
    mkdirSync(dataDir, { recursive: true });
    const args = [
      "--listen", this.controllerAddress,
      "--http", `${host}:${controllerPorts.httpPort}`,
      "--data-dir", dataDir,
      "--log-level", this.logLevel,
      ...(options.sessionTimeoutMs === undefined ? [] : ["--session-timeout-ms", String(options.sessionTimeoutMs)]),
      ...(options.heartbeatIntervalMs === undefined ? [] : ["--heartbeat-interval-ms", String(options.heartbeatIntervalMs)]),
      ...(options.controllerArgs ?? []),
    ];
    this.controller = new ManagedProcess({
      name: "controller",
      entry: options.controllerEntry ?? defaultControllerEntry,
      args,
      logPath: join(dir, "controller.log"),
      cwd: repoRoot,
    });
  }

  /** Broker ids in ascending order (including stopped and killed ones). */
  get brokerIds(): number[] {
    return [...this.brokers.keys()].sort((a, b) => a - b);
  }

  /** Every broker's address (including stopped and killed ones), in id order. */
  get bootstrap(): string[] {
    return this.brokerIds.map((id) => this.brokerAddress(id));
  }

  brokerAddress(id: number): string {
    return `${host}:${this.broker(id).grpcPort}`;
  }

  brokerHttpAddress(id: number): string {
    return `${host}:${this.broker(id).httpPort}`;
  }

  logPath(id: ProcessId): string {
    return this.process(id).logPath;
  }

  /** The current pid, or undefined once exited. */
  pid(id: ProcessId): number | undefined {
    const p = this.process(id);
    return p.state === "exited" ? undefined : p.pid;
  }

  /** Every pid the cluster has started, for checking that none is left over. */
  allPids(): number[] {
    return [this.controller, ...[...this.brokers.values()].map((b) => b.process)].flatMap((p) => p.pidHistory);
  }

  state(id: ProcessId): ProcessState {
    return this.process(id).state;
  }

  /** How the last incarnation ended, or undefined while it runs. */
  exitOf(id: ProcessId): ExitInfo | undefined {
    return this.process(id).exit;
  }

  /** SIGKILL, and wait until the process is reaped. */
  async kill(id: ProcessId): Promise<void> {
    await this.process(id).kill();
  }

  /**
   * SIGSTOP: the process keeps its sockets but answers nothing, like a long GC pause or a frozen VM.
   * Resolves once the process is stopped.
   */
  pause(id: ProcessId): Promise<void> {
    return this.process(id).pause(signalDeliveryTimeoutMs);
  }

  /** SIGCONT after pause(); resolves once the process runs again. */
  resume(id: ProcessId): Promise<void> {
    return this.process(id).resume(signalDeliveryTimeoutMs);
  }

  /** SIGTERM (graceful; brokers do a controlled shutdown) and wait for exit; SIGKILL and throw after the deadline. */
  stop(id: ProcessId, options: { timeoutMs?: number } = {}): Promise<ExitInfo> {
    return this.process(id).stop(options.timeoutMs ?? stopTimeoutMs);
  }

  /**
   * Starts the process again with the same ports, flags and data dir. A running process is stopped
   * gracefully first (kill() it before for a crash restart). Waits for "registered" by default for a
   * broker (a new "broker registered" log line) and "listening" for the controller.
   */
  async restart(id: ProcessId, options: { wait?: StartWait; timeoutMs?: number } = {}): Promise<void> {
    const p = this.process(id);
    if (p.state !== "exited") await p.stop(stopTimeoutMs);
    await this.startProcess(id, options.wait ?? (id === "controller" ? "listening" : "registered"), options.timeoutMs);
  }

  /** Adds and starts a broker with a new id (default: one above the highest), waiting until it has registered. */
  async addBroker(options: { id?: number; rack?: string; wait?: StartWait } = {}): Promise<number> {
    this.assertOpen();
    const id = options.id ?? Math.max(0, ...this.brokers.keys()) + 1;
    if (this.brokers.has(id)) throw new Error(`broker ${id} already exists in this cluster`);
    const [grpcPort, httpPort] = await findFreePorts(2, host);
    this.createBroker(id, grpcPort!, httpPort!, options.rack);
    await this.startProcess(id, options.wait ?? "registered");
    return id;
  }

  /** DescribeCluster on the controller. */
  describe(timeoutMs = harnessRpcTimeoutMs): Promise<DescribeClusterResponse> {
    const client = this.controllerClient();
    return callUnary(client, client.describeCluster, {}, timeoutMs);
  }

  /**
   * Metadata from the first broker (in id order, starting from `preferBroker`) that is running and
   * answers. Throws with every broker's error if none does.
   */
  async metadata(topics: readonly string[] = [], options: { preferBroker?: number; timeoutMs?: number } = {}): Promise<MetadataResponse> {
    const order = this.brokerIds.filter((id) => this.broker(id).process.state === "running");
    if (options.preferBroker !== undefined && order.includes(options.preferBroker)) {
      order.splice(order.indexOf(options.preferBroker), 1);
      order.unshift(options.preferBroker);
    }
    if (order.length === 0) throw new Error("metadata: no broker is running");
    const errors: string[] = [];
    for (const id of order) {
      try {
        const client = this.brokerClient(id);
        return await callUnary(client, client.metadata, { topics: [...topics] }, options.timeoutMs ?? harnessRpcTimeoutMs);
      } catch (err) {
        errors.push(`broker ${id}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    throw new Error(`metadata: no broker answered (${errors.join("; ")})`);
  }

  /**
   * Waits until exactly `count` brokers are alive in DescribeCluster (so after a kill, waitForBrokersAlive(n - 1)
   * waits for the controller to notice). Returns the last DescribeCluster answer.
   */
  async waitForBrokersAlive(count: number, options: { timeoutMs?: number } = {}): Promise<DescribeClusterResponse> {
    let lastAlive: number[] | undefined;
    return pollUntil(
      async () => {
        const answer = await this.describe();
        lastAlive = aliveIds(answer);
        return lastAlive.length === count ? answer : undefined;
      },
      {
        timeoutMs: options.timeoutMs ?? clusterWaitTimeoutMs,
        what: () => (count === this.brokers.size && count > 0 ? this.missingBrokersText(lastAlive) : `expected ${count} alive brokers`),
        describeLast: () => (lastAlive === undefined ? "DescribeCluster never answered" : `alive brokers: [${lastAlive.join(", ")}]`),
        hint: () => `logs: ${this.dir}`,
      },
    );
  }

  /** Waits until broker `id` is alive (or, with alive false, not alive) in DescribeCluster. */
  async waitForBrokerAlive(id: number, alive = true, options: { timeoutMs?: number } = {}): Promise<DescribeClusterResponse> {
    this.broker(id);
    let lastAlive: number[] | undefined;
    return pollUntil(
      async () => {
        const answer = await this.describe();
        lastAlive = aliveIds(answer);
        return lastAlive.includes(id) === alive ? answer : undefined;
      },
      {
        timeoutMs: options.timeoutMs ?? clusterWaitTimeoutMs,
        what: alive ? `broker ${id} did not become alive` : `controller did not declare broker ${id} dead`,
        describeLast: () => (lastAlive === undefined ? "DescribeCluster never answered" : `alive brokers: [${lastAlive.join(", ")}]`),
        hint: () => `logs: ${this.logPath(id)} and ${this.logPath("controller")}`,
      },
    );
  }

  /**
   * Waits until broker metadata shows a leader for topic/partition that satisfies `predicate`
   * (e.g. `(p) => p.leaderId !== 2`). Returns that partition's metadata. Asks `preferBroker` first when given.
   */
  async waitForLeader(
    topic: string,
    partition: number,
    predicate: (p: PartitionMetadata) => boolean = () => true,
    options: { timeoutMs?: number; preferBroker?: number } = {},
  ): Promise<PartitionMetadata> {
    let last: string | undefined;
    return pollUntil(
      async () => {
        const answer = await this.metadata([topic], options.preferBroker === undefined ? {} : { preferBroker: options.preferBroker });
        const t = answer.topics.find((x) => x.name === topic);
        const p = t?.partitions.find((x) => x.partition === partition);
        last =
          p === undefined
            ? `topic ${topic} partition ${partition} not in metadata${t?.errorMessage ? ` (${t.errorMessage})` : ""}`
            : `last seen leader ${p.leaderId} epoch ${p.leaderEpoch} isr [${p.isr.join(", ")}]`;
        return p !== undefined && p.leaderId >= 0 && predicate(p) ? p : undefined;
      },
      {
        timeoutMs: options.timeoutMs ?? clusterWaitTimeoutMs,
        what: `${topic}-${partition} did not get a matching leader`,
        describeLast: () => last,
        hint: () => `logs: ${this.dir}`,
      },
    );
  }

  /**
   * Creates a topic through the controller (throwing with the controller's error when it refuses) and
   * waits until every partition has a leader, and with `fullIsr` until every replica is in sync.
   */
  async createTopic(topic: { name: string; partitions: number; replicationFactor: number; configs?: Record<string, string>; fullIsr?: boolean }): Promise<void> {
    const c = this.controllerClient();
    const res = await callUnary(c, c.createTopics, { topics: [{ name: topic.name, partitions: topic.partitions, replicationFactor: topic.replicationFactor, configs: topic.configs ?? {} }], validateOnly: false }, harnessRpcTimeoutMs);
    const result = res.topics[0];
    if (result === undefined || result.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      throw new Error(`creating topic ${topic.name} failed: ${result === undefined ? "no answer" : `${ErrorCode[result.errorCode]} ${result.errorMessage}`}`);
    }
    const replicas = topic.replicationFactor;
    for (let p = 0; p < topic.partitions; p++) await this.waitForLeader(topic.name, p, topic.fullIsr === true ? (m) => m.isr.length === replicas : () => true);
  }

  /** A generated client for the controller (created once, closed by close()). */
  controllerClient(): ControllerServiceClient {
    this.assertOpen();
    this.controllerClientInstance ??= new ControllerServiceClient(this.controllerAddress, grpc.credentials.createInsecure(), channelOptions);
    return this.controllerClientInstance;
  }

  /** A generated client for broker `id` (created once, closed by close()). */
  brokerClient(id: number): BrokerServiceClient {
    this.assertOpen();
    let client = this.brokerClients.get(id);
    if (client === undefined) {
      client = new BrokerServiceClient(this.brokerAddress(id), grpc.credentials.createInsecure(), channelOptions);
      this.brokerClients.set(id, client);
    }
    return client;
  }

  /**
   * Ties the cluster to a vitest test: when the test finishes the cluster is closed, and its temp dir is
   * kept (and its path printed) if the test failed or timed out. Call close() in the test as well if you
   * like; the decision about the directory is left to this hook.
   */
  keepLogsOnFailure(ctx: TestContextLike): void {
    this.attachedToTest = true;
    ctx.onTestFinished(async (context) => {
      await this.close({ failed: context.task.result?.state === "fail" });
    });
  }

  /**
   * SIGKILLs every process (by pid), closes clients and removes the temp dir, unless `failed` (or
   * RUNNEL_KEEP_TEST_DIRS is set), in which case the dir is kept and its path printed. Idempotent. When
   * the cluster is tied to a test with keepLogsOnFailure(), a close() without `failed` leaves the
   * directory to the test-finished hook.
   */
  async close(options: { failed?: boolean } = {}): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const all = [this.controller, ...[...this.brokers.values()].map((b) => b.process)];
      await Promise.all(all.map((p) => p.kill()));
      this.controllerClientInstance?.close();
      for (const client of this.brokerClients.values()) client.close();
      this.brokerClients.clear();
    }
    if (this.dirRemoved) return;
    if (options.failed === true || process.env["RUNNEL_KEEP_TEST_DIRS"] !== undefined) {
      console.error(`runnel cluster: kept data and logs in ${this.dir} (one <process>.log per process)`);
      this.dirRemoved = true; // Decided: keep it.
    } else if (options.failed === false || !this.attachedToTest) {
      rmSync(this.dir, { recursive: true, force: true });
      this.dirRemoved = true;
    }
  }

  /** @internal Starts the controller, then every broker; used by startCluster. */
  async startAll(brokerPorts: readonly { grpcPort: number; httpPort: number }[]): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? processStartTimeoutMs;
    await this.startProcess("controller", "listening", timeoutMs);
    brokerPorts.forEach((ports, i) => this.createBroker(i + 1, ports.grpcPort, ports.httpPort, this.options.racks?.[i]));
    await Promise.all(this.brokerIds.map((id) => this.startProcess(id, "registered", timeoutMs)));
    if (brokerPorts.length > 0) await this.waitForBrokersAlive(brokerPorts.length, { timeoutMs: brokerRegisterTimeoutMs });
  }

  private createBroker(id: number, grpcPort: number, httpPort: number, rack: string | undefined): void {
    const dataDir = join(this.dir, `broker-${id}`);
    mkdirSync(dataDir, { recursive: true });
    const extra = typeof this.options.brokerArgs === "function" ? this.options.brokerArgs(id) : (this.options.brokerArgs ?? []);
    const args = [
      "--id", String(id),
      "--listen", `${host}:${grpcPort}`,
      "--http", `${host}:${httpPort}`,
      "--data-dir", dataDir,
      "--controller", this.controllerAddress,
      "--log-level", this.logLevel,
      ...(rack === undefined ? [] : ["--rack", rack]),
      ...extra,
    ];
    const proc = new ManagedProcess({
      name: `broker-${id}`,
      entry: this.options.brokerEntry ?? defaultBrokerEntry,
      args,
      logPath: join(this.dir, `broker-${id}.log`),
      cwd: repoRoot,
    });
    this.brokers.set(id, { id, grpcPort, httpPort, process: proc });
  }

  private async startProcess(id: ProcessId, wait: StartWait, timeoutMs = processStartTimeoutMs): Promise<void> {
    this.assertOpen();
    const p = this.process(id);
    p.start();
    if (wait === "none") return;
    const label = id === "controller" ? "controller" : `broker ${id}`;
    const expectedPort = id === "controller" ? Number(this.controllerAddress.split(":")[1]) : this.broker(id).grpcPort;
    const listening = await p.waitForLog(id === "controller" ? "controller listening" : "broker listening", {
      timeoutMs,
      what: `${label} did not start listening`,
    });
    if (listening["grpcPort"] !== expectedPort) {
      throw new Error(`${label} listens on gRPC port ${String(listening["grpcPort"])}, not the ${expectedPort} it was given; ${p.logHint()}`);
    }
    if (id !== "controller" && wait === "registered") {
      await p.waitForLog("broker registered", { timeoutMs: brokerRegisterTimeoutMs, what: `${label} did not register` });
    }
  }

  private missingBrokersText(lastAlive: number[] | undefined): string {
    const alive = lastAlive ?? [];
    const missing = this.brokerIds.filter((id) => !alive.includes(id));
    return missing.length === 1 ? `broker ${missing[0]} did not register` : `brokers ${missing.join(", ")} did not register`;
  }

  private process(id: ProcessId): ManagedProcess {
    return id === "controller" ? this.controller : this.broker(id).process;
  }

  private broker(id: number): BrokerSlot {
    const slot = this.brokers.get(id);
    if (slot === undefined) throw new Error(`no broker ${id} in this cluster (brokers: ${this.brokerIds.join(", ") || "none"})`);
    return slot;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`cluster ${this.dir} is closed`);
  }
}

/**
 * Starts a controller and `options.brokers` brokers (ids 1..N) and waits until every broker is alive
 * in DescribeCluster. If start-up fails, everything started is killed, the temp dir is kept, and the
 * error says where the logs are.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  if (!Number.isInteger(options.brokers) || options.brokers < 0 || options.brokers > maxBrokers) {
    throw new RangeError(`brokers must be an integer in 0..${maxBrokers}, not ${options.brokers}`);
  }
  const dir = mkdtempSync(join(tmpdir(), "runnel-test-"));
  const ports = await findFreePorts(2 + 2 * options.brokers, host);
  const cluster = new Cluster(dir, { grpcPort: ports[0]!, httpPort: ports[1]! }, options);
  options.onCreated?.(cluster);
  const brokerPorts = Array.from({ length: options.brokers }, (_, i) => ({ grpcPort: ports[2 + 2 * i]!, httpPort: ports[3 + 2 * i]! }));
  try {
    await cluster.startAll(brokerPorts);
  } catch (err) {
    await cluster.close({ failed: true });
    throw new ClusterStartError(err instanceof Error ? err.message : String(err), dir, cluster.allPids(), { cause: err });
  }
  return cluster;
}

/** startCluster failed; everything it started has been killed and `dir` (logs, data) is kept. */
export class ClusterStartError extends Error {
  override name = "ClusterStartError";
  constructor(
    message: string,
    /** The kept temp dir with one log per process. */
    readonly dir: string,
    /** Every pid that was started (all killed and reaped by now). */
    readonly pids: readonly number[],
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * startCluster for a vitest test: the cluster is closed when the test finishes and its logs are kept
 * if it failed. Usage: `it("...", async (ctx) => { const cluster = await startClusterForTest(ctx, { brokers: 3 }); ... })`.
 */
export async function startClusterForTest(ctx: TestContextLike, options: ClusterOptions): Promise<Cluster> {
  const cluster = await startCluster(options);
  cluster.keepLogsOnFailure(ctx);
  return cluster;
}

function aliveIds(answer: DescribeClusterResponse): number[] {
  return answer.brokers
    .filter((b) => b.alive)
    .map((b) => b.endpoint?.brokerId ?? -1)
    .sort((a, b) => a - b);
}


