// RabbitMQ as a bench peer: three Debian rabbitmq-server nodes on one host (distinct node names,
// ports, data dirs, one Erlang cookie, our own epmd on loopback, distribution bound to 127.0.0.1),
// started one by one so they form one cluster through classic peer discovery, and two targets on that cluster: a quorum queue and a stream
// queue, both with 3 replicas, published to with publisher confirms through amqplib. W4's three
// readers are three quorum queues bound to one fanout exchange (quorum) or three consumers of one
// stream from its first offset (stream). Readers ack in batches (multiple=true), with a prefetch.
// W5 (task queue) runs on the quorum target only: one quorum queue, competing consumers, each on its
// own connection with a prefetch and one manual ack per message (a stream queue has no per-message
// acknowledgement, so it is not a task queue).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import amqp from "amqplib";
import type { BenchProducer, BenchTarget, ConsumeHandle, StreamSpec, TargetCluster, TaskQueueTarget, TaskWorkerHandle } from "../target.js";
import { PeerUnavailableError } from "../target.js";
import { ensureInstalled, groupPidsNamed, spawnGroup, waitUntil, type GroupProcess } from "./procs.js";

const execFileAsync = promisify(execFile);
const rabbitBin = "/usr/lib/rabbitmq/bin";
export const rabbitNodeCount = 3;
// Away from 35672-35682, which rabbitmqctl itself uses for its Erlang distribution.
const amqpPortBase = 45670;
const distPortBase = 45680;
/** Our own epmd, so the nodes register nowhere else and nothing outlives the bench. */
const epmdPort = 14369;
const nodeStartTimeoutMs = 120_000;
const ctlTimeoutMs = 120_000;
/** Unacknowledged deliveries per reader; acks go every ackEveryMessages (multiple=true). */
const readerPrefetch = 2_000;
const ackEveryMessages = 500;

function nodeName(i: number): string {
  return `rabbit${i}@localhost`;
}

type Kind = "quorum" | "stream";

class RabbitTarget implements BenchTarget {
  readonly name: string;
  readonly settings: string;
  private readonly conns = new Set<amqp.ChannelModel>();
  readonly taskQueue: TaskQueueTarget | undefined;

  constructor(private readonly url: string, private readonly kind: Kind, private readonly nodes: GroupProcess[], private readonly runId: string) {
    this.taskQueue = kind === "quorum" ? this.quorumTaskQueue() : undefined;
    this.name = `RabbitMQ ${kind}`;
    this.settings =
      kind === "quorum"
        ? "rabbitmq-server 3.10 (Debian), 3 nodes on loopback, quorum queue with x-quorum-initial-group-size 3 (Raft); a publisher " +
          "confirm means a majority (2 of 3) has written and fsynced the message; amqplib with publisher confirms, window as for Runnel; " +
          `readers: prefetch ${readerPrefetch}, ack every ${ackEveryMessages} (multiple); W4: fanout exchange to 3 quorum queues`
        : "rabbitmq-server 3.10 (Debian), 3 nodes on loopback, stream queue with x-initial-cluster-size 3; a publisher confirm means a " +
          "majority has the message written to its segment file, not fsynced (streams leave flushing to the OS); amqplib with publisher " +
          `confirms; readers: x-stream-offset first, prefetch ${readerPrefetch}, ack every ${ackEveryMessages}; W4: 3 readers of one stream`;
  }

  private async open(): Promise<amqp.ChannelModel> {
    const c = await amqp.connect(this.url);
    c.on("error", () => undefined); // reported through the channel operations that fail
    this.conns.add(c);
    return c;
  }

  private async closeConn(c: amqp.ChannelModel): Promise<void> {
    this.conns.delete(c);
    await c.close().catch(() => undefined);
  }

  private queue(spec: StreamSpec, group: number): string {
    const base = `${this.kind}-${spec.label}-${this.runId}`;
    return this.kind === "quorum" && spec.groups > 1 ? `${base}-g${group}` : base;
  }

