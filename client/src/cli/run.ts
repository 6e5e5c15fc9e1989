// The `runnel` command's core, as a function of (argv, stdin, stdout, stderr, env) returning an exit
// code, so tests run it in-process against fake servers. Human-readable tables by default, one JSON
// object per line with --json. Every failure is one actionable line on stderr and a non-zero exit:
// 2 for a usage mistake (bad flag or value), 1 for anything the cluster answered or could not.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { notBeforeHeader } from "@runnel/proto";
import { createInterface } from "node:readline";
import { Runnel } from "../client.js";
import type { ConsumerRecord } from "../consumer/index.js";
import { ConnectionError, GroupError, RunnelError, TopicAlreadyExistsError, UnknownTopicError } from "../errors/index.js";
import type { OffsetQuery } from "../metadata/offsets.js";
import type { Acks, RecordMetadata } from "../producer/index.js";

export const defaultBootstrap = "127.0.0.1:7401";
/** Records produced but not yet printed/acknowledged before the CLI waits (bounds memory on big inputs). */
export const cliMaxPendingRecords = 10_000;
/** How often progress is printed while producing, in milliseconds. */
export const progressIntervalMs = 1000;
/** Deadline of CLI requests, in milliseconds: a person is waiting. */
export const cliRequestTimeoutMs = 10_000;
/** `consume --share-group`: most records held unacknowledged at once, and the longest single poll. */
export const shareCliMaxInFlightRecords = 500;
export const shareCliPollMs = 1_000;

export interface CliOutput {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface CliIo {
  stdin: NodeJS.ReadableStream;
  stdout: CliOutput;
  stderr: CliOutput;
  env: Record<string, string | undefined>;
  /** Aborting stops a running consume or produce cleanly (Ctrl-C). */
  signal?: AbortSignal;
}

/** A mistake in how the command was called; exit code 2. */
class UsageError extends Error {}

interface GlobalOptions {
  bootstrap?: string;
  json?: boolean;
}

/** JSON with bigints as plain numbers. */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `\u0000big:${v}` : v)).replace(/"\\u0000big:(-?\d+)"/g, "$1") + "\n";
}

/** Aligned columns for people. */
export function table(header: string[], rows: Array<Array<string | number | bigint | boolean>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}

function positiveInt(flag: string, min = 1) {
  return (text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < min || !Number.isSafeInteger(Number(text))) {
      throw new InvalidArgumentError(`${flag} must be an integer >= ${min}, got "${text}"`);
    }
    return Number(text);
  };
}

function offsetArg(text: string): bigint {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError(`--offset must be an offset >= 0, got "${text}"`);
  return BigInt(text);
}

function collectConfig(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`--config takes key=value, got "${text}"`);
  return { ...previous, [text.slice(0, eq)]: text.slice(eq + 1) };
}

function collectList(text: string, previous: string[] = []): string[] {
  return [...previous, text];
}

function timeArg(text: string): OffsetQuery {
  if (text === "earliest" || text === "latest") return text;
  if (/^\d+$/.test(text)) return { timestamp: Number(text) };
  throw new InvalidArgumentError(`--time must be earliest, latest or milliseconds since the epoch, got "${text}"`);
}

function acksArg(text: string): Acks {
  if (text === "all" || text === "-1") return "all";
  if (text === "1" || text === "leader") return "leader";
  if (text === "0" || text === "none") return "none";
  throw new InvalidArgumentError(`--acks must be all, 1 or 0, got "${text}"`);
}

