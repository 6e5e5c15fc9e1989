// One chaos run: a networked cluster, the workload, a schedule of faults from a seed, then the checks.
// Used by the short suite in npm test (a fixed list: one fault of each kind) and by `npm run chaos`
// (random faults for N minutes). Every process is killed at the end; the temp dir with every process's
// log is kept, and its path printed, when anything failed.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Acks, buildBatch, ErrorCode } from "@runnel/proto";
import { checkHistory, checkReplicas, historyViolations, type HistoryReport, type ReplicaReport } from "../checker/index.js";
import { startNetworkedCluster, type Network } from "../faults/network.js";
import { SeededRandom } from "../faults/random.js";
import { callUnary, type Cluster, sleep } from "../harness/index.js";
import { ChaosWorkload, recordValue } from "../workload/chaos.js";
import { readPartition } from "../workload/reader.js";
import { describeFault, type Fault, type FaultKind, planFault } from "./schedule.js";

export interface ChaosOptions {
  seed: number;
  /** No new fault starts after this long (ignored when `faults` is given). */
  durationMs: number;
  /** A fixed list of fault kinds to run in order, instead of drawing them until durationMs. */
  faults?: readonly FaultKind[];
  brokers?: number;
  partitions?: number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  replicaLagTimeMaxMs?: number;
  producers?: number;
  consumers?: number;
  recordsPerSecond?: number;
  /** Client request deadline in milliseconds (bounds how long a black-holed call hangs). */
  requestTimeoutMs?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Called once the cluster runs: a test ties it to its context here, so a timeout still kills and keeps logs. */
  onStarted?: (cluster: Cluster, network: Network) => void;
}

export interface FaultRecord {
  atMs: number;
  fault: string;
  /** How long until the cluster was healthy again (every broker alive, every ISR full), in milliseconds. */
  recoveredAfterMs: number | undefined;
  note?: string;
}

export interface ChaosReport {
  seed: number;
  dir: string;
  runMs: number;
  faults: FaultRecord[];
  /** Leader SIGKILL -> first acknowledged acks=all produce on that partition, in milliseconds, per kill. */
  failoverMs: number[];
  failoverP50Ms: number | undefined;
  failoverP99Ms: number | undefined;
  produceErrors: number;
  /** Produce errors the application saw during rolling restarts (must be 0). */
  produceErrorsDuringRollingRestarts: number;
  /** acks=all writes an isolated leader acknowledged after its session expired (must be 0). */
  zombieAcks: number;
  groupCaughtUp: boolean;
  history: HistoryReport;
  replicas: Pick<ReplicaReport, "partitionsChecked" | "batchesCompared" | "divergences">;
  /** Problems of the run itself (a cluster that did not recover, a group that did not catch up). */
  problems: string[];
  sessionTimeoutMs: number;
}

export const topic = "chaos";
/** Deadline for the cluster to be healthy again after a fault. */
export const recoveryTimeoutMs = 60_000;
/** Deadline for one failover probe write. */
export const probeTimeoutMs = 60_000;
/** Deadline for the group to read everything after the writes stop. */
export const drainTimeoutMs = 60_000;

