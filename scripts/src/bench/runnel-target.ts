// Runnel as a bench target: a fresh local cluster (controller + 3 brokers from the built dist/) and
// two targets on it that differ only in the topic's durability (fsync: acks=all waits for every
// in-sync replica's fsync; memory: Kafka's trade, replicated in memory and flushed in the background).
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Runnel, type ConsumerRecord } from "@runnel/client";
import { startCluster, type Cluster, type ProcessId } from "@runnel/cluster-tests";
import type { W5Api } from "./options.js";
import type { BenchProducer, BenchTarget, ConsumeHandle, StreamSpec, TargetCluster, TaskQueueTarget, TaskWorkerHandle } from "./target.js";

export const brokerCount = 3;
/** How long to wait for a new topic's partitions to have a leader and a full ISR. */
const topicReadyTimeoutMs = 30_000;
/** How long a group consumer may take to join and be assigned every partition. */
const groupAssignTimeoutMs = 30_000;
const assignPollMs = 50;
/** W5 share-consumer workers wait at most this long per poll (they are stopped by wakeup()). */
const w5PollTimeoutMs = 1_000;
/** W5 tasks-API workers: how often the bench reads a worker's stats.accepted. */
const w5StatsPollMs = 5;
/** W5 workers close within this long (the jobs are done by then; a no-op handler). */
const w5WorkerCloseTimeoutMs = 10_000;

export interface RunnelTargetOptions {
  partitions: number;
  /** W5: share consumers accepting each record, or task workers with a no-op handler. */
  w5Api: W5Api;
  maxInFlightPerPartition: number | undefined;
  /** When set, every cluster process writes a V8 CPU profile here (see cpu-profile-preload.ts). */
  profileDir: string | undefined;
  log: (line: string) => void;
  /** Called as soon as the cluster exists (to close it on Ctrl-C). */
  onCluster: (cluster: Cluster) => void;
}

function topicName(spec: StreamSpec, durability: string): string {
  return `bench-${spec.label}-${durability}`;
}

class RunnelTarget implements BenchTarget {
  readonly name: string;
  readonly settings: string;
  readonly taskQueue: TaskQueueTarget | undefined;
  constructor(
    private readonly cluster: Cluster,
    private readonly runnel: Runnel,
    private readonly durability: "fsync" | "memory",
    private readonly options: RunnelTargetOptions,
  ) {
    // W5's goal is for the safe default, like RabbitMQ's quorum queue it is compared with.
    this.taskQueue = durability === "fsync" ? new RunnelTaskQueue(cluster, runnel, options.w5Api) : undefined;
    this.name = `Runnel ${durability}`;
    this.settings =
      `${options.partitions} partitions, replication factor 3, min.insync.replicas 2, acks all, durability=${durability} ` +
      (durability === "fsync" ? "(acknowledged once every in-sync replica has fsynced the batch, group commit)" : "(acknowledged once every in-sync replica has the batch in memory; flushed in the background)") +
      "; one idempotent producer of @runnel/client, consumers of @runnel/client (W4: three consumer groups)";
  }

  async createStream(spec: StreamSpec): Promise<void> {
    const topic = topicName(spec, this.durability);
    await this.runnel.admin().createTopic({ name: topic, partitions: this.options.partitions, replicationFactor: brokerCount, configs: { "min.insync.replicas": "2", durability: this.durability } });
    for (let p = 0; p < this.options.partitions; p++) {
      await this.cluster.waitForLeader(topic, p, (m) => m.isr.length === brokerCount, { timeoutMs: topicReadyTimeoutMs });
    }
    await this.runnel.metadata.refresh([topic]);
  }

  async producer(spec: StreamSpec): Promise<BenchProducer> {
    const topic = topicName(spec, this.durability);
    const mif = this.options.maxInFlightPerPartition;
    const producer = this.runnel.producer({ acks: "all", ...(mif === undefined ? {} : { maxInFlightPerPartition: mif }) });
    return { send: (value) => producer.send({ topic, value }), close: () => producer.close() };
  }