  private exchange(spec: StreamSpec): string {
    return `fanout-${spec.label}-${this.runId}`;
  }

  async createStream(spec: StreamSpec): Promise<void> {
    const c = await this.open();
    try {
      const ch = await c.createChannel();
      const args = this.kind === "quorum" ? { "x-queue-type": "quorum", "x-quorum-initial-group-size": rabbitNodeCount } : { "x-queue-type": "stream", "x-initial-cluster-size": rabbitNodeCount };
      if (this.kind === "quorum" && spec.groups > 1) {
        await ch.assertExchange(this.exchange(spec), "fanout", { durable: true });
        for (let g = 0; g < spec.groups; g++) {
          await ch.assertQueue(this.queue(spec, g), { durable: true, arguments: args });
          await ch.bindQueue(this.queue(spec, g), this.exchange(spec), "");
        }
      } else {
        await ch.assertQueue(this.queue(spec, 0), { durable: true, arguments: args });
      }
      await ch.close();
    } finally {
      await this.closeConn(c);
    }
  }

  async producer(spec: StreamSpec): Promise<BenchProducer> {
    const c = await this.open();
    const ch = await c.createConfirmChannel();
    const fanOut = this.kind === "quorum" && spec.groups > 1;
    const exchange = fanOut ? this.exchange(spec) : "";
    const routingKey = fanOut ? "" : this.queue(spec, 0);
    return {
      send: (value) =>
        new Promise<void>((resolve, reject) => {
          const body = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
          ch.publish(exchange, routingKey, body, { persistent: true }, (err: unknown) => (err === null || err === undefined ? resolve() : reject(err instanceof Error ? err : new Error(String(err)))));
        }),
      close: async () => {
        await ch.close().catch(() => undefined);
        await this.closeConn(c);
      },
    };
  }

  async consume(spec: StreamSpec, group: number, onRecord: (value: Uint8Array) => void): Promise<ConsumeHandle> {
    const c = await this.open();
    const ch = await c.createChannel();
    await ch.prefetch(readerPrefetch);
    let unacked = 0;
    const { consumerTag } = await ch.consume(
      this.queue(spec, group),
      (msg: amqp.ConsumeMessage | null) => {
        if (msg === null) return;
        onRecord(msg.content);
        unacked += 1;
        if (unacked >= ackEveryMessages) {
          ch.ack(msg, true);
          unacked = 0;
        }
      },
      { noAck: false, ...(this.kind === "stream" ? { arguments: { "x-stream-offset": "first" } } : {}) },
    );
    return {
      close: async () => {
        await ch.cancel(consumerTag).catch(() => undefined);
        await ch.close().catch(() => undefined);
        await this.closeConn(c);
      },
    };
  }

  private quorumTaskQueue(): TaskQueueTarget {
    const queueName = (spec: StreamSpec) => `tasks-${spec.label}-${this.runId}`;
    return {
      describe: (prefetch) =>
        `W5: one quorum queue (x-quorum-initial-group-size 3, publisher confirms for the preload); each worker its own ` +
        `connection and channel, prefetch ${prefetch}, one manual ack per message (acks are not answered by AMQP: a worker's ` +
        "last acks count once a checkQueue round trip on its channel after them has returned)",
      createQueue: async (spec) => {
        const c = await this.open();
        try {
          const ch = await c.createChannel();
          await ch.assertQueue(queueName(spec), { durable: true, arguments: { "x-queue-type": "quorum", "x-quorum-initial-group-size": rabbitNodeCount } });
          await ch.close();
        } finally {
          await this.closeConn(c);
        }
      },
      producer: async (spec) => {
        const c = await this.open();
        const ch = await c.createConfirmChannel();
        return {
          send: (value) =>
            new Promise<void>((resolve, reject) => {
              const body = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
              ch.publish("", queueName(spec), body, { persistent: true }, (err: unknown) => (err === null || err === undefined ? resolve() : reject(err instanceof Error ? err : new Error(String(err)))));
            }),
          close: async () => {
            await ch.close().catch(() => undefined);
            await this.closeConn(c);
          },
        };
      },
      worker: async (spec, _index, prefetch, onAccepted, onError): Promise<TaskWorkerHandle> => {
        const c = await this.open();
        const ch = await c.createChannel();
        let channelError: unknown;
        ch.on("error", (err: unknown) => {
          channelError ??= err;
          onError(err);
        });
        await ch.prefetch(prefetch);
        const { consumerTag } = await ch.consume(queueName(spec), (msg: amqp.ConsumeMessage | null) => {
          if (msg === null) return;
          ch.ack(msg);
          onAccepted(1);
        }, { noAck: false });
        return {
          settle: async () => {
            // The channel is ordered: once this answer is back, the server has every ack sent before it.
            await ch.checkQueue(queueName(spec));
            if (channelError !== undefined) throw channelError instanceof Error ? channelError : new Error(String(channelError));
          },
          close: async () => {
            await ch.cancel(consumerTag).catch(() => undefined);
            await ch.close().catch(() => undefined);
            await this.closeConn(c);
          },
        };
      },
    };
  }

