// Share groups on this broker: for each (share group, partition) this broker leads, the pure
// SharePartition (./state) loaded in the leader epoch it was read in, and everything around it that
// touches the world: loading with ReadShareState, admitting records from the log, group-committed
// writes to the share-state store, the tick (lock expiry, retention, dead letters, persistence,
// waking long polls) and the dead-letter producer.
//
// The duties, in order: change the state -> write it -> answer once a write covering the change is
// durable. Writes are pipelined: a change starts a write at once while fewer than
// maxShareWritesInFlight of its share partition are in flight (each numbered with a write sequence, so
// the controller never lets an older state replace a newer one); beyond that, every change made
// meanwhile rides the next write (group commit). Each answer waits only for the write covering it. A
// fenced write, a new leader epoch or a lost leadership drops the loaded state; the next leader reads
// back the last durable state. Clocks: lock deadlines and delays are wall-clock ms (Date.now()) since
// they are persisted and read by the next leader, so brokers are assumed to have synchronised clocks.
import { BinaryReader, checksum, compressionCodecMask, deadLetterHeaderPrefix, deadLetterHeaders, deadLetterTopicOf, decodeBatch, ErrorCode, RecordBatch, type RecordHeader } from "@runnel/proto";
import { InvariantError, type Logger } from "@runnel/common";
import type { Partition } from "../partition/partition.js";
import { Waiters } from "../partition/waiters.js";
import { summarizeBatch } from "../log/codec.js";
import type { ShareMetrics } from "../metrics/share-metrics.js";
import type { DeadLetter, DeadLetterSink } from "./dead-letters.js";
import {
  deadLetterRetryMaxMs,
  deadLetterRetryMinMs,
  maxDeadLettersPerRound,
  maxLoadedSharePartitions,
  maxShareBatchCacheBytes,
  maxShareWritesInFlight,
  shareIdleEvictionMs,
  shareReadChunkBytes,
  shareTickIntervalMs,
} from "./limits.js";
import { BatchCacheBudget, ShareBatchCache } from "./batch-cache.js";
import { SharePartition } from "./state/share-partition.js";
import type { AdmittedRun, DeadLetterCandidate, ShareLimits } from "./state/types.js";
import { isFencing, type ShareStateKey, type ShareStateStore } from "./store.js";

/** Why a share partition cannot be served here (answered as a per-partition error code). */
export interface ShareProblem {
  code: ErrorCode;
  message: string;
}

export function isShareProblem(x: unknown): x is ShareProblem {
  return typeof x === "object" && x !== null && "code" in x && "message" in x && !(x instanceof ShareEntry);
}

interface WriteWaiter {
  version: number;
  resolve: (problem: ShareProblem | undefined) => void;
}

/** One loaded share partition: a group's state on a partition this broker leads in `leaderEpoch`. */
export class ShareEntry {
  /** Long-polling ShareFetches of this share partition; woken when a record becomes acquirable. */
  readonly waiters = new Waiters();
  persistedVersion: number;
  /** The version the last write started carried. */
  sentVersion: number;
  writesInFlight = 0;
  readonly writeWaiters: WriteWaiter[] = [];
  dropped: ShareProblem | undefined;
  lastUsedMs: number;
  maxDeliveryAttempts: number;
  deadLetterRunning = false;
  deadLetterFailures = 0;
  deadLetterNextAttemptMs = 0;

  constructor(
    readonly id: string,
    readonly groupId: string,
    readonly partition: Partition,
    readonly leaderEpoch: number,
    readonly sp: SharePartition,
    nowMs: number,
    /** The batches this share partition read from the log last. */
    readonly cache: ShareBatchCache,
  ) {
    this.persistedVersion = sp.version;
    this.sentVersion = sp.version;
    this.lastUsedMs = nowMs;
    this.maxDeliveryAttempts = partition.config.maxDeliveryAttempts;
  }

  get key(): ShareStateKey {
    return { groupId: this.groupId, topic: this.partition.topic, partition: this.partition.index, leaderEpoch: this.leaderEpoch };
  }

  get name(): string {
    return `${this.groupId}/${this.partition.name}`;
  }
}

