// Consumer without a group: the application assigns partitions and seeks; records come out of an
// async iterator in offset order per partition. Behind it, one long-poll fetch is in flight per
// leader broker at a time, and fetching stops while more than maxPrefetchBytes of records wait to be
// taken (bounded memory). A fetch that starts inside a batch gets the whole batch; records below the
// wanted offset are skipped here. Leader changes are followed through a metadata refresh;
// OFFSET_OUT_OF_RANGE resets the position per resetPolicy or surfaces an OffsetOutOfRangeError.
// (Group membership and committed offsets will be added on top of this, not beside it.)
import { BatchError, ErrorCode, decodeBatch, type FetchPartitionResponse } from "@runnel/proto";
import {
  ClientUsageError, CorruptBatchError, OffsetOutOfRangeError, RunnelError, errorFromCode, needsMetadataRefresh,
} from "../errors/index.js";
import type { ChannelPool } from "../network/index.js";
import type { ClusterMetadata } from "../metadata/index.js";
import { listOffsets } from "../metadata/offsets.js";
import { backoffMs, retryPolicy, type RetryOptions, type RetryPolicy } from "../retry/index.js";

export const defaultMaxWaitMs = 500;
export const defaultMinBytes = 1;
export const defaultFetchMaxBytes = 16 * 1024 * 1024;
export const defaultPartitionMaxBytes = 1024 * 1024;
export const defaultMaxPrefetchBytes = 32 * 1024 * 1024;
/** The broker allows long polls up to this long. */
export const maxFetchWaitMs = 60_000;

export type ResetPolicy = "earliest" | "latest" | "none";

export interface ConsumerOptions {
  /** Longest a fetch waits at the broker for minBytes, in milliseconds. */
  maxWaitMs?: number;
  /** A fetch answers once this many bytes are available. */
  minBytes?: number;
  /** Most bytes per fetch response. */
  maxBytes?: number;
  /** Most bytes per partition per fetch. */
  partitionMaxBytes?: number;
  /** Stop fetching while this many bytes of records wait in the consumer. */
  maxPrefetchBytes?: number;
  /** Where to start when a partition has no position, or its position is out of range. "none": raise OffsetOutOfRangeError. */
  resetPolicy?: ResetPolicy;
  retry?: RetryOptions;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface ConsumerHeader {
  key: string;
  value: Buffer;
}

export interface ConsumerRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
  headers: ConsumerHeader[];
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  leaderEpoch: number;
}

export type SeekTarget = bigint | number | "earliest" | "latest" | { timestamp: number };

export interface ConsumerContext {
  pool: ChannelPool;
  metadata: ClusterMetadata;
  retry: RetryOptions;
  requestTimeoutMs: number;
}

interface PartitionState {
  tp: TopicPartition;
  /** Next offset to fetch; undefined until resolved. Runs ahead of `consumed` by what is buffered. */
  position: bigint | undefined;
  /** Next offset the application will get (after the last record it took), once it took one. */
  consumed: bigint | undefined;
  /** A seek waiting to be resolved through ListOffsets. */
  target: "earliest" | "latest" | { timestamp: number } | undefined;
  resolving: boolean;
  paused: boolean;
  /** Bumped by seek/pause so answers to older fetches are dropped. */
  generation: number;
  fetching: boolean;
  failures: number;
  backoffUntilMs: number;
  highWatermark: bigint;
}