  pids(): Map<string, number> {
    const out = new Map<string, number>();
    this.nodes.forEach((n, i) => {
      const beam = groupPidsNamed(n.pid, "beam.smp")[0];
      if (beam === undefined) throw new Error(`RabbitMQ node ${nodeName(i + 1)} has no running beam.smp`);
      out.set(`rabbit-${i + 1}`, beam);
    });
    return out;
  }

  async closeConnections(): Promise<void> {
    await Promise.allSettled([...this.conns].map((c) => this.closeConn(c)));
  }
}

/** Starts the 3-node cluster in `dir` (installing rabbitmq-server with apt-get when missing). */
export async function startRabbitMq(dir: string, log: (line: string) => void): Promise<TargetCluster> {
  ensureInstalled(join(rabbitBin, "rabbitmq-server"), ["rabbitmq-server"], log);
  const home = join(dir, "home");
  mkdirSync(home, { recursive: true });
  // One cookie for every node and for rabbitmqctl (read from $HOME/.erlang.cookie, mode 0400).
  writeFileSync(join(home, ".erlang.cookie"), `runnelbench${process.pid}`, { mode: 0o400 });
  const baseEnv: NodeJS.ProcessEnv = { ...process.env, HOME: home, ERL_EPMD_PORT: String(epmdPort), ERL_EPMD_ADDRESS: "127.0.0.1" };
  const procs: GroupProcess[] = [];
  const stopAll = () => Promise.allSettled([...procs].reverse().map((p) => p.stop()));
  const ctl = async (node: number, ...args: string[]) => {
    try {
      await execFileAsync(join(rabbitBin, "rabbitmqctl"), ["-n", nodeName(node), ...args], { env: baseEnv, timeout: ctlTimeoutMs });
    } catch (err) {
      throw new PeerUnavailableError(`rabbitmqctl -n ${nodeName(node)} ${args.join(" ")} failed: ${err instanceof Error ? err.message.split("\n").slice(0, 3).join(" ") : String(err)}`);
    }
  };
  try {
    const epmd = spawnGroup("epmd", ["-port", String(epmdPort), "-address", "127.0.0.1"], baseEnv, join(dir, "epmd.log"));
    procs.push(epmd);
    const nodes: GroupProcess[] = [];
    // await_startup fails at once while the node is not yet registered with epmd: retry until it waits.
    const awaitNode = async (i: number) => {
      let lastError: unknown;
      await waitUntil(`RabbitMQ node ${nodeName(i)} start-up`, async () => {
        if (nodes[i - 1]!.exited()) throw new PeerUnavailableError(`RabbitMQ node ${nodeName(i)} exited during start-up; see ${join(dir, `rabbit-${i}`, "server.log")}`);
        try {
          await ctl(i, "--timeout", String(nodeStartTimeoutMs / 1000), "await_startup");
          return true;
        } catch (err) {
          lastError = err;
          return false;
        }
      }, nodeStartTimeoutMs, 1_000).catch((err: unknown) => {
        throw new PeerUnavailableError(`${err instanceof Error ? err.message : String(err)}; last: ${String(lastError).slice(0, 300)}`);
      });
    };
    for (let i = 1; i <= rabbitNodeCount; i++) {
      const nodeDir = join(dir, `rabbit-${i}`);
      mkdirSync(join(nodeDir, "log"), { recursive: true });
      writeFileSync(join(nodeDir, "enabled_plugins"), "[].\n");
      // Classic peer discovery: a fresh node joins the listed nodes it can reach at boot. Nodes start
      // one after another, so node 1 forms the cluster and 2 and 3 join it (stop_app/join_cluster/
      // start_app instead failed here with the node's own AMQP port still bound: eaddrinuse).
      const peersConf = Array.from({ length: rabbitNodeCount }, (_, k) => `cluster_formation.classic_config.nodes.${k + 1} = ${nodeName(k + 1)}`);
      writeFileSync(join(nodeDir, "rabbitmq.conf"), ["loopback_users = none", "cluster_formation.peer_discovery_backend = classic_config", ...peersConf, ""].join("\n"));
      const env: NodeJS.ProcessEnv = {
        ...baseEnv,
        RABBITMQ_NODENAME: nodeName(i),
        RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
        RABBITMQ_NODE_PORT: String(amqpPortBase + i),
        RABBITMQ_DIST_PORT: String(distPortBase + i),
        RABBITMQ_MNESIA_BASE: join(nodeDir, "mnesia"),
        RABBITMQ_LOG_BASE: join(nodeDir, "log"),
        RABBITMQ_CONFIG_FILE: join(nodeDir, "rabbitmq.conf"),
        RABBITMQ_ADVANCED_CONFIG_FILE: join(nodeDir, "advanced.config"),
        RABBITMQ_ENABLED_PLUGINS_FILE: join(nodeDir, "enabled_plugins"),
        RABBITMQ_PLUGINS_EXPAND_DIR: join(nodeDir, "plugins-expand"),
        RABBITMQ_PID_FILE: join(nodeDir, "rabbit.pid"),
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
      };
      const p = spawnGroup(join(rabbitBin, "rabbitmq-server"), [], env, join(nodeDir, "server.log"), nodeDir);
      procs.push(p);
      nodes.push(p);
      await awaitNode(i);
    }
    const running = await execFileAsync(join(rabbitBin, "rabbitmqctl"), ["-n", nodeName(1), "eval", "length(rabbit_nodes:all_running())."], { env: baseEnv, timeout: ctlTimeoutMs })
      .then((r) => Number(r.stdout.trim()), () => Number.NaN);
    if (running !== rabbitNodeCount) throw new PeerUnavailableError(`RabbitMQ formed a cluster of ${running} running nodes, not ${rabbitNodeCount}; logs in ${dir}`);
    if (nodes.some((n) => n.exited())) throw new PeerUnavailableError(`a RabbitMQ node exited during start-up; logs in ${dir}`);
    const url = `amqp://guest:guest@127.0.0.1:${amqpPortBase + 1}`;
    // A fresh queue name per run: re-declaring a deleted quorum queue's name can fail with cluster_not_formed.
    const runId = Date.now().toString(36);
    const targets = [new RabbitTarget(url, "quorum", nodes, runId), new RabbitTarget(url, "stream", nodes, runId)];
    log(`RabbitMQ cluster up (${nodeName(1)}..${nodeName(rabbitNodeCount)}, AMQP on 127.0.0.1:${amqpPortBase + 1})`);
    return {
      system: "RabbitMQ",
      targets,
      close: async () => {
        await Promise.allSettled(targets.map((t) => t.closeConnections()));
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll();
    if (err instanceof PeerUnavailableError) throw err;
    throw new PeerUnavailableError(`RabbitMQ did not start: ${err instanceof Error ? err.message : String(err)} (logs in ${dir})`);
  }
}