export interface ShareManagerOptions {
  /** The partition this broker hosts for (topic, index), to tell a replaced or deleted partition apart. */
  partition(topic: string, index: number): Partition | undefined;
  store: ShareStateStore;
  deadLetters: DeadLetterSink;
  logger: Logger;
  metrics?: ShareMetrics;
  /** Wall clock, ms since the Unix epoch (default Date.now). */
  nowMs?: () => number;
  limits?: ShareLimits;
  /** An impossible internal state: stop the process. */
  fatal(err: unknown): void;
}

function idOf(groupId: string, topic: string, partition: number): string {
  return `${groupId}\u0000${topic}\u0000${partition}`;
}

/**
 * Whole batches holding every offset of `runs` (ascending), skipping batches whose base offset is in
 * `seen`; taken from `cache` when given (and read into it otherwise).
 */
export function readBatchesCovering(p: Partition, runs: ReadonlyArray<{ firstOffset: bigint; lastOffset: bigint }>, seen: Set<bigint>, cache?: ShareBatchCache): { batches: Uint8Array[]; bytes: number } {
  const batches: Uint8Array[] = [];
  let bytes = 0;
  if (cache !== undefined) {
    for (const run of runs) {
      let offset = run.firstOffset;
      while (offset <= run.lastOffset) {
        // Up to the log end, not the high watermark (see below).
        const b = cache.batchContaining(p, offset > p.log.logStartOffset ? offset : p.log.logStartOffset, p.log.logEndOffset);
        if (b === undefined) return { batches, bytes };
        if (!seen.has(b.baseOffset)) {
          seen.add(b.baseOffset);
          batches.push(b.wire);
          bytes += b.wire.length;
        }
        offset = b.lastOffset + 1n;
      }
    }
    return { batches, bytes };
  }
  for (const run of runs) {
    let offset = run.firstOffset > p.log.logStartOffset ? run.firstOffset : p.log.logStartOffset;
    while (offset <= run.lastOffset) {
      // Up to the log end, not the high watermark: these records were admitted below some leader's high
      // watermark, so they are committed, and this leader's own high watermark may lag right after failover.
      const read = p.log.read(offset, shareReadChunkBytes, p.log.logEndOffset);
      if (read.batches.length === 0) return { batches, bytes };
      for (const b of read.batches) {
        const s = summarizeBatch(b);
        if (s.baseOffset > run.lastOffset) break;
        if (!seen.has(s.baseOffset)) {
          seen.add(s.baseOffset);
          batches.push(b);
          bytes += b.length;
        }
        offset = s.lastOffset + 1n;
      }
    }
  }
  return { batches, bytes };
}

/**
 * The records [firstOffset, lastOffset] of a stored batch (encoded RecordBatch) as a batch of their
 * own, for ShareFetch's acquired_records_only: the stored header and base offset, the records' bytes
 * untouched (they keep their offset_delta), record_count and crc of the slice. The stored bytes
 * themselves when the range covers the whole batch. The batch was checked when read from the log.
 */
export function sliceBatch(wire: Uint8Array, firstOffset: bigint, lastOffset: bigint, where: string): Uint8Array {
  const batch = RecordBatch.decode(wire);
  const h = batch.header;
  if (h === undefined) throw new InvariantError(`${where}: stored batch without a header`);
  // Compressed records cannot be cut without decompressing them: such a batch goes whole.
  if ((h.attributes & compressionCodecMask) !== 0) return wire;
  const base = h.baseOffset;
  const from = firstOffset > base ? Number(firstOffset - base) : 0;
  const to = Math.min(h.recordCount - 1, Number(lastOffset - base));
  if (from === 0 && to === h.recordCount - 1) return wire;
  if (from > to) throw new InvariantError(`${where}: slice [${firstOffset}, ${lastOffset}] misses the batch at ${base} (${h.recordCount} records)`);
  // A RecordSet is a run of length-delimited records (field 1) in offset_delta order: the slice is
  // the byte span of records from..to, found by walking the fields without decoding them.
  const reader = new BinaryReader(batch.records);
  let start = -1;
  let end = -1;
  for (let i = 0; i <= to && reader.pos < reader.len; ) {
    const fieldStart = reader.pos;
    const tag = reader.uint32();
    if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
      reader.skip(tag & 7);
      continue;
    }
    const len = reader.uint32();
    reader.pos += len;
    if (i === from) start = fieldStart;
    if (i === to) end = reader.pos;
    i++;
  }
  if (start < 0 || end < 0 || end > batch.records.length) throw new InvariantError(`${where}: batch at ${base} holds fewer than ${to + 1} records`);
  const records = batch.records.subarray(start, end);
  return RecordBatch.encode({ header: { ...h, recordCount: to - from + 1, crc: checksum(records) }, records }).finish();
}