function describeError(err: unknown, bootstrap: string): string {
  if (err instanceof ConnectionError) return `cannot reach the cluster at ${bootstrap} (is it running? try npm start)`;
  if (err instanceof UnknownTopicError && err.topic !== undefined) {
    return err.partition === undefined ? `topic "${err.topic}" does not exist` : `topic "${err.topic}" has no partition ${err.partition}`;
  }
  if (err instanceof TopicAlreadyExistsError && err.topic !== undefined) return `topic "${err.topic}" already exists`;
  if (err instanceof RunnelError && /does not implement (shareFetch|shareAcknowledge|shareGroupHeartbeat|describeShareGroups)/.test(err.message)) {
    return `${err.message.split(":")[0]} (the cluster runs a version without share groups; upgrade the brokers and controller)`;
  }
  if (err instanceof GroupError && err.codeName === "GROUP_ID_NOT_FOUND") return `${err.message} (list share groups with: runnel share list)`;
  if (err instanceof RunnelError) return err.message;
  if (err instanceof Error) return `unexpected error: ${err.message}`;
  return `unexpected error: ${String(err)}`;
}

/** A timer that resolves "timeout" after `ms` (or on abort); cancel() releases its timer and listener. */
function idleTimer(ms: number, signal?: AbortSignal): { done: Promise<"timeout">; cancel(): void } {
  let cancel = () => {};
  const done = new Promise<"timeout">((resolve) => {
    const fire = () => {
      cancel();
      resolve("timeout");
    };
    const timer = setTimeout(fire, ms);
    signal?.addEventListener("abort", fire, { once: true });
    cancel = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", fire);
    };
  });
  return { done, cancel };
}

function aborted(signal?: AbortSignal): Promise<"aborted"> {
  return new Promise((resolve) => {
    if (signal === undefined) return;
    if (signal.aborted) resolve("aborted");
    signal.addEventListener("abort", () => resolve("aborted"), { once: true });
  });
}

