// ShareFetch and ShareAcknowledge: validate the request's shape (InvalidRequest -> INVALID_ARGUMENT),
// answer per-partition problems with codes, and drive the share manager in the order durability
// needs: apply acknowledgements, acquire, write the state, and only then answer. A ShareFetch that
// acquires nothing long-polls until a requested partition's high watermark moves or a record of one
// of its share partitions becomes acquirable.
import * as grpc from "@grpc/grpc-js";
import {
  ErrorCode,
  type LeaderHint,
  ShareAcknowledgeType,
  type ShareAcknowledgePartition,
  type ShareAcknowledgePartitionResponse,
  type ShareAcknowledgeRequest,
  type ShareAcknowledgeResponse,
  type ShareAcknowledgeResult,
  type ShareAcknowledgeTopic,
  type ShareFetchRequest,
} from "@runnel/proto";
import { InvalidRequest, type Logger } from "@runnel/common";
import { StorageCorruptionError } from "../log/index.js";
import type { Partition } from "../partition/partition.js";
import { abortOnCancel, waitForAny, type Waiters } from "../partition/waiters.js";
import type { ShareMetrics } from "../metrics/share-metrics.js";
import { countPartitions, maxPartitionsPerRequest } from "../server/limits.js";
import type { ShareFetchPartitionWire, ShareFetchTopicWire } from "../server/wire.js";
import {
  defaultShareLockDurationMs,
  maxAckReasonBytes,
  maxAckRunRecords,
  maxAcknowledgementsPerPartition,
  maxAcquireRoundsPerPartition,
  maxParkedShareFetches,
  maxReleaseDelayMs,
  maxShareFetchRecords,
  maxShareFetchResponseBytes,
  maxShareFetchWaitMs,
  maxShareGroupIdLength,
  maxShareLockDurationMs,
  maxShareMemberIdLength,
  minShareLockDurationMs,
  minShareWaitMs,
} from "./limits.js";
import { isShareProblem, readBatchesCovering, readRunsCovering, type ShareEntry, type ShareManager, type ShareProblem } from "./manager.js";
import type { AckType, Acknowledgement, AcquiredRun } from "./state/types.js";

/** How the broker service finds partitions and leaders (shared with Produce and Fetch). */
export interface PartitionLookup {
  lookup(topic: string, partition: number): { p: Partition } | { code: ErrorCode; message: string };
  leaderHint(p: Partition | undefined, topic: string, partition: number): LeaderHint;
}

export interface ShareServiceDeps {
  manager: ShareManager;
  partitions: PartitionLookup;
  logger: Logger;
  metrics?: ShareMetrics;
}


function checkRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidRequest(`${name} ${value} is outside ${min}..${max}`);
}

function checkId(name: string, value: string, max: number): void {
  if (value.length === 0) throw new InvalidRequest(`${name} must not be empty`);
  if (value.length > max) throw new InvalidRequest(`${name} has ${value.length} characters (at most ${max})`);
}

function checkLockDuration(name: string, value: number): void {
  if (value !== 0) checkRange(name, value, minShareLockDurationMs, maxShareLockDurationMs);
}

const ackTypes = new Map<ShareAcknowledgeType, AckType>([
  [ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT, "accept"],
  [ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE, "release"],
  [ShareAcknowledgeType.SHARE_ACKNOWLEDGE_REJECT, "reject"],
  [ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RENEW, "renew"],
]);

interface AckPartition {
  topic: string;
  partition: number;
  currentLeaderEpoch: number | undefined;
  acks: Acknowledgement[];
}