/** The acquired runs' records as batches cut to each run (see sliceBatch), in offset order. */
export function readRunsCovering(p: Partition, runs: ReadonlyArray<{ firstOffset: bigint; lastOffset: bigint }>, cache: ShareBatchCache): { batches: Uint8Array[]; bytes: number } {
  const batches: Uint8Array[] = [];
  let bytes = 0;
  for (const run of runs) {
    for (const wire of readBatchesCovering(p, [run], new Set(), cache).batches) {
      const slice = sliceBatch(wire, run.firstOffset, run.lastOffset, p.name);
      batches.push(slice);
      bytes += slice.length;
    }
  }
  return { batches, bytes };
}

export class ShareManager {
  private readonly entries = new Map<string, ShareEntry>();
  private readonly loads = new Map<string, Promise<ShareEntry | ShareProblem>>();
  private readonly timer: NodeJS.Timeout;
  private readonly nowMs: () => number;
  private readonly cacheBudget = new BatchCacheBudget(maxShareBatchCacheBytes);
  private stopped = false;
  /** Numbers every share-state write of this process; increasing, so the controller can order a partition's writes. */
  private writeSequence = 0n;

  constructor(private readonly options: ShareManagerOptions) {
    this.nowMs = options.nowMs ?? Date.now;
    this.timer = setInterval(() => this.tick(), shareTickIntervalMs);
    options.metrics?.setLoadedSource(() => this.entries.size);
  }

  get loadedCount(): number {
    return this.entries.size;
  }

  now(): number {
    return this.nowMs();
  }

  /** The loaded share partition of `groupId` on `p` (loading it first), or why it cannot be served. */
  async entry(groupId: string, p: Partition): Promise<ShareEntry | ShareProblem> {
    // Two rounds at most: a load started in an older epoch is waited for, then a fresh one starts.
    for (let round = 0; round < 2; round++) {
      const problem = p.leaderProblem(undefined);
      if (problem !== undefined) return problem;
      const id = idOf(groupId, p.topic, p.index);
      const existing = this.entries.get(id);
      if (existing !== undefined) {
        if (this.current(existing)) {
          existing.lastUsedMs = this.nowMs();
          return existing;
        }
        this.drop(existing, this.notLeader(existing.partition));
      }
      const loading = this.loads.get(id) ?? this.load(id, groupId, p);
      if (isShareProblem(loading)) return loading;
      const loaded = await loading;
      if (isShareProblem(loaded)) return loaded;
      if (this.current(loaded) && loaded.partition === p) return loaded;
    }
    return this.notLeader(p);
  }

  private load(id: string, groupId: string, p: Partition): Promise<ShareEntry | ShareProblem> | ShareProblem {
    if (this.stopped) return { code: ErrorCode.NOT_LEADER, message: "broker is stopping" };
    if (this.entries.size + this.loads.size >= maxLoadedSharePartitions && !this.evictIdle()) {
      return { code: ErrorCode.THROTTLED, message: `broker holds ${this.entries.size} share partitions (at most ${maxLoadedSharePartitions}); retry later` };
    }
    const leaderEpoch = p.leaderEpoch;
    const promise = (async (): Promise<ShareEntry | ShareProblem> => {
      const read = await this.options.store.read({ groupId, topic: p.topic, partition: p.index, leaderEpoch });
      if (!read.ok) return { code: read.code, message: `${groupId}/${p.name}: ${read.message}` };
      if (p.role !== "leader" || p.leaderEpoch !== leaderEpoch || this.options.partition(p.topic, p.index) !== p || this.stopped) return this.notLeader(p);
      const sp = SharePartition.create({
        state: read.state,
        logStartOffset: p.log.logStartOffset,
        logEndOffset: p.log.logEndOffset,
        settings: { maxDeliveryAttempts: p.config.maxDeliveryAttempts },
        ...(this.options.limits === undefined ? {} : { limits: this.options.limits }),
        partition: p.name,
      });
      const e = new ShareEntry(id, groupId, p, leaderEpoch, sp, this.nowMs(), new ShareBatchCache(this.cacheBudget));
      this.entries.set(id, e);
      this.options.logger.info({ group: groupId, partition: p.name, leaderEpoch, found: read.state !== undefined, start: String(sp.startOffset), end: String(sp.endOffset) }, "loaded share partition");
      return e;
    })().finally(() => {
      if (this.loads.get(id) === promise) this.loads.delete(id);
    });
    this.loads.set(id, promise);
    return promise;
  }