/** Nearest-rank percentile of `values` (q in 0..1). */
export function percentile(values: readonly number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Whether the report shows any broken promise. */
export function reportViolations(r: ChaosReport): string[] {
  const out = historyViolations(r.history);
  if (r.replicas.divergences.length > 0) out.push(`${r.replicas.divergences.length} replica divergences below the high watermark`);
  if (r.produceErrorsDuringRollingRestarts > 0) out.push(`${r.produceErrorsDuringRollingRestarts} produce errors during rolling restarts`);
  if (r.zombieAcks > 0) out.push(`${r.zombieAcks} acks=all writes acknowledged by an isolated leader`);
  out.push(...r.problems);
  return out;
}

export function formatReport(r: ChaosReport): string {
  const h = r.history;
  const lines = [
    `chaos report (seed ${r.seed}, ${Math.round(r.runMs / 1000)} s, ${r.faults.length} faults, session timeout ${r.sessionTimeoutMs} ms)`,
    ...r.faults.map((f) => `  +${(f.atMs / 1000).toFixed(1)}s ${f.fault}: ${f.recoveredAfterMs === undefined ? "DID NOT RECOVER" : `healthy after ${f.recoveredAfterMs} ms`}${f.note ? ` (${f.note})` : ""}`),
    `  records: ${h.acknowledged} acknowledged, ${h.unacknowledged} not acknowledged, ${h.recordsInLog} in the log`,
    `  acknowledged but lost: ${h.lost}`,
    `  acknowledged at another offset: ${h.misplaced}`,
    `  duplicated: ${h.duplicated}`,
    `  reordered within a partition: ${h.reordered}`,
    `  replicas differing below the high watermark: ${r.replicas.divergences.length} (${r.replicas.partitionsChecked} partitions, ${r.replicas.batchesCompared} batches compared)`,
    `  offsets skipped by the group: ${h.skippedByGroup} (group caught up: ${r.groupCaughtUp}; ${h.redeliveredByGroup} redelivered, allowed)`,
    `  consumed but not in the log: ${h.consumedNotInLog}`,
    `  unacknowledged but present: ${h.unacknowledgedPresent} (allowed)`,
    `  never sent but in the log: ${h.unknownInLog}`,
    `  produce errors seen by the application: ${r.produceErrors} (${r.produceErrorsDuringRollingRestarts} during rolling restarts)`,
    `  acks=all writes acknowledged by an isolated leader: ${r.zombieAcks}`,
    `  failover (leader SIGKILL -> first acks=all ack): ${r.failoverMs.length} samples, p50 ${r.failoverP50Ms ?? "-"} ms, p99 ${r.failoverP99Ms ?? "-"} ms`,
  ];
  const violations = reportViolations(r);
  lines.push(violations.length === 0 ? "  result: OK" : `  result: FAILED: ${violations.join("; ")}`);
  if (h.examples.length > 0) lines.push("  examples:", ...h.examples.map((e) => `    ${e}`));
  for (const d of r.replicas.divergences.slice(0, 10)) lines.push(`    diverged: ${d.topic}-${d.partition} brokers ${d.brokers.join("/")} at ${d.offset}: ${d.detail}`);
  lines.push(`  logs: ${r.dir} (${violations.length === 0 ? "removed: the run passed" : "kept"})`);
  return lines.join("\n");
}

/** Leader of each partition, as the given broker (or the first that answers) sees it. */
async function leaders(cluster: Cluster, partitions: number): Promise<Map<number, number>> {
  const md = await cluster.metadata([topic]);
  const out = new Map<number, number>();
  for (const p of md.topics[0]?.partitions ?? []) if (p.leaderId >= 0 && p.partition < partitions) out.set(p.partition, p.leaderId);
  return out;
}

/**
 * Healthy: the controller sees every broker alive, and every running broker's metadata shows a leader
 * and a full ISR for every partition, at the same leader epoch (a stale, once-isolated broker does not count).
 */
async function isHealthy(cluster: Cluster, partitions: number): Promise<boolean> {
  const described = await cluster.describe();
  const alive = described.brokers.filter((b) => b.alive).length;
  if (alive !== cluster.brokerIds.length) return false;
  const epochs = new Map<number, number>();
  for (const id of cluster.brokerIds) {
    const client = cluster.brokerClient(id);
    const md = await callUnary(client, client.metadata, { topics: [topic] }, 2_000);
    const ps = md.topics[0]?.partitions ?? [];
    if (ps.length !== partitions) return false;
    for (const p of ps) {
      if (p.leaderId < 0 || p.isr.length !== cluster.brokerIds.length) return false;
      const e = epochs.get(p.partition);
      if (e !== undefined && e !== p.leaderEpoch) return false;
      epochs.set(p.partition, p.leaderEpoch);
    }
  }
  return true;
}

async function waitHealthy(cluster: Cluster, partitions: number, timeoutMs: number): Promise<number | undefined> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    try {
      if (await isHealthy(cluster, partitions)) return Date.now() - started;
    } catch {
      // A process restarting; ask again.
    }
    await sleep(100);
  }
  return undefined;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => undefined);
  const brokers = options.brokers ?? 3;
  const partitions = options.partitions ?? 6;
  const sessionTimeoutMs = options.sessionTimeoutMs ?? 2_000;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 200;
  const rng = new SeededRandom(options.seed);
  log(`chaos: seed ${options.seed} (replay with --seed ${options.seed})`);
  const { cluster, network } = await startNetworkedCluster({
    brokers,
    sessionTimeoutMs,
    heartbeatIntervalMs,
    brokerArgs: ["--replica-lag-time-max-ms", String(options.replicaLagTimeMaxMs ?? 2_000)],
    controllerArgs: ["--group-session-timeout-ms", "6000", "--group-heartbeat-interval-ms", "500"],
  });
  log(`chaos: cluster in ${cluster.dir}`);
  options.onStarted?.(cluster, network);
  const started = Date.now();
  let failed = true;
  const workload = new ChaosWorkload({
    bootstrap: network.bootstrap,
    topic,
    partitions,
    producers: options.producers ?? 2,
    consumers: options.consumers ?? 2,
    groupId: "chaos-group",
    recordsPerSecond: options.recordsPerSecond ?? 200,
    maxOutstandingRecords: 200,
    requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
    autoCommitIntervalMs: 500,
  });
  try {
    const c = cluster.controllerClient();
    const created = await callUnary(c, c.createTopics, { topics: [{ name: topic, partitions, replicationFactor: brokers, configs: { "min.insync.replicas": String(Math.min(2, brokers)) } }], validateOnly: false }, 10_000);
    const t = created.topics[0]!;
    if (t.errorCode !== ErrorCode.ERROR_CODE_NONE) throw new Error(`creating topic ${topic}: ${ErrorCode[t.errorCode]} ${t.errorMessage}`);
    if ((await waitHealthy(cluster, partitions, recoveryTimeoutMs)) === undefined) throw new Error(`topic ${topic} never had a full ISR; logs: ${cluster.dir}`);
    workload.start();
    while (workload.ackedCount < 100 && Date.now() - started < 30_000) await sleep(50);

    const faults: FaultRecord[] = [];
    const failoverMs: number[] = [];
    const problems: string[] = [];
    let rollingErrors = 0;
    const zombie = { acks: 0, n: 0 };
    const kinds = options.faults;
    for (let i = 0; kinds === undefined ? Date.now() - started < options.durationMs : i < kinds.length; i++) {
      const view = { brokers: cluster.brokerIds, leaders: await leaders(cluster, partitions), sessionTimeoutMs };
      const fault = planFault(rng, view, kinds?.[i]);
      const record: FaultRecord = { atMs: Date.now() - started, fault: describeFault(fault), recoveredAfterMs: undefined };
      log(`chaos: +${(record.atMs / 1000).toFixed(1)}s ${record.fault} (${workload.ackedCount} acknowledged so far)`);
      const errorsBefore = workload.produceErrors.length;
      const notes: string[] = [];
      await inject(fault, { cluster, network, view, partitions, sessionTimeoutMs, failoverMs, zombie, notes, ledger: workload.ledger });
      if (fault.kind === "rolling-restart") rollingErrors += workload.produceErrors.length - errorsBefore;
      record.recoveredAfterMs = await waitHealthy(cluster, partitions, recoveryTimeoutMs);
      if (record.recoveredAfterMs === undefined) problems.push(`cluster did not recover within ${recoveryTimeoutMs} ms after: ${record.fault}`);
      const errors = workload.produceErrors.length - errorsBefore;
      if (errors > 0) notes.push(`${errors} produce errors`);
      if (notes.length > 0) record.note = notes.join("; ");
      faults.push(record);
      log(`chaos:   ${record.recoveredAfterMs === undefined ? "did not recover" : `healthy after ${record.recoveredAfterMs} ms`}${record.note ? `; ${record.note}` : ""}`);
      await sleep(rng.int(500, 2_000));
    }

    log("chaos: stopping the producers");
    await workload.stopProducing();
    const logs = [];
    for (let p = 0; p < partitions; p++) logs.push(await readPartition(cluster, topic, p, 60_000));
    const ends = logs.map((l) => (l.length === 0 ? 0n : l[l.length - 1]!.offset + 1n));
    log(`chaos: read ${logs.reduce((s, l) => s + l.length, 0)} records back; draining the group`);
    const groupCaughtUp = await workload.drainConsumers(ends, Date.now() + drainTimeoutMs);
    if (!groupCaughtUp) problems.push(`the group did not read up to the end of every partition within ${drainTimeoutMs} ms`);
    const history = checkHistory({ logs, sent: workload.ledger.records.values(), consumed: workload.consumed, groupEnd: ends });
    await workload.close();

    // Every replica from disk: stop everything, then compare the logs below the high watermark.
    await Promise.all(cluster.brokerIds.map((id) => cluster.kill(id)));
    const replicas = await checkReplicas(new Map(cluster.brokerIds.map((id) => [id, join(cluster.dir, `broker-${id}`)])));
    const report: ChaosReport = {
      seed: options.seed,
      dir: cluster.dir,
      runMs: Date.now() - started,
      faults,
      failoverMs,
      failoverP50Ms: percentile(failoverMs, 0.5),
      failoverP99Ms: percentile(failoverMs, 0.99),
      produceErrors: workload.produceErrors.length,
      produceErrorsDuringRollingRestarts: rollingErrors,
      zombieAcks: zombie.acks,
      groupCaughtUp,
      history,
      replicas: { partitionsChecked: replicas.partitionsChecked, batchesCompared: replicas.batchesCompared, divergences: replicas.divergences },
      problems,
      sessionTimeoutMs,
    };
    failed = reportViolations(report).length > 0;
    return report;
  } finally {
    await workload.close().catch(() => undefined);
    await cluster.close({ failed });
    await network.close();
  }
}

