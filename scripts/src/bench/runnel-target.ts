// Runnel as a bench target: a fresh local cluster (controller + 3 brokers from the built dist/) and
// two targets on it that differ only in the topic's durability (fsync: acks=all waits for every
// in-sync replica's fsync; memory: Kafka's trade, replicated in memory and flushed in the background).
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Runnel, type ConsumerRecord } from "@runnel/client";
import { startCluster, type Cluster, type ProcessId } from "@runnel/cluster-tests";
import type { BenchProducer, BenchTarget, ConsumeHandle, StreamSpec, TargetCluster } from "./target.js";

export const brokerCount = 3;
/** How long to wait for a new topic's partitions to have a leader and a full ISR. */
const topicReadyTimeoutMs = 30_000;
/** How long a group consumer may take to join and be assigned every partition. */
const groupAssignTimeoutMs = 30_000;
const assignPollMs = 50;

export interface RunnelTargetOptions {
  partitions: number;
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
  constructor(
    private readonly cluster: Cluster,
    private readonly runnel: Runnel,
    private readonly durability: "fsync" | "memory",
    private readonly options: RunnelTargetOptions,
  ) {
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