  private notLeader(p: Partition): ShareProblem {
    return p.leaderProblem(undefined) ?? { code: ErrorCode.NOT_LEADER, message: `broker no longer leads ${p.name} in the epoch its share state was loaded in` };
  }

  /** Still the state of a partition this broker leads, in the epoch it was loaded in. */
  current(e: ShareEntry): boolean {
    const p = e.partition;
    return e.dropped === undefined && this.entries.get(e.id) === e && p.role === "leader" && p.leaderEpoch === e.leaderEpoch && this.options.partition(p.topic, p.index) === p;
  }

  private drop(e: ShareEntry, problem: ShareProblem): void {
    if (e.dropped !== undefined) return;
    e.dropped = problem;
    if (this.entries.get(e.id) === e) this.entries.delete(e.id);
    e.cache.clear();
    for (const w of e.writeWaiters.splice(0)) w.resolve(problem);
    e.waiters.wakeAll();
    this.options.logger.info({ group: e.groupId, partition: e.partition.name, leaderEpoch: e.leaderEpoch, why: problem.message }, "dropped share partition state");
  }

  /** Unloads the longest-idle share partition that holds nothing in flight; false when none can go. */
  private evictIdle(): boolean {
    const now = this.nowMs();
    let victim: ShareEntry | undefined;
    for (const e of this.entries.values()) {
      if (victim !== undefined && e.lastUsedMs >= victim.lastUsedMs) continue;
      if (this.isIdle(e, now, 0)) victim = e;
    }
    if (victim === undefined) return false;
    this.drop(victim, { code: ErrorCode.NOT_LEADER, message: "share partition unloaded; retry" });
    return true;
  }

  private isIdle(e: ShareEntry, now: number, idleMs: number): boolean {
    if (now - e.lastUsedMs < idleMs || e.writesInFlight > 0 || e.deadLetterRunning || e.waiters.size > 0 || e.sp.version !== e.persistedVersion) return false;
    const s = e.sp.summary();
    return s.acquired === 0 && s.deadLettering === 0;
  }

  /** Moves records from the log (below the high watermark) into the window, as far as it has room. */
  admit(e: ShareEntry): void {
    const p = e.partition;
    const sp = e.sp;
    if (p.log.logStartOffset > sp.startOffset) sp.advanceLogStart(p.log.logStartOffset);
    let room = sp.windowRoom();
    const hw = p.log.highWatermark;
    let next = sp.endOffset;
    const runs: AdmittedRun[] = [];
    // Batch by batch through the cache: admission usually stops inside a batch (the window is full)
    // and goes on from there at the next fetch.
    while (room > 0 && next < hw) {
      const b = e.cache.batchContaining(p, next, hw);
      if (b === undefined) break;
      const scan = e.cache.notBeforeOf(b);
      for (let i = next > scan.baseOffset ? Number(next - scan.baseOffset) : 0; i < scan.notBeforeMs.length && room > 0; i++) {
        const offset = scan.baseOffset + BigInt(i);
        if (offset !== next) throw new InvariantError(`${e.name}: admission expected offset ${next} next, the log holds ${offset} (batch at ${scan.baseOffset})`);
        const notBeforeMs = scan.notBeforeMs[i]!;
        const last = runs[runs.length - 1];
        if (last !== undefined && last.notBeforeMs === notBeforeMs) last.lastOffset = offset;
        else runs.push({ firstOffset: offset, lastOffset: offset, notBeforeMs });
        next = offset + 1n;
        room--;
      }
      if (room > 0 && next <= b.lastOffset) throw new InvariantError(`${e.name}: batch [${b.baseOffset}, ${b.lastOffset}] scanned ${scan.notBeforeMs.length} records; admission stopped at ${next}`);
    }
    if (runs.length > 0) sp.admit(runs);
  }