interface InjectContext {
  cluster: Cluster;
  network: Network;
  view: { leaders: ReadonlyMap<number, number> };
  partitions: number;
  sessionTimeoutMs: number;
  failoverMs: number[];
  zombie: { acks: number; n: number };
  notes: string[];
  ledger: ChaosWorkload["ledger"];
}

let probeCount = 0;

/** Pause between failover probe attempts: the resolution of the failover measurement. */
export const probeRetryMs = 50;
/** Deadline of one probe produce call (acks=all waits at most this long at the leader). */
export const probeCallTimeoutMs = 3_000;

/** A unary call that fails at once on a dead peer (no waitForReady), unlike the harness's patient callUnary. */
function callFailFast<Req, Res>(client: grpc.Client, method: (req: Req, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall, request: Req, timeoutMs: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => (err === null ? resolve(res) : reject(err)));
  });
}

/**
 * Failover probe: one idempotent acks=all record to `partition`, resent every probeRetryMs to whichever
 * broker metadata names as leader (asking live brokers on their real ports, failing fast on a dead
 * one), until acknowledged. Returns when it was acknowledged, or undefined at the deadline.
 */
async function probe(ctx: InjectContext, partition: number): Promise<number | undefined> {
  const deadline = Date.now() + probeTimeoutMs;
  const c = ctx.cluster.controllerClient();
  let producer: { producerId: bigint; producerEpoch: number } | undefined;
  while (producer === undefined && Date.now() < deadline) {
    try {
      const res = await callUnary(c, c.initProducerId, { producerId: 0n, producerEpoch: 0 }, 5_000);
      if (res.errorCode === ErrorCode.ERROR_CODE_NONE) producer = res;
    } catch {
      await sleep(probeRetryMs);
    }
  }
  const value = recordValue(`probe${probeCount++}`, partition, 0);
  const entry = ctx.ledger.pending(value, partition);
  if (producer === undefined) {
    ctx.ledger.failed(entry, "no producer id");
    return undefined;
  }
  const batch = buildBatch([{ value: Buffer.from(value) }], { producerId: producer.producerId, producerEpoch: producer.producerEpoch, baseSequence: 0 });
  let attempts = 0;
  let last = "none";
  while (Date.now() < deadline) {
    attempts++;
    try {
      const md = await ctx.cluster.metadata([topic], { timeoutMs: 1_000 });
      const leader = md.topics[0]?.partitions.find((p) => p.partition === partition)?.leaderId ?? -1;
      if (leader >= 0 && ctx.cluster.state(leader) === "running") {
        const client = ctx.cluster.brokerClient(leader);
        const res = await callFailFast(client, client.produce, { acks: Acks.ACKS_ALL, timeoutMs: probeCallTimeoutMs, topics: [{ topic, partitions: [{ partition, batch }] }] }, probeCallTimeoutMs + 1_000);
        const p = res.topics[0]!.partitions[0]!;
        if (p.errorCode === ErrorCode.ERROR_CODE_NONE || p.errorCode === ErrorCode.DUPLICATE_SEQUENCE) {
          const at = Date.now();
          ctx.ledger.acked(entry, p.baseOffset, at);
          return at;
        }
        last = ErrorCode[p.errorCode] ?? String(p.errorCode);
      } else {
        last = `leader ${leader} not running`;
      }
    } catch (err) {
      last = (err as Error).message.split("\n")[0] ?? "error";
    }
    await sleep(probeRetryMs);
  }
  ctx.ledger.failed(entry, last);
  ctx.notes.push(`probe gave up after ${attempts} attempts (last: ${last})`);
  return undefined;
}