/** Runs `runnel <argv...>` (argv without the program name); resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const out = (s: string) => io.stdout.write(s);
  const err = (s: string) => io.stderr.write(s);
  let client: Runnel | undefined;
  let bootstrap = io.env.RUNNEL_BOOTSTRAP ?? defaultBootstrap;
  let exitCode = 0;

  const program = new Command("runnel")
    .description("Runnel command-line client: topics, producing, consuming, groups, share groups, dead letters, cluster status.")
    .option("--bootstrap <host:port[,host:port]>", "brokers to bootstrap from (env RUNNEL_BOOTSTRAP)", io.env.RUNNEL_BOOTSTRAP ?? defaultBootstrap)
    .option("--json", "print one JSON object per line")
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({
      writeOut: out,
      writeErr: err,
      outputError: (text, write) => write(`runnel: ${text.replace(/^error: /, "").trim()}\n`),
    });

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const connect = async (): Promise<Runnel> => {
    bootstrap = globals().bootstrap ?? bootstrap;
    try {
      client = new Runnel({ bootstrap, clientId: "runnel-cli", requestTimeoutMs: cliRequestTimeoutMs, retry: { maxTotalMs: cliRequestTimeoutMs } });
    } catch (e) {
      throw new UsageError(`--bootstrap: ${e instanceof Error ? e.message : String(e)}`);
    }
    await client.connect(); // fail fast with one clear line when nothing answers
    return client;
  };

  // --- cluster -----------------------------------------------------------------------------------
  const cluster = program.command("cluster").description("cluster commands");
  cluster.command("status").description("controller, brokers and partition counts").action(async () => {
    const c = await connect();
    const d = await c.admin().describeCluster();
    const controller = d.controller === undefined ? "unknown" : `${d.controller.host}:${d.controller.port}`;
    if (globals().json) {
      out(jsonLine({
        clusterId: d.clusterId, controller, metadataVersion: d.metadataVersion,
        brokers: d.brokers.map((b) => ({ id: b.brokerId, address: `${b.host}:${b.port}`, alive: b.alive, leaders: b.leaderCount, replicas: b.replicaCount })),
        topics: d.topicCount, partitions: d.partitionCount, offlinePartitions: d.offlinePartitionCount, underReplicatedPartitions: d.underReplicatedPartitionCount,
      }));
      return;
    }
    out(`cluster ${d.clusterId}  controller ${controller}\n`);
    out(table(["BROKER", "ADDRESS", "ALIVE", "LEADERS", "REPLICAS"], d.brokers.map((b) => [b.brokerId, `${b.host}:${b.port}`, b.alive ? "yes" : "no", b.leaderCount, b.replicaCount])));
    out(`topics ${d.topicCount}  partitions ${d.partitionCount}  offline ${d.offlinePartitionCount}  under-replicated ${d.underReplicatedPartitionCount}\n`);
  });

  // --- topic -------------------------------------------------------------------------------------
  const topic = program.command("topic").description("topic commands");
  topic.command("create <name>").description("create a topic")
    .option("--partitions <n>", "partition count", positiveInt("--partitions"))
    .option("--replication-factor <r>", "replicas per partition", positiveInt("--replication-factor"))
    .option("--config <key=value>", "configuration override (repeatable)", collectConfig)
    .action(async (name: string, o: { partitions?: number; replicationFactor?: number; config?: Record<string, string> }) => {
      const c = await connect();
      const { topicId } = await c.admin().createTopic({ name, partitions: o.partitions, replicationFactor: o.replicationFactor, configs: o.config });
      const info = await c.admin().describeTopic(name).catch(() => undefined);
      const partitions = info?.partitions.length ?? o.partitions ?? 1;
      if (globals().json) out(jsonLine({ topic: name, topicId, partitions }));
      else out(`created topic "${name}" with ${partitions} partition${partitions === 1 ? "" : "s"}\n`);
    });
  topic.command("list").description("list topics").action(async () => {
    const c = await connect();
    const topics = await c.admin().describeTopics();
    if (globals().json) for (const t of topics) out(jsonLine({ topic: t.name, partitions: t.partitions.length }));
    else if (topics.length === 0) out("no topics\n");
    else out(table(["TOPIC", "PARTITIONS"], topics.map((t) => [t.name, t.partitions.length])));
  });
  topic.command("describe <name>").description("partitions, leaders, replicas, ISR and configuration").action(async (name: string) => {
    const c = await connect();
    const t = await c.admin().describeTopic(name);
    if (globals().json) {
      out(jsonLine({
        topic: t.name, topicId: t.topicId, configs: t.configs,
        partitions: t.partitions.map((p) => ({ partition: p.partition, leader: p.leaderId, leaderEpoch: p.leaderEpoch, replicas: p.replicas, isr: p.isr, offlineReplicas: p.offlineReplicas })),
      }));
      return;
    }
    out(`topic ${t.name}  id ${t.topicId}  partitions ${t.partitions.length}\n`);
    out(table(["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"], t.partitions.map((p) => [p.partition, p.leaderId < 0 ? "none" : p.leaderId, p.leaderEpoch, p.replicas.join(",") || "-", p.isr.join(",") || "-"])));
    const configs = Object.entries(t.configs).sort(([a], [b]) => a.localeCompare(b));
    out(configs.length === 0 ? "configs: defaults\n" : `configs: ${configs.map(([k, v]) => `${k}=${v}`).join(" ")}\n`);
  });
  topic.command("delete <name>").description("delete a topic").action(async (name: string) => {
    const c = await connect();
    await c.admin().deleteTopic(name);
    if (globals().json) out(jsonLine({ topic: name, deleted: true }));
    else out(`deleted topic "${name}"\n`);
  });
  topic.command("alter <name>").description("change topic configuration")
    .option("--config <key=value>", "set a configuration key (repeatable)", collectConfig)
    .option("--delete-config <key>", "remove an override (repeatable)", collectList)
    .action(async (name: string, o: { config?: Record<string, string>; deleteConfig?: string[] }) => {
      if (o.config === undefined && o.deleteConfig === undefined) throw new UsageError("topic alter needs --config key=value or --delete-config key");
      const c = await connect();
      await c.admin().alterTopicConfig(name, { set: o.config, remove: o.deleteConfig });
      if (globals().json) out(jsonLine({ topic: name, set: o.config ?? {}, removed: o.deleteConfig ?? [] }));
      else out(`updated topic "${name}"\n`);
    });

  // --- produce -----------------------------------------------------------------------------------
  program.command("produce <topic>").description("produce one record per stdin line (or --value)")
    .option("--key <key>", "key for every record")
    .option("--value <value>", "produce this one record instead of reading stdin")
    .option("--partition <p>", "produce to this partition", positiveInt("--partition", 0))
    .addOption(new Option("--acks <acks>", "all, 1 or 0").default("all").argParser(acksArg))
    .option("--progress", "print progress and the final rate to stderr")
    .option("--delay-ms <ms>", "share groups do not deliver each record before this many ms from its send (runnel.not-before)", positiveInt("--delay-ms", 0))
    .action(async (topicName: string, o: { key?: string; value?: string; partition?: number; acks: Acks; progress?: boolean; delayMs?: number }) => {
      const c = await connect();
      await c.metadata.ensureTopic(topicName);
      const producer = c.producer({ acks: o.acks });
      const json = globals().json === true;
      const showProgress = o.progress === true || io.stderr.isTTY === true;
      const pending: Array<{ ack: Promise<RecordMetadata>; value: string }> = [];
      const started = Date.now();
      let acked = 0;
      let lastProgress = started;
      const settleHead = async () => {
        const head = pending.shift()!;
        const m = await head.ack;
        acked += 1;
        if (json) out(jsonLine({ partition: m.partition, offset: m.offset, key: o.key ?? null, value: head.value }));
        if (showProgress && Date.now() - lastProgress >= progressIntervalMs) {
          lastProgress = Date.now();
          err(`runnel: produced ${acked} records (${Math.round(acked / ((lastProgress - started) / 1000))} records/s)\n`);
        }
      };
      const send = async (value: string) => {
        const headers = o.delayMs === undefined ? undefined : { [notBeforeHeader]: String(Date.now() + o.delayMs) };
        pending.push({ ack: producer.send({ topic: topicName, key: o.key, value, partition: o.partition, headers }), value });
        // Keep later failures from being reported as unhandled while earlier ones are awaited.
        pending[pending.length - 1]!.ack.catch(() => undefined);
        while (pending.length > cliMaxPendingRecords) await settleHead();
      };
      try {
        if (o.value !== undefined) {
          await send(o.value);
        } else {
          const lines = createInterface({ input: io.stdin, crlfDelay: Infinity });
          for await (const line of lines) {
            if (io.signal?.aborted) break;
            await send(line);
          }
        }
        while (pending.length > 0) await settleHead();
      } finally {
        await producer.flush().catch(() => undefined);
      }
      if (showProgress) {
        const seconds = Math.max(0.001, (Date.now() - started) / 1000);
        err(`runnel: produced ${acked} records in ${seconds.toFixed(2)} s (${Math.round(acked / seconds)} records/s)\n`);
      }
    });

  // --- consume -----------------------------------------------------------------------------------
  program.command("consume <topic>").description("print records (from the latest offset unless told otherwise)")
    .option("--group <group>", "consume as a member of a consumer group")
    .option("--from-beginning", "start at the earliest retained offset")
    .option("--partition <p>", "only this partition", positiveInt("--partition", 0))
    .option("--offset <o>", "start at this offset (needs --partition)", offsetArg)
    .option("--max-messages <n>", "exit after this many records", positiveInt("--max-messages"))
    .option("--timeout-ms <t>", "exit after this long without a new record", positiveInt("--timeout-ms"))
    .option("--instance-id <id>", "static group membership id (with --group)")
    .option("--commit-interval-ms <t>", "auto-commit interval (with --group)", positiveInt("--commit-interval-ms"))
    .option("--share-group <group>", "take records as a member of a share group (task queue): each record is acknowledged (--ack)")
    .addOption(new Option("--ack <type>", "with --share-group: what to answer for each record printed").choices(["accept", "release", "reject"]).default("accept"))
    .option("--reason <text>", "with --share-group and --ack release|reject: the failure reason (kept with the record; a dead letter's runnel.dlq.reason)")
    .action(async (topicName: string, o: { group?: string; shareGroup?: string; ack: "accept" | "release" | "reject"; reason?: string; fromBeginning?: boolean; partition?: number; offset?: bigint; maxMessages?: number; timeoutMs?: number; instanceId?: string; commitIntervalMs?: number }) => {
      if (o.shareGroup !== undefined) {
        if (o.group !== undefined || o.partition !== undefined || o.offset !== undefined || o.fromBeginning || o.instanceId !== undefined) {
          throw new UsageError("--share-group takes records from every partition where the group left off; leave out --group, --partition, --offset, --from-beginning and --instance-id");
        }
        await consumeShared(topicName, o.shareGroup, o);
        return;
      }
      if (o.ack !== "accept" || o.reason !== undefined) throw new UsageError("--ack and --reason need --share-group");
      if (o.group !== undefined && (o.partition !== undefined || o.offset !== undefined)) throw new UsageError("--group assigns partitions itself; leave out --partition and --offset");
      if (o.offset !== undefined && o.partition === undefined) throw new UsageError("--offset needs --partition");
      if (o.offset !== undefined && o.fromBeginning) throw new UsageError("use either --offset or --from-beginning, not both");
      const c = await connect();
      const info = await c.metadata.ensureTopic(topicName);
      if (o.partition !== undefined && o.partition >= info.partitions.length) {
        throw new UsageError(`topic "${topicName}" has ${info.partitions.length} partition${info.partitions.length === 1 ? "" : "s"}; --partition ${o.partition} does not exist`);
      }
      let consumer: { next(): Promise<ConsumerRecord | undefined>; close(): Promise<void> };
      if (o.group !== undefined) {
        consumer = c.groupConsumer({ groupId: o.group, topics: [topicName], resetPolicy: o.fromBeginning ? "earliest" : "latest", instanceId: o.instanceId, autoCommitIntervalMs: o.commitIntervalMs });
      } else {
        const plain = c.consumer({ resetPolicy: "none" });
        const tps = (o.partition === undefined ? info.partitions.map((p) => p.partition) : [o.partition]).map((partition) => ({ topic: topicName, partition }));
        plain.assign(tps);
        for (const tp of tps) plain.seek(tp, o.offset ?? (o.fromBeginning ? "earliest" : "latest"));
        consumer = plain;
      }
      const json = globals().json === true;
      let count = 0;
      const stop = aborted(io.signal);
      try {
        while (o.maxMessages === undefined || count < o.maxMessages) {
          const waits: Array<Promise<ConsumerRecord | undefined | "timeout" | "aborted">> = [consumer.next(), stop];
          const idle = o.timeoutMs === undefined ? undefined : idleTimer(o.timeoutMs, io.signal);
          if (idle !== undefined) waits.push(idle.done);
          const r = await Promise.race(waits).finally(() => idle?.cancel());
          if (r === undefined || r === "timeout" || r === "aborted") break;
          count += 1;
          if (json) {
            out(jsonLine({
              partition: r.partition, offset: r.offset, key: r.key?.toString("utf8") ?? null, value: r.value?.toString("utf8") ?? null,
              timestamp: r.timestamp, headers: Object.fromEntries(r.headers.map((h) => [h.key, h.value.toString("utf8")])),
            }));
          } else {
            out(`${r.value?.toString("utf8") ?? ""}\n`);
          }
        }
      } finally {
        await consumer.close();
      }
    });

  /** `consume --share-group`: poll, print and acknowledge each record; every acknowledgement is flushed before exit. */
  async function consumeShared(topicName: string, groupId: string, o: { ack: "accept" | "release" | "reject"; reason?: string; maxMessages?: number; timeoutMs?: number }): Promise<void> {
    const c = await connect();
    await c.metadata.ensureTopic(topicName);
    const maxInFlight = Math.min(o.maxMessages ?? shareCliMaxInFlightRecords, shareCliMaxInFlightRecords);
    const consumer = c.shareConsumer({ groupId, topics: [topicName], maxInFlightRecords: maxInFlight, clientId: "runnel-cli" });
    const json = globals().json === true;
    const stop = aborted(io.signal);
    let count = 0;
    const failed: string[] = [];
    try {
      let idleSince = Date.now();
      while (o.maxMessages === undefined || count < o.maxMessages) {
        const left = o.timeoutMs === undefined ? shareCliPollMs : Math.max(1, o.timeoutMs - (Date.now() - idleSince));
        const want = Math.min(maxInFlight, (o.maxMessages ?? Number.MAX_SAFE_INTEGER) - count);
        const polled = await Promise.race([consumer.poll({ maxRecords: want, timeoutMs: Math.min(left, shareCliPollMs) }), stop]);
        if (polled === "aborted") break;
        if (polled.length === 0) {
          if (o.timeoutMs !== undefined && Date.now() - idleSince >= o.timeoutMs) break;
          continue;
        }
        idleSince = Date.now();
        for (const r of polled) {
          if (o.maxMessages !== undefined && count >= o.maxMessages) {
            consumer.release(r);
            continue;
          }
          count += 1;
          if (json) {
            out(jsonLine({
              partition: r.partition, offset: r.offset, key: r.key?.toString("utf8") ?? null, value: r.value?.toString("utf8") ?? null,
              timestamp: r.timestamp, headers: Object.fromEntries(r.headers.map((h) => [h.key, h.value.toString("utf8")])), deliveryCount: r.deliveryCount,
            }));
          } else {
            out(`${r.value?.toString("utf8") ?? ""}\n`);
          }
          if (o.ack === "accept") consumer.accept(r);
          else if (o.ack === "release") consumer.release(r, o.reason === undefined ? {} : { reason: o.reason });
          else consumer.reject(r, o.reason ?? "rejected with runnel consume --ack reject");
        }
      }
      for (const result of await consumer.flush()) {
        if (result.error !== undefined) failed.push(`partition ${result.partition} offsets ${result.firstOffset}-${result.lastOffset}: ${result.error.message}`);
      }
    } finally {
      await consumer.close();
    }
    if (failed.length > 0) throw new Error(`${failed.length} acknowledgement${failed.length === 1 ? "" : "s"} did not apply (the records went back to the group): ${failed.slice(0, 3).join("; ")}`);
  }

  // --- offsets -----------------------------------------------------------------------------------
  program.command("offsets <topic>").description("earliest, latest or by-time offsets per partition")
    .addOption(new Option("--time <earliest|latest|ms>", "which offset").default("latest").argParser(timeArg))
    .action(async (topicName: string, o: { time: OffsetQuery }) => {
      const c = await connect();
      const offsets = await c.admin().listOffsets(topicName, o.time);
      if (globals().json) for (const p of offsets) out(jsonLine({ partition: p.partition, offset: p.offset, ...(typeof o.time === "object" ? { timestamp: p.timestamp } : {}) }));
      else out(table(["PARTITION", "OFFSET"], offsets.map((p) => [p.partition, p.offset])));
    });

  // --- group -------------------------------------------------------------------------------------
  const group = program.command("group").description("consumer group commands");
  group.command("list").description("list consumer groups").action(async () => {
    const c = await connect();
    const groups = await c.groupAdmin().listGroups();
    if (globals().json) for (const g of groups) out(jsonLine(g));
    else if (groups.length === 0) out("no groups\n");
    else out(table(["GROUP", "STATE", "MEMBERS"], groups.map((g) => [g.groupId, g.state, g.memberCount])));
  });
  group.command("describe <group>").description("members, assignment, committed offset, high watermark and lag").action(async (groupId: string) => {
    const c = await connect();
    const d = await c.groupAdmin().describeGroup(groupId);
    if (globals().json) {
      out(jsonLine(d));
      return;
    }
    const totalLag = d.partitions.reduce((sum, p) => sum + (p.lag ?? 0n), 0n);
    out(`group ${d.groupId}  state ${d.state}  epoch ${d.groupEpoch}  assignor ${d.assignor}  members ${d.members.length}  lag ${totalLag}\n`);
    if (d.members.length > 0) {
      out(table(["MEMBER", "INSTANCE", "CLIENT", "EPOCH", "ASSIGNMENT"], d.members.map((m) => [
        m.memberId, m.instanceId || "-", m.clientId || "-", m.memberEpoch, m.assignment.map((tp) => `${tp.topic}-${tp.partition}`).join(",") || "-",
      ])));
    }
    if (d.partitions.length > 0) {
      out(table(["TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG", "MEMBER"], d.partitions.map((p) => [
        p.topic, p.partition, p.committedOffset < 0n ? "-" : p.committedOffset, p.highWatermark < 0n ? "?" : p.highWatermark, p.lag === undefined ? "?" : p.lag, p.memberId || "-",
      ])));
    }
  });
  group.command("reset-offsets <group>").description("set the committed offsets of an inactive group")
    .requiredOption("--topic <topic>", "the topic whose offsets to reset")
    .option("--partition <p>", "only this partition", positiveInt("--partition", 0))
    .option("--to-earliest", "the earliest retained offset")
    .option("--to-latest", "the high watermark")
    .option("--to-timestamp <ms>", "the first offset at or after this time (ms since the epoch)", positiveInt("--to-timestamp", 0))
    .option("--to-offset <o>", "this offset", offsetArg)
    .action(async (groupId: string, o: { topic: string; partition?: number; toEarliest?: boolean; toLatest?: boolean; toTimestamp?: number; toOffset?: bigint }) => {
      const chosen = [o.toEarliest, o.toLatest, o.toTimestamp !== undefined, o.toOffset !== undefined].filter(Boolean).length;
      if (chosen !== 1) throw new UsageError("give exactly one of --to-earliest, --to-latest, --to-timestamp, --to-offset");
      const target = o.toEarliest ? "earliest" : o.toLatest ? "latest" : o.toTimestamp !== undefined ? { timestamp: o.toTimestamp } : o.toOffset!;
      const c = await connect();
      const written = await c.groupAdmin().resetOffsets(groupId, o.topic, target, o.partition === undefined ? undefined : [o.partition]);
      if (globals().json) for (const w of written) out(jsonLine({ group: groupId, topic: o.topic, partition: w.partition, offset: w.offset }));
      else out(table(["TOPIC", "PARTITION", "NEW-OFFSET"], written.map((w) => [o.topic, w.partition, w.offset])));
    });

  // --- share groups and dead letters -------------------------------------------------------------
  const share = program.command("share").description("share group (task queue) commands");
  share.command("list").description("list share groups").action(async () => {
    const c = await connect();
    const groups = await c.shareAdmin().listShareGroups();
    if (globals().json) for (const g of groups) out(jsonLine(g));
    else if (groups.length === 0) out("no share groups\n");
    else out(table(["GROUP", "MEMBERS", "PARTITIONS"], groups.map((g) => [g.groupId, g.memberCount, g.partitionCount])));
  });
  share.command("describe <group>").description("members, then per partition: start/end offset, in flight, available, delayed, dead-lettering, archived")
    .action(async (groupId: string) => {
      const c = await connect();
      const d = await c.shareAdmin().describeShareGroup(groupId);
      if (globals().json) {
        out(jsonLine(d));
        return;
      }
      const inFlight = d.partitions.reduce((n, p) => n + p.acquired, 0);
      out(`share group ${d.groupId}  members ${d.members.length}  in flight ${inFlight}\n`);
      if (d.members.length > 0) {
        out(table(["MEMBER", "CLIENT", "TOPICS", "LAST-HEARTBEAT-MS"], d.members.map((m) => [m.memberId, m.clientId || "-", m.subscribedTopics.join(",") || "-", m.lastHeartbeatAgeMs])));
      }
      if (d.partitions.length > 0) {
        out(table(["TOPIC", "PARTITION", "START", "END", "IN-FLIGHT", "AVAILABLE", "DELAYED", "DEAD-LETTERING", "ARCHIVED", "MAX-DELIVERIES"], d.partitions.map((p) => [
          p.topic, p.partition, p.startOffset, p.endOffset, p.acquired, p.available, p.delayed, p.deadLettering, p.archived, p.maxDeliveryCount,
        ])));
      }
    });
  const dlq = program.command("dlq").description("dead letters of a topic (its dead.letter.topic, default <topic>.dlq)");
  dlq.command("list <topic>").description("dead letters: original partition/offset, attempts, reason, value")
    .option("--max-messages <n>", "list at most this many", positiveInt("--max-messages"))
    .action(async (topicName: string, o: { maxMessages?: number }) => {
      const c = await connect();
      const letters = await c.shareAdmin().dlqList(topicName, { maxRecords: o.maxMessages });
      if (globals().json) {
        for (const d of letters) {
          out(jsonLine({
            dlqTopic: d.dlqTopic, dlqPartition: d.dlqPartition, offset: d.dlqOffset, topic: d.topic, partition: d.partition, originalOffset: d.offset,
            attempts: d.attempts, reason: d.reason, deadLetteredAt: d.deadLetteredAtMs, key: d.key?.toString("utf8") ?? null, value: d.value?.toString("utf8") ?? null,
            headers: Object.fromEntries(d.headers.map((h) => [h.key, h.value.toString("utf8")])),
          }));
        }
      } else if (letters.length === 0) {
        out(`no dead letters for "${topicName}"\n`);
      } else {
        out(table(["OFFSET", "FROM", "ATTEMPTS", "REASON", "VALUE"], letters.map((d) => [
          `${d.dlqPartition}/${d.dlqOffset}`, `${d.topic}-${d.partition}@${d.offset}`, d.attempts, d.reason || "-", d.value?.toString("utf8") ?? "",
        ])));
      }
    });
  dlq.command("redrive <topic>").description("produce dead letters back to their original topic (each once)")
    .option("--max-messages <n>", "redrive at most this many", positiveInt("--max-messages"))
    .action(async (topicName: string, o: { maxMessages?: number }) => {
      const c = await connect();
      const r = await c.shareAdmin().dlqRedrive(topicName, { maxRecords: o.maxMessages });
      if (globals().json) out(jsonLine(r));
      else out(`redrove ${r.redriven} dead letter${r.redriven === 1 ? "" : "s"} from "${r.dlqTopic}"${r.skipped > 0 ? ` (skipped ${r.skipped} without a ${"runnel.dlq.topic"} header)` : ""}\n`);
    });

  try {
    if (argv.length === 0) {
      out(program.helpInformation());
      return 2;
    }
    await program.parseAsync([...argv], { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander already printed its one line (or the help text).
      exitCode = e.exitCode === 0 ? 0 : 2;
    } else if (e instanceof UsageError) {
      err(`runnel: ${e.message}\n`);
      exitCode = 2;
    } else {
      err(`runnel: ${describeError(e, bootstrap)}\n`);
      exitCode = 1;
    }
  } finally {
    await client?.close();
  }
  return exitCode;
}