function buf(u: Uint8Array | undefined): Buffer | null {
  return u === undefined ? null : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function key(tp: TopicPartition): string {
  return `${tp.topic}\u0000${tp.partition}`;
}

export class Consumer implements AsyncIterable<ConsumerRecord> {
  private readonly opts: Required<Omit<ConsumerOptions, "retry">>;
  private readonly policy: RetryPolicy;
  private readonly partitions = new Map<string, PartitionState>();
  private readonly fetchingLeaders = new Set<string>();
  private buffer: Array<{ record: ConsumerRecord; bytes: number; generation: number }> = [];
  private bufferedBytes = 0;
  private errors: RunnelError[] = [];
  private waiters: Array<() => void> = [];
  private wakeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly ctx: ConsumerContext, options: ConsumerOptions = {}) {
    this.opts = {
      maxWaitMs: options.maxWaitMs ?? defaultMaxWaitMs,
      minBytes: options.minBytes ?? defaultMinBytes,
      maxBytes: options.maxBytes ?? defaultFetchMaxBytes,
      partitionMaxBytes: options.partitionMaxBytes ?? defaultPartitionMaxBytes,
      maxPrefetchBytes: options.maxPrefetchBytes ?? defaultMaxPrefetchBytes,
      resetPolicy: options.resetPolicy ?? "latest",
    };
    if (!(this.opts.maxWaitMs >= 0 && this.opts.maxWaitMs <= maxFetchWaitMs)) throw new RangeError(`maxWaitMs must be 0..${maxFetchWaitMs}, got ${this.opts.maxWaitMs}`);
    if (!(this.opts.maxPrefetchBytes >= 1)) throw new RangeError(`maxPrefetchBytes must be >= 1, got ${this.opts.maxPrefetchBytes}`);
    if (!["earliest", "latest", "none"].includes(this.opts.resetPolicy)) throw new RangeError(`resetPolicy must be earliest, latest or none`);
    this.policy = retryPolicy({ ...ctx.retry, ...options.retry });
  }

  /** Replaces the assignment. Partitions kept keep their position; new ones start per resetPolicy unless sought. */
  assign(tps: readonly TopicPartition[]): void {
    this.assertOpen();
    const keep = new Set(tps.map(key));
    for (const [k, ps] of this.partitions) {
      if (!keep.has(k)) {
        this.partitions.delete(k);
        this.dropBuffered(ps);
      }
    }
    for (const tp of tps) {
      if (!this.partitions.has(key(tp))) {
        this.partitions.set(key(tp), {
          tp: { topic: tp.topic, partition: tp.partition }, position: undefined, consumed: undefined,
          target: this.opts.resetPolicy === "none" ? undefined : this.opts.resetPolicy,
          resolving: false, paused: false, generation: 0, fetching: false, failures: 0, backoffUntilMs: 0, highWatermark: -1n,
        });
      }
    }
    this.wake();
  }

  assignment(): TopicPartition[] {
    return [...this.partitions.values()].map((p) => ({ ...p.tp }));
  }

  /** Moves a partition's position: an offset, the earliest or latest offset, or the first offset at a timestamp. */
  seek(tp: TopicPartition, target: SeekTarget): void {
    this.assertOpen();
    const ps = this.state(tp);
    ps.generation += 1;
    this.dropBuffered(ps);
    ps.failures = 0;
    ps.backoffUntilMs = 0;
    ps.consumed = undefined;
    if (typeof target === "bigint" || typeof target === "number") {
      const offset = BigInt(target);
      if (offset < 0n) throw new RangeError(`seek offset must be >= 0, got ${offset} for topic "${tp.topic}" partition ${tp.partition}`);
      ps.position = offset;
      ps.target = undefined;
    } else {
      ps.position = undefined;
      ps.target = target;
    }
    this.wake();
  }

  /** The next offset this partition will yield, if known. */
  position(tp: TopicPartition): bigint | undefined {
    const ps = this.state(tp);
    return ps.consumed ?? ps.position;
  }

  /** Stops fetching these partitions; records already buffered for them are dropped and refetched on resume. */
  pause(tps: readonly TopicPartition[]): void {
    for (const tp of tps) {
      const ps = this.state(tp);
      ps.paused = true;
      ps.generation += 1;
      this.dropBuffered(ps);
    }
  }

  resume(tps: readonly TopicPartition[]): void {
    for (const tp of tps) this.state(tp).paused = false;
    this.wake();
  }

  paused(): TopicPartition[] {
    return [...this.partitions.values()].filter((p) => p.paused).map((p) => ({ ...p.tp }));
  }

  /** Ends iteration; fetches still running are ignored. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.notify();
  }

  /** The next record, or undefined once closed. Throws a partition's error (e.g. OffsetOutOfRangeError) once. */
  async next(): Promise<ConsumerRecord | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      const item = this.buffer.shift();
      if (item !== undefined) {
        this.bufferedBytes -= item.bytes;
        const ps = this.partitions.get(key(item.record));
        if (ps !== undefined && ps.generation === item.generation) {
          ps.consumed = item.record.offset + 1n;
          if (this.bufferedBytes < this.opts.maxPrefetchBytes) this.wake();
          return item.record;
        }
        continue;
      }
      const err = this.errors.shift();
      if (err !== undefined) throw err;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        this.wake();
      });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<ConsumerRecord> {
    return {
      next: async () => {
        const record = await this.next();
        return record === undefined ? { done: true, value: undefined } : { done: false, value: record };
      },
    };
  }

  // --- engine ------------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new ClientUsageError("the consumer is closed", { code: ErrorCode.INVALID_REQUEST, retriable: false });
  }

  private state(tp: TopicPartition): PartitionState {
    const ps = this.partitions.get(key(tp));
    if (ps === undefined) throw new ClientUsageError(`topic "${tp.topic}" partition ${tp.partition} is not assigned to this consumer`, { code: ErrorCode.INVALID_REQUEST, retriable: false, topic: tp.topic, partition: tp.partition });
    return ps;
  }

  private dropBuffered(ps: PartitionState): void {
    const k = key(ps.tp);
    let first: bigint | undefined;
    this.buffer = this.buffer.filter((item) => {
      if (key(item.record) !== k) return true;
      first ??= item.record.offset;
      this.bufferedBytes -= item.bytes;
      return false;
    });
    // Paused partitions resume where the application stopped reading, not after the dropped records.
    if (first !== undefined && ps.target === undefined && ps.position !== undefined && first < ps.position) ps.position = first;
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private fail(err: RunnelError): void {
    this.errors.push(err);
    this.notify();
  }

  private wake(): void {
    if (this.closed) return;
    queueMicrotask(() => this.tick());
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    let nextWakeMs = Infinity;
    const toResolve = new Map<string, PartitionState[]>();
    const byLeader = new Map<string, PartitionState[]>();
    for (const ps of this.partitions.values()) {
      if (ps.paused || ps.fetching || ps.resolving) continue;
      if (ps.backoffUntilMs > now) {
        nextWakeMs = Math.min(nextWakeMs, ps.backoffUntilMs);
        continue;
      }
      if (ps.position === undefined) {
        if (ps.target === undefined) {
          ps.backoffUntilMs = Infinity;
          this.fail(new OffsetOutOfRangeError(`topic "${ps.tp.topic}" partition ${ps.tp.partition} has no position and resetPolicy is "none": seek first`, {
            code: ErrorCode.OFFSET_OUT_OF_RANGE, retriable: false, topic: ps.tp.topic, partition: ps.tp.partition,
          }));
          continue;
        }
        const k = `${ps.tp.topic}\u0000${JSON.stringify(ps.target)}`;
        toResolve.set(k, [...(toResolve.get(k) ?? []), ps]);
        continue;
      }
      if (this.bufferedBytes >= this.opts.maxPrefetchBytes) continue;
      let leader: string;
      try {
        leader = this.ctx.metadata.leaderFor(ps.tp.topic, ps.tp.partition).address;
      } catch (err) {
        this.onPartitionError(ps, err);
        continue;
      }
      if (this.fetchingLeaders.has(leader)) continue;
      byLeader.set(leader, [...(byLeader.get(leader) ?? []), ps]);
    }
    for (const group of toResolve.values()) void this.resolve(group);
    for (const [leader, group] of byLeader) void this.fetch(leader, group);
    if (nextWakeMs !== Infinity && this.wakeTimer === undefined) {
      this.wakeTimer = setTimeout(() => {
        this.wakeTimer = undefined;
        this.tick();
      }, Math.max(1, nextWakeMs - now));
    }
  }

  private async resolve(group: PartitionState[]): Promise<void> {
    const target = group[0]!.target!;
    const generations = group.map((ps) => ps.generation);
    for (const ps of group) ps.resolving = true;
    try {
      await this.ctx.metadata.ensureTopic(group[0]!.tp.topic);
      const offsets = await listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, group[0]!.tp.topic, target, group.map((ps) => ps.tp.partition));
      group.forEach((ps, i) => {
        if (ps.generation !== generations[i]) return;
        const found = offsets.find((o) => o.partition === ps.tp.partition);
        if (found === undefined) return;
        ps.position = found.offset;
        ps.target = undefined;
        ps.failures = 0;
      });
    } catch (err) {
      for (const ps of group) this.onPartitionError(ps, err);
    } finally {
      for (const ps of group) ps.resolving = false;
      this.wake();
    }
  }

  private async fetch(leader: string, group: PartitionState[]): Promise<void> {
    this.fetchingLeaders.add(leader);
    const sent = group.map((ps) => ({ ps, generation: ps.generation, offset: ps.position! }));
    for (const ps of group) ps.fetching = true;
    const topics = new Map<string, typeof sent>();
    for (const s of sent) topics.set(s.ps.tp.topic, [...(topics.get(s.ps.tp.topic) ?? []), s]);
    try {
      const res = await this.ctx.pool.broker(leader, "fetch", {
        maxWaitMs: this.opts.maxWaitMs,
        minBytes: this.opts.minBytes,
        maxBytes: this.opts.maxBytes,
        topics: [...topics].map(([topic, list]) => ({
          topic,
          partitions: list.map((s) => ({
            partition: s.ps.tp.partition,
            fetchOffset: s.offset,
            partitionMaxBytes: this.opts.partitionMaxBytes,
            currentLeaderEpoch: this.ctx.metadata.topic(topic)?.partitions[s.ps.tp.partition]?.leaderEpoch,
          })),
        })),
      }, this.ctx.requestTimeoutMs + this.opts.maxWaitMs);
      for (const t of res.topics) {
        for (const p of t.partitions) {
          const s = sent.find((x) => x.ps.tp.topic === t.topic && x.ps.tp.partition === p.partition);
          if (s === undefined || s.ps.generation !== s.generation || this.partitions.get(key(s.ps.tp)) !== s.ps) continue;
          this.onPartitionData(s.ps, s.offset, p, leader);
        }
      }
    } catch (err) {
      for (const s of sent) if (s.ps.generation === s.generation) this.onPartitionError(s.ps, err);
    } finally {
      for (const ps of group) ps.fetching = false;
      this.fetchingLeaders.delete(leader);
      this.wake();
    }
  }

  private onPartitionData(ps: PartitionState, fetchOffset: bigint, p: FetchPartitionResponse, leader: string): void {
    const { topic, partition } = ps.tp;
    if (p.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      const err = errorFromCode(p.errorCode, {
        topic, partition, offset: fetchOffset, address: leader, detail: p.errorMessage, leaderHint: p.currentLeader,
        logStartOffset: p.logStartOffset, logEndOffset: p.logEndOffset,
      });
      if (err instanceof OffsetOutOfRangeError) {
        if (this.opts.resetPolicy === "none") {
          ps.backoffUntilMs = Infinity; // until the application seeks
          this.fail(err);
        } else {
          ps.position = undefined;
          ps.target = this.opts.resetPolicy;
        }
        return;
      }
      this.onPartitionError(ps, err);
      return;
    }
    ps.failures = 0;
    ps.highWatermark = p.highWatermark;
    let next = fetchOffset;
    for (const batch of p.batches) {
      let records;
      try {
        records = decodeBatch(batch);
      } catch (err) {
        const message = err instanceof BatchError ? err.message : String(err);
        ps.backoffUntilMs = Infinity;
        this.fail(new CorruptBatchError(`corrupt batch from ${leader} in topic "${topic}" partition ${partition} at offset ${batch.header?.baseOffset}: ${message}`, {
          code: ErrorCode.CORRUPT_BATCH, retriable: false, topic, partition, offset: batch.header?.baseOffset, address: leader,
        }));
        break;
      }
      for (const r of records) {
        if (r.offset < next) continue; // the batch started before the offset we asked for
        const record: ConsumerRecord = {
          topic, partition, offset: r.offset, key: buf(r.key), value: buf(r.value),
          headers: r.headers.map((h) => ({ key: h.key, value: buf(h.value)! })),
          timestamp: Number(r.timestamp), leaderEpoch: r.leaderEpoch,
        };
        const bytes = 64 + (r.key?.length ?? 0) + (r.value?.length ?? 0);
        this.buffer.push({ record, bytes, generation: ps.generation });
        this.bufferedBytes += bytes;
        next = r.offset + 1n;
      }
    }
    // Positions move as records are taken; fetching continues from what is buffered.
    if (next > fetchOffset) {
      ps.position = next;
      this.notify();
    }
  }

  private onPartitionError(ps: PartitionState, err: unknown): void {
    const runnelErr = err instanceof RunnelError ? err : new RunnelError(String(err), { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true });
    if (!runnelErr.retriable && !needsMetadataRefresh(runnelErr)) {
      ps.backoffUntilMs = Infinity; // until the application seeks again
      this.fail(runnelErr);
      return;
    }
    ps.failures += 1;
    ps.backoffUntilMs = Date.now() + backoffMs(this.policy, ps.failures, Math.random());
    if (needsMetadataRefresh(runnelErr)) this.ctx.metadata.refresh([ps.tp.topic]).then(() => this.wake(), () => undefined);
    this.wake();
  }
}