async function inject(fault: Fault, ctx: InjectContext): Promise<void> {
  const { cluster, network } = ctx;
  switch (fault.kind) {
    case "kill-broker": {
      const led = [...ctx.view.leaders].filter(([, b]) => b === fault.broker).map(([p]) => p);
      const measured = fault.partition ?? led[0];
      const killedAt = Date.now();
      await cluster.kill(fault.broker);
      if (measured !== undefined) {
        const ackedAt = await probe(ctx, measured);
        if (ackedAt === undefined) ctx.notes.push(`failover probe on partition ${measured} not acknowledged`);
        else {
          ctx.failoverMs.push(ackedAt - killedAt);
          ctx.notes.push(`failover ${ackedAt - killedAt} ms on partition ${measured}`);
        }
      }
      const waited = Date.now() - killedAt;
      if (waited < fault.downMs) await sleep(fault.downMs - waited);
      await cluster.restart(fault.broker, { wait: "registered" });
      return;
    }
    case "kill-controller":
      await cluster.kill("controller");
      await sleep(fault.downMs);
      await cluster.restart("controller");
      return;
    case "pause-leader":
      await cluster.pause(fault.broker);
      await sleep(fault.durationMs);
      await cluster.resume(fault.broker);
      return;
    case "isolate-leader": {
      network.isolate(fault.broker, { clients: true });
      const cutAt = Date.now();
      // Once its session has expired the others elect a new leader; a client still on the isolated
      // side (the real port) asks the old leader for an acks=all write, which it must not acknowledge.
      await sleep(Math.min(fault.durationMs - 100, ctx.sessionTimeoutMs + 200));
      const value = recordValue(`zombie${ctx.zombie.n++}`, fault.partition, 0);
      const entry = ctx.ledger.pending(value, fault.partition);
      const direct = cluster.brokerClient(fault.broker);
      const timeoutMs = Math.max(500, fault.durationMs - (Date.now() - cutAt) - 500);
      try {
        const res = await callUnary(
          direct,
          direct.produce,
          { acks: Acks.ACKS_ALL, timeoutMs, topics: [{ topic, partitions: [{ partition: fault.partition, batch: buildBatch([{ value: Buffer.from(value) }]) }] }] },
          timeoutMs + 1_000,
        );
        const p = res.topics[0]!.partitions[0]!;
        if (p.errorCode === ErrorCode.ERROR_CODE_NONE) {
          ctx.zombie.acks++;
          ctx.ledger.acked(entry, p.baseOffset, Date.now());
          ctx.notes.push(`isolated leader ACKNOWLEDGED ${value} at offset ${p.baseOffset}`);
        } else {
          ctx.ledger.failed(entry, ErrorCode[p.errorCode] ?? String(p.errorCode));
          ctx.notes.push(`isolated leader answered ${ErrorCode[p.errorCode]}`);
        }
      } catch (err) {
        ctx.ledger.failed(entry, (err as Error).message);
        ctx.notes.push("isolated leader did not answer");
      }
      const left = fault.durationMs - (Date.now() - cutAt);
      if (left > 0) await sleep(left);
      network.heal(fault.broker);
      return;
    }
    case "rolling-restart":
      for (const id of fault.order) {
        await cluster.stop(id);
        await cluster.restart(id, { wait: "registered" });
        // The next broker goes only when this one is back in every ISR, as an operator's script would wait.
        await waitHealthy(cluster, ctx.partitions, recoveryTimeoutMs);
      }
      return;
  }
}