/** Checks and converts one partition's acknowledgements: well-formed, not overlapping. */
function parseAcks(topic: string, ap: ShareAcknowledgePartition): AckPartition {
  const where = `${topic}-${ap.partition}`;
  if (ap.acknowledgements.length > maxAcknowledgementsPerPartition) throw new InvalidRequest(`at most ${maxAcknowledgementsPerPartition} acknowledgements per partition (${where})`);
  const acks = ap.acknowledgements.map((a): Acknowledgement => {
    const run = `[${a.firstOffset}, ${a.lastOffset}] of ${where}`;
    if (a.firstOffset < 0n) throw new InvalidRequest(`acknowledgement ${run} starts at a negative offset`);
    if (a.firstOffset > a.lastOffset) throw new InvalidRequest(`acknowledgement ${run}: first_offset is after last_offset`);
    if (a.lastOffset - a.firstOffset >= BigInt(maxAckRunRecords)) throw new InvalidRequest(`acknowledgement ${run} spans more than ${maxAckRunRecords} records`);
    const type = ackTypes.get(a.type);
    if (type === undefined) throw new InvalidRequest(`acknowledgement ${run} has type ${String(a.type)}, not ACCEPT, RELEASE, REJECT or RENEW`);
    if (a.releaseDelayMs < 0n || a.releaseDelayMs > BigInt(maxReleaseDelayMs)) throw new InvalidRequest(`release_delay_ms ${a.releaseDelayMs} of ${run} is outside 0..${maxReleaseDelayMs}`);
    const reasonBytes = Buffer.byteLength(a.reason, "utf8");
    if (reasonBytes > maxAckReasonBytes) throw new InvalidRequest(`reason of ${run} has ${reasonBytes} bytes (at most ${maxAckReasonBytes})`);
    checkLockDuration(`lock_duration_ms of ${run}`, a.lockDurationMs);
    return { firstOffset: a.firstOffset, lastOffset: a.lastOffset, type, releaseDelayMs: Number(a.releaseDelayMs), reason: a.reason, lockDurationMs: a.lockDurationMs };
  });
  const sorted = [...acks].sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.firstOffset <= prev.lastOffset) {
      throw new InvalidRequest(`acknowledgements [${prev.firstOffset}, ${prev.lastOffset}] and [${cur.firstOffset}, ${cur.lastOffset}] of ${where} overlap`);
    }
  }
  return { topic, partition: ap.partition, currentLeaderEpoch: ap.currentLeaderEpoch, acks };
}

function parseAckTopics(topics: readonly ShareAcknowledgeTopic[], what: string): AckPartition[] {
  const seen = new Set<string>();
  const out: AckPartition[] = [];
  for (const t of topics) {
    for (const ap of t.partitions) {
      const k = `${t.topic}\u0000${ap.partition}`;
      if (seen.has(k)) throw new InvalidRequest(`partition ${t.topic}-${ap.partition} appears twice in the ${what} of one request`);
      seen.add(k);
      out.push(parseAcks(t.topic, ap));
    }
  }
  return out;
}

/** A partition's answer being built. */
interface PartitionOut {
  topic: string;
  partition: number;
  errorCode: ErrorCode;
  errorMessage: string;
  currentLeader: LeaderHint | undefined;
  batches: Uint8Array[];
  acquired: AcquiredRun[];
  lockDeadlineMs: bigint;
  acknowledgeResults: ShareAcknowledgeResult[];
  /** Base offsets of batches already in `batches`. */
  seen: Set<bigint>;
  entry: ShareEntry | undefined;
  p: Partition | undefined;
  /** Acknowledgements applied to `entry` and not yet answered (they wait for the write). */
  pendingAcks: boolean;
}

function ackFailure(acks: readonly Acknowledgement[], code: ErrorCode, message: string): ShareAcknowledgeResult[] {
  return acks.map((a) => ({ firstOffset: a.firstOffset, lastOffset: a.lastOffset, errorCode: code, errorMessage: message, lockDeadlineMs: 0n }));
}

function recordCount(runs: readonly AcquiredRun[]): number {
  let n = 0;
  for (const r of runs) n += Number(r.lastOffset - r.firstOffset) + 1;
  return n;
}

export class ShareService {
  private parkedFetches = 0;

  constructor(private readonly deps: ShareServiceDeps) {}

  /** The partition, its leadership checked and its share state loaded; or why not (into `out`). */
  private async resolve(out: PartitionOut, groupId: string, currentLeaderEpoch: number | undefined): Promise<ShareEntry | undefined> {
    const found = this.deps.partitions.lookup(out.topic, out.partition);
    if (!("p" in found)) {
      this.fail(out, found, this.deps.partitions.leaderHint(undefined, out.topic, out.partition));
      return undefined;
    }
    const p = found.p;
    out.p = p;
    const problem = p.leaderProblem(currentLeaderEpoch);
    if (problem !== undefined) {
      this.fail(out, problem, this.deps.partitions.leaderHint(p, out.topic, out.partition));
      return undefined;
    }
    const e = await this.deps.manager.entry(groupId, p);
    if (isShareProblem(e)) {
      this.fail(out, e, this.deps.partitions.leaderHint(p, out.topic, out.partition));
      return undefined;
    }
    out.entry = e;
    return e;
  }