  /** Resolves once a write covering every change made so far is durable (undefined), or with why not. */
  persist(e: ShareEntry): Promise<ShareProblem | undefined> {
    if (e.dropped !== undefined) return Promise.resolve(e.dropped);
    const version = e.sp.version;
    if (version <= e.persistedVersion) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      e.writeWaiters.push({ version, resolve });
      this.pump(e);
    });
  }

  /** Starts a write of `e`'s changes not yet sent, unless maxShareWritesInFlight are in flight (then they ride the next). */
  private pump(e: ShareEntry): void {
    if (e.dropped !== undefined) return;
    const version = e.sp.version;
    if (version === e.persistedVersion) {
      for (const w of e.writeWaiters.splice(0)) w.resolve(undefined);
      return;
    }
    if (version === e.sentVersion || e.writesInFlight >= maxShareWritesInFlight) return;
    e.writesInFlight++;
    e.sentVersion = version;
    const state = e.sp.toState();
    this.writeSequence += 1n;
    void this.options.store
      .write(e.key, state, this.writeSequence)
      .catch((err: unknown) => ({ ok: false as const, code: ErrorCode.UNKNOWN_SERVER_ERROR, message: (err as Error).message }))
      .then((res) => {
        e.writesInFlight--;
        if (e.dropped !== undefined) return;
        if (res.ok) {
          if (version > e.persistedVersion) e.persistedVersion = version;
          this.settleWaiters(e, version, undefined);
        } else if (isFencing(res.code)) {
          this.drop(e, { code: res.code === ErrorCode.FENCED_LEADER_EPOCH ? res.code : ErrorCode.NOT_LEADER, message: `${e.name}: share state write fenced: ${res.message}` });
          return;
        } else {
          // Not durable, not fenced (controller unreachable, ...): those waiting for it hear why; the
          // state stays and the next write carries it.
          if (e.sentVersion > e.persistedVersion) e.sentVersion = e.persistedVersion;
          this.options.logger.warn({ group: e.groupId, partition: e.partition.name, error: ErrorCode[res.code], message: res.message }, "share state write failed");
          this.settleWaiters(e, version, { code: res.code, message: `${e.name}: ${res.message}` });
        }
        if (e.writeWaiters.length > 0) this.pump(e);
      });
  }

  private settleWaiters(e: ShareEntry, version: number, problem: ShareProblem | undefined): void {
    const remaining: WriteWaiter[] = [];
    for (const w of e.writeWaiters.splice(0)) {
      if (w.version <= version) w.resolve(problem);
      else remaining.push(w);
    }
    e.writeWaiters.push(...remaining);
  }

  /** Wakes long polls of `e` when some record is acquirable now. */
  wakeIfAcquirable(e: ShareEntry, now: number): void {
    if (e.waiters.size > 0 && e.sp.hasAcquirable(now)) e.waiters.wakeAll();
  }

  /** One pass over every loaded share partition (runs every shareTickIntervalMs). */
  tick(): void {
    if (this.stopped) return;
    const now = this.nowMs();
    for (const e of [...this.entries.values()]) {
      if (!this.current(e)) {
        this.drop(e, this.notLeader(e.partition));
        continue;
      }
      try {
        const p = e.partition;
        if (p.config.maxDeliveryAttempts !== e.maxDeliveryAttempts) {
          e.maxDeliveryAttempts = p.config.maxDeliveryAttempts;
          e.sp.setSettings({ maxDeliveryAttempts: e.maxDeliveryAttempts });
        }
        if (p.log.logStartOffset > e.sp.startOffset) e.sp.advanceLogStart(p.log.logStartOffset);
        const wake = e.sp.nextWakeMs();
        if (wake !== undefined && wake <= now) {
          const before = e.sp.summary().acquired;
          e.sp.expire(now);
          this.options.metrics?.locksExpired(before - e.sp.summary().acquired);
        }
        this.wakeIfAcquirable(e, now);
        this.maybeDeadLetter(e, now);
        if (e.sp.version !== e.sentVersion && e.writesInFlight === 0) void this.persist(e);
        if (this.isIdle(e, now, shareIdleEvictionMs)) this.drop(e, { code: ErrorCode.NOT_LEADER, message: "share partition unloaded after being idle; retry" });
      } catch (err) {
        if (err instanceof InvariantError) {
          this.options.fatal(err);
          return;
        }
        this.options.logger.error({ group: e.groupId, partition: e.partition.name, err: (err as Error).message }, "share partition tick failed");
      }
    }
  }

  private maybeDeadLetter(e: ShareEntry, now: number): void {
    if (e.deadLetterRunning || now < e.deadLetterNextAttemptMs) return;
    const candidates = e.sp.deadLetterCandidates();
    if (candidates.length === 0) return;
    e.deadLetterRunning = true;
    this.deadLetter(e, candidates.slice(0, maxDeadLettersPerRound))
      .then(
        () => {
          e.deadLetterFailures = 0;
          e.deadLetterNextAttemptMs = 0;
        },
        (err: unknown) => {
          if (err instanceof InvariantError) {
            this.options.fatal(err);
            return;
          }
          e.deadLetterFailures++;
          const backoff = Math.min(deadLetterRetryMaxMs, deadLetterRetryMinMs * 2 ** Math.min(e.deadLetterFailures, 20));
          e.deadLetterNextAttemptMs = this.nowMs() + backoff;
          this.options.logger.warn({ group: e.groupId, partition: e.partition.name, failures: e.deadLetterFailures, retryInMs: backoff, err: (err as Error).message }, "dead letters not produced; will retry");
        },
      )
      .finally(() => {
        e.deadLetterRunning = false;
      });
  }

  /** Produces `candidates` to the dead-letter topic, then archives them and persists. */
  private async deadLetter(e: ShareEntry, candidates: readonly DeadLetterCandidate[]): Promise<void> {
    const p = e.partition;
    const topic = deadLetterTopicOf(p.topic, p.config);
    const byOffset = new Map(candidates.map((c) => [c.offset, c]));
    const logStart = p.log.logStartOffset;
    // Records retention already deleted cannot be sent; they count as settled.
    const gone = candidates.filter((c) => c.offset < logStart).map((c) => c.offset);
    const letters: DeadLetter[] = [];
    const sent: bigint[] = [];
    const now = this.nowMs();
    const runs = candidates.filter((c) => c.offset >= logStart).map((c) => ({ firstOffset: c.offset, lastOffset: c.offset }));
    for (const wire of readBatchesCovering(p, runs, new Set()).batches) {
      for (const r of decodeBatch(RecordBatch.decode(wire))) {
        const c = byOffset.get(r.offset);
        if (c === undefined) continue;
        byOffset.delete(r.offset);
        const headers: RecordHeader[] = r.headers.filter((h) => !h.key.startsWith(deadLetterHeaderPrefix));
        const text = (key: string, value: string) => headers.push({ key, value: new TextEncoder().encode(value) });
        text(deadLetterHeaders.topic, p.topic);
        text(deadLetterHeaders.partition, String(p.index));
        text(deadLetterHeaders.offset, String(r.offset));
        text(deadLetterHeaders.attempts, String(c.deliveryCount));
        text(deadLetterHeaders.reason, c.reason);
        text(deadLetterHeaders.time, String(now));
        letters.push({ key: r.key, value: r.value, headers });
        sent.push(r.offset);
      }
    }
    if (letters.length > 0) await this.options.deadLetters.produce(topic, letters, p);
    if (!this.current(e)) return; // the next leader sends them again (dead letters are at-least-once)
    if (gone.length > 0) this.options.logger.warn({ group: e.groupId, partition: p.name, offsets: gone.map(String) }, "records to dead-letter were deleted by retention first");
    e.sp.deadLettered([...sent, ...gone]);
    this.options.metrics?.recordsDeadLettered(sent.length);
    this.options.logger.info({ group: e.groupId, partition: p.name, deadLetterTopic: topic, records: sent.length }, "dead-lettered records");
    const problem = await this.persist(e);
    if (problem !== undefined) this.options.logger.warn({ group: e.groupId, partition: p.name, error: ErrorCode[problem.code], message: problem.message }, "dead-lettered records not persisted yet");
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    for (const e of [...this.entries.values()]) this.drop(e, { code: ErrorCode.NOT_LEADER, message: "broker is stopping" });
    await this.options.deadLetters.close().catch(() => undefined);
  }
}