  async consume(spec: StreamSpec, group: number, onRecord: (value: Uint8Array) => void): Promise<ConsumeHandle> {
    const topic = topicName(spec, this.durability);
    const deliver = (r: ConsumerRecord) => {
      if (r.value !== null) onRecord(r.value);
    };
    if (spec.groups === 1) {
      // One reader: assign every partition (no group coordination on the read path).
      const consumer = this.runnel.consumer({ resetPolicy: "earliest" });
      const tps = Array.from({ length: this.options.partitions }, (_, partition) => ({ topic, partition }));
      consumer.assign(tps);
      for (const tp of tps) consumer.seek(tp, "earliest");
      const loop = (async () => {
        for await (const r of consumer) deliver(r);
      })();
      return { close: async () => { await consumer.close(); await loop.catch(() => undefined); } };
    }
    const consumer = this.runnel.groupConsumer({ groupId: `${topic}-g${group}`, topics: [topic], resetPolicy: "earliest" });
    const loop = (async () => {
      for await (const r of consumer) deliver(r);
    })();
    const deadline = Date.now() + groupAssignTimeoutMs;
    while (consumer.assignment().length < this.options.partitions) {
      if (Date.now() > deadline) {
        await consumer.close();
        throw new Error(`group ${topic}-g${group} was not assigned all ${this.options.partitions} partitions within ${groupAssignTimeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, assignPollMs));
    }
    return { close: async () => { await consumer.close(); await loop.catch(() => undefined); } };
  }

  pids(): Map<string, number> {
    const pids = new Map<string, number>();
    const ids: ProcessId[] = ["controller", ...this.cluster.brokerIds];
    for (const id of ids) {
      const pid = this.cluster.pid(id);
      if (pid === undefined) throw new Error(`${id === "controller" ? "controller" : `broker ${id}`} is not running; logs in ${this.cluster.dir}`);
      pids.set(id === "controller" ? "controller" : `broker-${id}`, pid);
    }
    return pids;
  }
}

/** W5 on one fsync partition: the jobs' topic, a preloading producer, and workers with their own clients. */
class RunnelTaskQueue implements TaskQueueTarget {
  constructor(private readonly cluster: Cluster, private readonly runnel: Runnel, private readonly api: W5Api) {}

  private topic(spec: StreamSpec): string {
    return `bench-${spec.label}-tasks`;
  }

  describe(prefetch: number): string {
    const how = this.api === "share"
      ? `runnel.shareConsumer (maxInFlightRecords ${prefetch}, poll then acknowledge(record, "accept") per record)`
      : `runnel.tasks.worker (no-op handler, concurrency ${prefetch})`;
    return `W5: a topic of 1 partition, replication factor 3, min.insync.replicas 2, durability=fsync, preloaded by one ` +
      `acks=all producer; each worker its own client and ${how}; a job counts once the leader has answered its ` +
      "acceptance (share state written to the controller's disk first)";
  }

  async createQueue(spec: StreamSpec): Promise<void> {
    const topic = this.topic(spec);
    await this.runnel.admin().createTopic({ name: topic, partitions: 1, replicationFactor: brokerCount, configs: { "min.insync.replicas": "2", durability: "fsync" } });
    await this.cluster.waitForLeader(topic, 0, (m) => m.isr.length === brokerCount, { timeoutMs: topicReadyTimeoutMs });
    await this.runnel.metadata.refresh([topic]);
  }

  async producer(spec: StreamSpec): Promise<BenchProducer> {
    const topic = this.topic(spec);
    const producer = this.runnel.producer({ acks: "all" });
    // Task workers parse the value as JSON: give them a JSON document of the same size.
    let json: Uint8Array | undefined;
    const jsonOf = (bytes: number) => (json ??= Buffer.from(JSON.stringify({ data: "x".repeat(Math.max(0, bytes - 11)) })));
    return {
      send: (value) => producer.send({ topic, value: this.api === "tasks" ? jsonOf(value.byteLength) : value }),
      close: () => producer.close(),
    };
  }

  async worker(spec: StreamSpec, index: number, prefetch: number, onAccepted: (n: number) => void, onError: (err: unknown) => void): Promise<TaskWorkerHandle> {
    const topic = this.topic(spec);
    const client = new Runnel({ bootstrap: this.cluster.bootstrap, clientId: `runnel-bench-w5-${index}` });
    await client.connect();
    return this.api === "share" ? shareWorker(client, topic, prefetch, onAccepted, onError) : taskWorker(client, topic, prefetch, onAccepted, onError);
  }
}

function shareWorker(client: Runnel, topic: string, prefetch: number, onAccepted: (n: number) => void, onError: (err: unknown) => void): TaskWorkerHandle {
  const consumer = client.shareConsumer({ groupId: `${topic}.workers`, topics: [topic], maxInFlightRecords: prefetch });
  let stopped = false;
  let failure: unknown;
  const fail = (err: unknown) => {
    failure ??= err;
    onError(err);
  };
  const loop = (async () => {
    while (!stopped) {
      for (const r of await consumer.poll({ maxRecords: prefetch, timeoutMs: w5PollTimeoutMs })) {
        // Counted when the leader has answered (after the share state is on the controller's disk).
        void consumer.acknowledge(r, "accept").then((res) => (res.error === undefined ? onAccepted(1) : fail(res.error)));
      }
    }
  })().catch((err: unknown) => {
    if (!stopped) fail(err);
  });
  return {
    settle: async () => {
      const results = await consumer.flush();
      failure ??= results.find((r) => r.error !== undefined)?.error;
      if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
    },
    close: async () => {
      stopped = true;
      consumer.wakeup();
      await consumer.close().catch(() => undefined);
      await loop;
      await client.close().catch(() => undefined);
    },
  };
}

function taskWorker(client: Runnel, topic: string, prefetch: number, onAccepted: (n: number) => void, onError: (err: unknown) => void): TaskWorkerHandle {
  // The worker recovers from failed polls by itself and reports them to onError; the bench stops on
  // the first one (nothing should fail here), as it does for the share consumer.
  const worker = client.tasks.worker(topic, async () => undefined, { concurrency: prefetch, groupId: `${topic}.workers`, onError });
  // stats.accepted counts acceptances the leader has answered; report its growth.
  let reported = 0;
  const report = () => {
    const n = worker.stats.accepted - reported;
    reported += n;
    if (n > 0) onAccepted(n);
  };
  const timer = setInterval(report, w5StatsPollMs);
  return {
    settle: async () => {
      report();
      const { released, deadLettered } = worker.stats;
      if (released + deadLettered > 0) throw new Error(`W5 worker on ${topic}: ${released} jobs released and ${deadLettered} dead-lettered by a no-op handler`);
    },
    close: async () => {
      clearInterval(timer);
      await worker.close({ timeoutMs: w5WorkerCloseTimeoutMs }).catch(() => undefined);
      await client.close().catch(() => undefined);
    },
  };
}

/** Starts the cluster; close() stops it gracefully first when profiling (profiles are written on exit). */
export async function startRunnelTargets(options: RunnelTargetOptions): Promise<TargetCluster & { cluster: Cluster }> {
  const savedNodeOptions = process.env["NODE_OPTIONS"];
  if (options.profileDir !== undefined) {
    // The harness starts processes with this process's environment, so this reaches the cluster only
    // (this process has already started). Node 20 refuses --cpu-prof in NODE_OPTIONS, hence a preload.
    const preload = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), "cpu-profile-preload.js")).href;
    process.env["NODE_OPTIONS"] = `${savedNodeOptions ?? ""} --import ${preload}`.trim();
    process.env["RUNNEL_BENCH_PROFILE_DIR"] = options.profileDir;
  }
  options.log(`starting Runnel: controller + ${brokerCount} brokers ...`);
  let cluster: Cluster;
  try {
    cluster = await startCluster({ brokers: brokerCount, logLevel: "info" });
  } finally {
    if (savedNodeOptions === undefined) delete process.env["NODE_OPTIONS"];
    else process.env["NODE_OPTIONS"] = savedNodeOptions;
  }
  options.onCluster(cluster);
  options.log(`cluster up in ${cluster.dir}`);
  const runnel = new Runnel({ bootstrap: cluster.bootstrap, clientId: "runnel-bench" });
  await runnel.connect();
  return {
    system: "Runnel",
    cluster,
    targets: [new RunnelTarget(cluster, runnel, "fsync", options), new RunnelTarget(cluster, runnel, "memory", options)],
    close: async () => {
      await runnel.close().catch(() => undefined);
      if (options.profileDir !== undefined) {
        // --cpu-prof writes on a normal exit only: stop gracefully before close() SIGKILLs.
        for (const id of cluster.brokerIds) await cluster.stop(id);
        await cluster.stop("controller");
      }
    },
  };
}