  private fail(out: PartitionOut, problem: ShareProblem, hint: LeaderHint | undefined): void {
    out.errorCode = problem.code;
    out.errorMessage = problem.message;
    const leadership = problem.code === ErrorCode.NOT_LEADER || problem.code === ErrorCode.FENCED_LEADER_EPOCH || problem.code === ErrorCode.LEADER_NOT_AVAILABLE || problem.code === ErrorCode.UNKNOWN_LEADER_EPOCH;
    out.currentLeader = leadership ? hint : undefined;
  }

  private newOut(topic: string, partition: number): PartitionOut {
    return {
      topic,
      partition,
      errorCode: ErrorCode.ERROR_CODE_NONE,
      errorMessage: "",
      currentLeader: undefined,
      batches: [],
      acquired: [],
      lockDeadlineMs: 0n,
      acknowledgeResults: [],
      seen: new Set(),
      entry: undefined,
      p: undefined,
      pendingAcks: false,
    };
  }

  /** Applies one partition's acknowledgements to its loaded state (answered after the write). */
  private async applyAcks(out: PartitionOut, groupId: string, memberId: string, ap: AckPartition, nowMs: number): Promise<void> {
    const e = await this.resolve(out, groupId, ap.currentLeaderEpoch);
    if (e === undefined) {
      out.acknowledgeResults = ackFailure(ap.acks, out.errorCode, out.errorMessage);
      return;
    }
    const outcomes = e.sp.acknowledge(memberId, ap.acks, nowMs);
    out.acknowledgeResults = ap.acks.map((a, i): ShareAcknowledgeResult => {
      const o = outcomes[i]!;
      const base = { firstOffset: a.firstOffset, lastOffset: a.lastOffset };
      if (!o.ok) return { ...base, errorCode: ErrorCode.INVALID_RECORD_STATE, errorMessage: o.message, lockDeadlineMs: 0n };
      this.deps.metrics?.recordsAcknowledged(a.type, Number(a.lastOffset - a.firstOffset) + 1);
      return { ...base, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", lockDeadlineMs: BigInt(o.lockDeadlineMs ?? 0) };
    });
    out.pendingAcks = true;
    this.deps.manager.wakeIfAcquirable(e, nowMs);
  }

  /** Waits for the writes covering every change in `outs`; a partition whose write failed answers its error instead. */
  private async persistAll(outs: readonly PartitionOut[]): Promise<void> {
    const entries = new Map<ShareEntry, PartitionOut[]>();
    for (const out of outs) {
      if (out.entry === undefined || out.errorCode !== ErrorCode.ERROR_CODE_NONE) continue;
      if (!out.pendingAcks && out.acquired.length === 0) continue;
      const list = entries.get(out.entry) ?? [];
      list.push(out);
      entries.set(out.entry, list);
    }
    await Promise.all(
      [...entries].map(async ([e, list]) => {
        const problem = await this.deps.manager.persist(e);
        for (const out of list) {
          out.pendingAcks = false;
          if (problem === undefined) continue;
          // Not durable: nothing is handed out (the acquired records stay locked until their deadline
          // and go back then) and the acknowledgements' outcome is unknown to the member.
          this.fail(out, problem, this.deps.partitions.leaderHint(out.p, out.topic, out.partition));
          out.acquired = [];
          out.batches = [];
          out.lockDeadlineMs = 0n;
          out.acknowledgeResults = out.acknowledgeResults.map((r) => (r.errorCode === ErrorCode.ERROR_CODE_NONE ? { ...r, errorCode: problem.code, errorMessage: problem.message, lockDeadlineMs: 0n } : r));
        }
      }),
    );
  }

  /**
   * Acquires up to `maxRecords` from `e` for the member and collects the batches holding them, in
   * rounds sized from the bytes per record seen so far so the answer stays near `budgetBytes`.
   */
  private acquire(out: PartitionOut, e: ShareEntry, memberId: string, maxRecords: number, budgetBytes: number, nowMs: number, lockDurationMs: number, runsOnly: boolean): { records: number; bytes: number } {
    this.deps.manager.admit(e);
    let records = 0;
    let bytes = 0;
    for (let round = 0; round < maxAcquireRoundsPerPartition && records < maxRecords && bytes < budgetBytes; round++) {
      // The first round takes one record: its batch tells how large records are.
      const want = records === 0 ? 1 : Math.max(1, Math.min(maxRecords - records, Math.floor(((budgetBytes - bytes) * records) / Math.max(1, bytes))));
      const runs = e.sp.acquire(memberId, want, nowMs, lockDurationMs);
      if (runs.length === 0) break;
      const n = recordCount(runs);
      const read = runsOnly ? readRunsCovering(e.partition, runs, e.cache) : readBatchesCovering(e.partition, runs, out.seen, e.cache);
      for (const r of runs) {
        // Rounds split what one acquire would give as one run: join them again.
        const last = out.acquired[out.acquired.length - 1];
        if (last !== undefined && last.lastOffset + 1n === r.firstOffset && last.deliveryCount === r.deliveryCount) out.acquired[out.acquired.length - 1] = { ...last, lastOffset: r.lastOffset };
        else out.acquired.push(r);
      }
      out.batches.push(...read.batches);
      records += n;
      bytes += read.bytes;
      if (n < want) break;
    }
    if (records > 0) {
      out.lockDeadlineMs = BigInt(nowMs + lockDurationMs);
      this.deps.metrics?.recordsAcquired(records);
    }
    return { records, bytes };
  }

  async fetch(req: ShareFetchRequest, call: grpc.ServerUnaryCall<ShareFetchRequest, unknown>): Promise<ShareFetchTopicWire[]> {
    checkId("group_id", req.groupId, maxShareGroupIdLength);
    checkId("member_id", req.memberId, maxShareMemberIdLength);
    checkRange("max_records", req.maxRecords, 0, maxShareFetchRecords);
    checkRange("max_wait_ms", req.maxWaitMs, 0, maxShareFetchWaitMs);
    checkLockDuration("lock_duration_ms", req.lockDurationMs);
    const lockDurationMs = req.lockDurationMs === 0 ? defaultShareLockDurationMs : req.lockDurationMs;
    if (countPartitions(req.topics) + countPartitions(req.acknowledgements) > maxPartitionsPerRequest) {
      throw new InvalidRequest(`at most ${maxPartitionsPerRequest} partitions per ShareFetch request`);
    }
    const fetchSeen = new Set<string>();
    for (const t of req.topics) {
      for (const fp of t.partitions) {
        const k = `${t.topic}\u0000${fp.partition}`;
        if (fetchSeen.has(k)) throw new InvalidRequest(`partition ${t.topic}-${fp.partition} appears twice in one ShareFetch request`);
        fetchSeen.add(k);
      }
    }
    const acks = parseAckTopics(req.acknowledgements, "acknowledgements");
    const { groupId, memberId } = req;
    const manager = this.deps.manager;

    // One answer per requested or acknowledged partition, requested ones first, in request order.
    const outs = new Map<string, PartitionOut>();
    const outFor = (topic: string, partition: number) => {
      const k = `${topic}\u0000${partition}`;
      let o = outs.get(k);
      if (o === undefined) {
        o = this.newOut(topic, partition);
        outs.set(k, o);
      }
      return o;
    };
    const fetchOuts = req.topics.flatMap((t) => t.partitions.map((fp) => ({ out: outFor(t.topic, fp.partition), currentLeaderEpoch: fp.currentLeaderEpoch })));

    let nowMs = manager.now();
    await Promise.all(acks.map((ap) => this.applyAcks(outFor(ap.topic, ap.partition), groupId, memberId, ap, nowMs)));

    const cancel = abortOnCancel(call);
    const deadline = nowMs + req.maxWaitMs;
    for (;;) {
      nowMs = manager.now();
      let remaining = req.maxRecords;
      let budget = maxShareFetchResponseBytes;
      let anyError = false;
      for (const { out, currentLeaderEpoch } of fetchOuts) {
        if (out.errorCode !== ErrorCode.ERROR_CODE_NONE) {
          anyError = true;
          continue;
        }
        const e = out.entry !== undefined && manager.current(out.entry) ? out.entry : await this.resolve(out, groupId, currentLeaderEpoch);
        if (e === undefined) {
          anyError = true;
          continue;
        }
        if (remaining <= 0 || budget <= 0) continue;
        try {
          const got = this.acquire(out, e, memberId, remaining, budget, nowMs, lockDurationMs, req.acquiredRecordsOnly);
          remaining -= got.records;
          budget -= got.bytes;
        } catch (err) {
          if (!(err instanceof StorageCorruptionError)) throw err;
          this.fail(out, { code: ErrorCode.STORAGE_ERROR, message: err.message }, undefined);
          anyError = true;
        }
      }
      await this.persistAll([...outs.values()]);
      const acquiredAny = remaining < req.maxRecords;
      const now = manager.now();
      if (acquiredAny || anyError || req.maxRecords === 0 || now >= deadline || cancel.signal.aborted) break;

      // Nothing to hand out: wait for new records (high watermark) or for one to become acquirable.
      const waiters: Waiters[] = [];
      let wakeAt = deadline;
      for (const { out } of fetchOuts) {
        if (out.p !== undefined) waiters.push(out.p.hwWaiters);
        if (out.entry !== undefined) {
          waiters.push(out.entry.waiters);
          const next = out.entry.sp.nextWakeMs();
          if (next !== undefined && next < wakeAt) wakeAt = next;
        }
      }
      if (this.parkedFetches >= maxParkedShareFetches) {
        for (const { out } of fetchOuts) {
          if (out.errorCode === ErrorCode.ERROR_CODE_NONE) {
            out.errorCode = ErrorCode.THROTTLED;
            out.errorMessage = `broker has ${this.parkedFetches} share fetches waiting (at most ${maxParkedShareFetches}); retry later`;
          }
        }
        break;
      }
      this.parkedFetches++;
      try {
        await waitForAny(waiters, Math.max(minShareWaitMs, wakeAt - now), cancel.signal);
      } finally {
        this.parkedFetches--;
      }
    }
    cancel.release();

    const byTopic = new Map<string, ShareFetchTopicWire>();
    for (const out of outs.values()) {
      let t = byTopic.get(out.topic);
      if (t === undefined) {
        t = { topic: out.topic, partitions: [] };
        byTopic.set(out.topic, t);
      }
      // Batches are already in offset order: each round acquires above the previous one.
      t.partitions.push({
        partition: out.partition,
        errorCode: out.errorCode,
        errorMessage: out.errorMessage,
        currentLeader: out.currentLeader,
        batches: out.batches,
        acquired: out.acquired.map((r) => ({ firstOffset: r.firstOffset, lastOffset: r.lastOffset, deliveryCount: r.deliveryCount })),
        lockDeadlineMs: out.lockDeadlineMs,
        acknowledgeResults: out.acknowledgeResults,
      });
    }
    return [...byTopic.values()];
  }

  async acknowledge(req: ShareAcknowledgeRequest): Promise<ShareAcknowledgeResponse> {
    checkId("group_id", req.groupId, maxShareGroupIdLength);
    checkId("member_id", req.memberId, maxShareMemberIdLength);
    if (countPartitions(req.topics) > maxPartitionsPerRequest) throw new InvalidRequest(`at most ${maxPartitionsPerRequest} partitions per ShareAcknowledge request`);
    const acks = parseAckTopics(req.topics, "topics");
    const nowMs = this.deps.manager.now();
    const outs = acks.map((ap) => ({ ap, out: this.newOut(ap.topic, ap.partition) }));
    await Promise.all(outs.map(({ ap, out }) => this.applyAcks(out, req.groupId, req.memberId, ap, nowMs)));
    await this.persistAll(outs.map((o) => o.out));
    const topics: ShareAcknowledgeResponse["topics"] = [];
    const byTopic = new Map<string, ShareAcknowledgePartitionResponse[]>();
    for (const { out } of outs) {
      let list = byTopic.get(out.topic);
      if (list === undefined) {
        list = [];
        byTopic.set(out.topic, list);
        topics.push({ topic: out.topic, partitions: list });
      }
      list.push({ partition: out.partition, errorCode: out.errorCode, errorMessage: out.errorMessage, currentLeader: out.currentLeader, results: out.acknowledgeResults });
    }
    return { topics };
  }
}
