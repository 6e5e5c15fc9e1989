// One partition's log: batches keyed by base offset in the partition's own LMDB database, plus its
// metadata (log start offset, high watermark checkpoint, leader-epoch cache, size checkpoint) in the
// store's metadata database. All bookkeeping (log end offset, size, epochs) changes synchronously
// when a write is issued, and every write that must be atomic with another (a batch and the epoch
// it opens, retention deletes and the new log start) is issued in the same event turn, which
// lmdb-js commits as one transaction, in issue order. The newest batches appended as leader are also
// kept in memory (the tail cache), so followers and consumers reading at the tail do not touch
// LMDB's memory map: every page read through the map stays in the broker's resident set.
import type { Database } from "lmdb";
import { checksum, decodeBatch, type EpochEndOffset, logAppendTimeFlag, type RecordBatch, RecordBatchHeader } from "@runnel/proto";
import {
  type BatchSummary,
  checkStored,
  encodeStoredBatch,
  keyOffset,
  MalformedBatchError,
  offsetKey,
  storeWireBatch,
  type StoredValuePool,
  summarizeBatch,
  wireToRecordBatch,
} from "./codec.js";
import { type EpochEntry, LeaderEpochCache } from "./epoch-cache.js";
import { endOffsetForEpoch } from "../replication/state/epochs.js";
import { InvalidBatchError, InvariantError, LogUnavailableError, OffsetOutOfRangeError, StorageCorruptionError } from "./errors.js";
import { maxBatchesPerRead, maxRetentionDeletesPerTxn, maxTailCacheBytesPerPartition, storedChecksumBytes } from "./limits.js";

export interface LogConfig {
  /** Delete batches whose max timestamp is older than this; -1 keeps forever. */
  retentionMs: number;
  /** Delete the oldest batches while stored bytes exceed this; -1 means no limit. */
  retentionBytes: number;
  /** Largest batch the topic accepts (checked by the caller before appending). */
  maxMessageBytes: number;
}

export interface AppendInfo {
  baseOffset: bigint;
  lastOffset: bigint;
  logEndOffset: bigint;
  maxTimestamp: bigint;
}

export interface ReadResult {
  /** Encoded RecordBatch messages (views without the storage checksum), in offset order. */
  batches: Uint8Array[];
  bytes: number;
  firstOffset: bigint | undefined;
}

/** A partition's metadata record as stored (offsets as decimal strings: JSON has no int64). */
export interface PartitionMetaRecord {
  format: 1;
  topicId: string;
  topicName: string;
  partition: number;
  dbName: string;
  logStartOffset: string;
  highWatermark: string;
  epochs: Array<[number, string]>;
  /** Stored bytes of every batch in [logStartOffset, sizeEndOffset) when the record was written. */
  sizeBytes: number;
  sizeEndOffset: string;
}

/** What a PartitionLog needs from its LogStore. Not part of the public API. */
export interface PartitionHost {
  readonly metaDb: Database<PartitionMetaRecord, string>;
  /** Memory for stored values, shared by the store's partitions. */
  readonly valuePool: StoredValuePool;
  /** The partition has writes that are not yet known to be flushed. */
  markUnflushed(partition: PartitionLog): void;
  /** A write committed: let the background flush watcher pick it up. */
  requestBackgroundFlush(): void;
}

/** A flush in progress: the log end offset it will make durable (lowered by a truncation meanwhile). */
export interface FlushTarget {
  offset: bigint;
}

interface PendingWrite {
  storedBytes: number;
}

/** A committed batch kept in memory: its wire bytes (own copy, never a pool region) and offsets. */
interface TailBatch {
  baseOffset: bigint;
  lastOffset: bigint;
  wire: Uint8Array;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

export class PartitionLog {
  readonly #host: PartitionHost;
  readonly #db: Database<Uint8Array, Buffer>;
  readonly #metaKey: string;
  readonly #dbName: string;
  readonly #where: string;
  #config: LogConfig;

  #logStart: bigint;
  #logEnd: bigint;
  #highWatermark: bigint;
  #flushed: bigint;
  #sizeBytes: number;
  #checkpointedHighWatermark: bigint;
  readonly #epochs: LeaderEpochCache;
  /** Batches written but not yet committed, by base offset: truncation must remove them too. */
  readonly #pending = new Map<bigint, PendingWrite>();
  readonly #flushTargets = new Set<FlushTarget>();
  /**
   * The newest committed batches this replica appended as leader, contiguous and ending at the
   * newest commit (#committedEnd), at most maxTailCacheBytesPerPartition: reads at the tail come
   * from here instead of LMDB's map.
   */
  #tail: TailBatch[] = [];
  #tailBytes = 0;
  /** One past the last offset of the newest committed batch. */
  #committedEnd: bigint;
  #unavailable: LogUnavailableError | undefined;

  /** Use LogStore.openPartition. */
  constructor(
    readonly topicId: string,
    readonly topicName: string,
    readonly partition: number,
    init: {
      host: PartitionHost;
      db: Database<Uint8Array, Buffer>;
      metaKey: string;
      dbName: string;
      config: LogConfig;
      meta: PartitionMetaRecord | undefined;
    },
  ) {
    this.#host = init.host;
    this.#db = init.db;
    this.#metaKey = init.metaKey;
    this.#dbName = init.dbName;
    this.#config = { ...init.config };
    this.#where = `partition ${topicName}-${partition} (topic id ${topicId})`;
    const recovered = this.#recover(init.meta);
    this.#logStart = recovered.logStart;
    this.#logEnd = recovered.logEnd;
    this.#highWatermark = recovered.highWatermark;
    this.#sizeBytes = recovered.sizeBytes;
    this.#committedEnd = recovered.logEnd;
    this.#epochs = recovered.epochs;
    // Nothing recovered counts as flushed until the store's first fsync after opening has covered it.
    this.#flushed = this.#logStart;
    this.#checkpointedHighWatermark = init.meta === undefined ? -1n : BigInt(init.meta.highWatermark);
    this.#checkState("recovery");
    if (recovered.metaOutdated) void this.#writeMeta().catch(() => undefined);
  }

  get logStartOffset(): bigint {
    return this.#logStart;
  }

  get logEndOffset(): bigint {
    return this.#logEnd;
  }

  get highWatermark(): bigint {
    return this.#highWatermark;
  }

  get flushedOffset(): bigint {
    return this.#flushed;
  }

  /** Stored bytes of every batch in the log (each batch's encoded RecordBatch plus its 4-byte checksum). */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  get config(): Readonly<LogConfig> {
    return this.#config;
  }

  setConfig(config: LogConfig): void {
    this.#config = { ...config };
  }

  /**
   * Appends a batch the caller has validated (header.crc must be the records' CRC32C: the stored
   * form relies on it, so a wrong one makes the batch unreadable), as leader in `leaderEpoch`.
   * Offsets are assigned and the log end offset advances now; the promise resolves when the batch is
   * committed (readable), which is not yet fsynced (see flushedOffset). With `appendTimeMs`
   * (LogAppendTime topics) the batch's timestamps move to the append time, keeping the records'
   * deltas, and the LogAppendTime attribute bit is set.
   */
  appendAsLeader(batch: RecordBatch, leaderEpoch: number, appendTimeMs?: bigint): Promise<AppendInfo> {
    this.#ensureAvailable();
    const header = batch.header;
    if (header === undefined || header.recordCount < 1) {
      throw new InvariantError(`${this.#where}: appendAsLeader got a batch without a header or records (validate before appending)`);
    }
    const latestEpoch = this.#epochs.latestEpoch();
    if (leaderEpoch < latestEpoch) {
      throw new InvariantError(`${this.#where}: append in leader epoch ${leaderEpoch} after epoch ${latestEpoch} (a fenced leader must not append)`);
    }
    const baseOffset = this.#logEnd;
    const lastOffset = baseOffset + BigInt(header.recordCount - 1);
    let firstTimestamp = header.firstTimestamp;
    let maxTimestamp = header.maxTimestamp;
    let attributes = header.attributes;
    if (appendTimeMs !== undefined) {
      maxTimestamp = appendTimeMs + (header.maxTimestamp - header.firstTimestamp);
      firstTimestamp = appendTimeMs;
      attributes |= logAppendTimeFlag;
    }
    const stored = encodeStoredBatch(
      { ...header, baseOffset, leaderEpoch, firstTimestamp, maxTimestamp, attributes },
      batch.records,
      this.#host.valuePool,
    );
    const epochChanged = this.#epochs.assign(leaderEpoch, baseOffset);
    const committed = this.#putBatch(baseOffset, lastOffset, stored, true);
    if (epochChanged) void this.#writeMeta().catch(() => undefined);
    const info: AppendInfo = { baseOffset, lastOffset, logEndOffset: lastOffset + 1n, maxTimestamp };
    return committed.then(() => info);
  }

  /**
   * Appends batches exactly as another replica's read() returned them (a follower's append). They
   * must start at the log end offset and be contiguous, each records CRC must match its header, and
   * their leader epochs must not go back. On any problem nothing is written (InvalidBatchError, or
   * StorageCorruptionError for a CRC mismatch).
   */
  appendStored(storedBatches: readonly Uint8Array[]): Promise<AppendInfo> {
    this.#ensureAvailable();
    const summaries: BatchSummary[] = [];
    let next = this.#logEnd;
    let epoch = this.#epochs.latestEpoch();
    let maxTimestamp = -1n;
    for (const wire of storedBatches) {
      let s: BatchSummary;
      try {
        s = summarizeBatch(wire);
      } catch (err) {
        if (err instanceof MalformedBatchError) throw new InvalidBatchError(this.#where, `replicated batch at offset ${next} is malformed: ${err.message}`);
        throw err;
      }
      if (s.baseOffset !== next) {
        throw new InvalidBatchError(this.#where, `replicated batch starts at offset ${s.baseOffset}, expected ${next} (log end offset ${this.#logEnd})`);
      }
      if (s.leaderEpoch < epoch) {
        throw new InvalidBatchError(this.#where, `replicated batch at offset ${s.baseOffset} has leader epoch ${s.leaderEpoch} after epoch ${epoch}`);
      }
      const crc = checksumOf(wire, s);
      if (crc !== s.crc) {
        throw new StorageCorruptionError(this.#where, s.baseOffset, `records CRC32C 0x${crc.toString(16)} does not match header 0x${s.crc.toString(16)}`);
      }
      summaries.push(s);
      next = s.lastOffset + 1n;
      epoch = s.leaderEpoch;
      if (s.maxTimestamp > maxTimestamp) maxTimestamp = s.maxTimestamp;
    }
    const baseOffset = this.#logEnd;
    if (summaries.length === 0) {
      return Promise.resolve({ baseOffset, lastOffset: baseOffset - 1n, logEndOffset: baseOffset, maxTimestamp });
    }
    let epochChanged = false;
    let committed: Promise<void> = Promise.resolve();
    for (let i = 0; i < summaries.length; i++) {
      const s = summaries[i]!;
      if (this.#epochs.assign(s.leaderEpoch, s.baseOffset)) epochChanged = true;
      committed = this.#putBatch(s.baseOffset, s.lastOffset, storeWireBatch(storedBatches[i]!, s, this.#host.valuePool), false);
    }
    if (epochChanged) void this.#writeMeta().catch(() => undefined);
    const info: AppendInfo = { baseOffset, lastOffset: next - 1n, logEndOffset: next, maxTimestamp };
    // Commits happen in issue order, so the last batch's commit implies the others'.
    return committed.then(() => info);
  }

  /**
   * Whole batches from the one containing `fromOffset`, each ending below `upToOffset`, while their
   * total stays within `maxBytes` (the first batch is returned even when larger). Only committed
   * batches are visible. Every batch's checksum is verified.
   */
  read(fromOffset: bigint, maxBytes: number, upToOffset: bigint): ReadResult {
    this.#ensureAvailable();
    if (fromOffset < this.#logStart || fromOffset > this.#logEnd) {
      throw new OffsetOutOfRangeError(this.#where, fromOffset, this.#logStart, this.#logEnd);
    }
    const result: ReadResult = { batches: [], bytes: 0, firstOffset: undefined };
    const limit = min(upToOffset, this.#logEnd);
    if (fromOffset >= limit) return result;
    if (this.#readTail(fromOffset, maxBytes, upToOffset, limit, result)) return result;

    let startKey = offsetKey(fromOffset);
    if (fromOffset > this.#logStart) {
      // The batch containing fromOffset starts at the greatest key <= fromOffset.
      for (const key of this.#db.getKeys({ start: startKey, reverse: true, limit: 1 })) startKey = key as Buffer;
    }
    let bytes = 0;
    for (const { key, value } of this.#db.getRange({ start: startKey, end: offsetKey(limit) })) {
      const size = value.length - storedChecksumBytes;
      if (result.batches.length > 0 && bytes + size > maxBytes) break;
      const s = this.#verify(key, value);
      if (s.lastOffset < fromOffset) continue;
      if (s.lastOffset >= upToOffset) break;
      const wire = value.subarray(storedChecksumBytes);
      result.batches.push(wire);
      bytes += size;
      if (result.firstOffset === undefined) result.firstOffset = s.baseOffset;
      // Stop before the iterator copies the next value out of LMDB only to find it over the budget
      // (a share fetch reads one batch at a time: every read copied two 256 KiB batches).
      if (result.batches.length >= maxBatchesPerRead || bytes >= maxBytes) break;
    }
    result.bytes = bytes;
    return result;
  }

  /**
   * read() from the tail cache when it holds the batch containing `fromOffset` and every committed
   * batch after it (the same batches LMDB would return); false when the read must go to LMDB.
   */
  #readTail(fromOffset: bigint, maxBytes: number, upToOffset: bigint, limit: bigint, result: ReadResult): boolean {
    const tail = this.#tail;
    const first = tail[0];
    if (first === undefined || fromOffset < first.baseOffset || tail[tail.length - 1]!.lastOffset + 1n !== this.#committedEnd) return false;
    let i = tail.length - 1;
    while (i > 0 && tail[i]!.baseOffset > fromOffset) i--;
    let bytes = 0;
    for (; i < tail.length; i++) {
      const b = tail[i]!;
      if (b.baseOffset >= limit) break;
      if (result.batches.length > 0 && bytes + b.wire.length > maxBytes) break;
      if (b.lastOffset < fromOffset) continue;
      if (b.lastOffset >= upToOffset) break;
      result.batches.push(b.wire);
      bytes += b.wire.length;
      if (result.firstOffset === undefined) result.firstOffset = b.baseOffset;
      if (result.batches.length >= maxBatchesPerRead) break;
    }
    result.bytes = bytes;
    return true;
  }

  /** A committed batch: the newest one, since lmdb-js commits in issue order. */
  #committed(baseOffset: bigint, lastOffset: bigint, stored: Uint8Array, cache: boolean): void {
    const last = this.#tail[this.#tail.length - 1];
    const contiguous = baseOffset === (last === undefined ? this.#committedEnd : last.lastOffset + 1n);
    if (lastOffset + 1n > this.#committedEnd) this.#committedEnd = lastOffset + 1n;
    if (!cache || !contiguous || stored.length - storedChecksumBytes > maxTailCacheBytesPerPartition) {
      this.#dropTail(-1n);
      return;
    }
    // A copy: the stored value's region goes back to the pool now, while readers may hold tail views.
    const wire = stored.slice(storedChecksumBytes);
    this.#tail.push({ baseOffset, lastOffset, wire });
    this.#tailBytes += wire.length;
    while (this.#tailBytes > maxTailCacheBytesPerPartition) this.#tailBytes -= this.#tail.shift()!.wire.length;
  }

  /** Forgets cached batches from `fromOffset` on (all of them for -1). */
  #dropTail(fromOffset: bigint): void {
    if (fromOffset < 0n) {
      this.#tail = [];
      this.#tailBytes = 0;
      return;
    }
    while (this.#tail.length > 0 && this.#tail[this.#tail.length - 1]!.baseOffset >= fromOffset) this.#tailBytes -= this.#tail.pop()!.wire.length;
  }

  /** Moves the high watermark forward; it never goes back and stays within [logStart, logEnd]. */
  setHighWatermark(offset: bigint): void {
    this.#ensureAvailable();
    if (offset < this.#highWatermark) {
      throw new InvariantError(`${this.#where}: high watermark would go back from ${this.#highWatermark} to ${offset}`);
    }
    if (offset < this.#logStart || offset > this.#logEnd) {
      throw new InvariantError(`${this.#where}: high watermark ${offset} outside [log start ${this.#logStart}, log end ${this.#logEnd}]`);
    }
    this.#highWatermark = offset;
  }

  /**
   * Removes every batch with base offset >= `offset`, which must be a batch boundary (or the log end
   * offset: then nothing happens). Committed data (below the high watermark) is never removed unless
   * `allowBelowHighWatermark` is set (unclean leader election), which also lowers the watermark.
   */
  async truncateTo(offset: bigint, options: { allowBelowHighWatermark?: boolean } = {}): Promise<void> {
    this.#ensureAvailable();
    if (offset > this.#logEnd) {
      throw new InvariantError(`${this.#where}: cannot truncate to ${offset}, beyond log end offset ${this.#logEnd}`);
    }
    if (offset === this.#logEnd) {
      // No batch to remove, but an epoch this replica opened as leader with no batch of it (a
      // leadership held only briefly) starts here and must go: the new leader's batches at this
      // offset carry an older epoch (seen in the chaos suite: "leader epoch 3 after epoch 4").
      if (this.#epochs.truncateFromEnd(offset)) await this.#writeMeta();
      return;
    }
    if (offset < this.#highWatermark && options.allowBelowHighWatermark !== true) {
      throw new InvariantError(
        `${this.#where}: truncation to ${offset} would remove committed records below high watermark ${this.#highWatermark} (log end ${this.#logEnd})`,
      );
    }
    if (offset < this.#logStart) {
      throw new InvariantError(`${this.#where}: truncation to ${offset} is below log start offset ${this.#logStart}; use truncateFullyAndStartAt`);
    }
    this.#db.resetReadTxn();
    const victims = new Map<bigint, number>();
    for (const { key, value } of this.#db.getRange({ start: offsetKey(offset) })) victims.set(keyOffset(key as Buffer), value.length);
    for (const [base, pending] of this.#pending) if (base >= offset) victims.set(base, pending.storedBytes);
    if (!victims.has(offset)) {
      throw new InvariantError(`${this.#where}: truncation offset ${offset} is not a batch boundary (log start ${this.#logStart}, log end ${this.#logEnd})`);
    }
    let removedBytes = 0;
    for (const [base, storedBytes] of victims) {
      void this.#db.remove(offsetKey(base));
      this.#pending.delete(base);
      removedBytes += storedBytes;
    }
    this.#sizeBytes -= removedBytes;
    this.#dropTail(offset);
    if (this.#committedEnd > offset) this.#committedEnd = offset;
    this.#logEnd = offset;
    if (this.#highWatermark > offset) this.#highWatermark = offset;
    this.#lowerFlushed(offset);
    this.#epochs.truncateFromEnd(offset);
    this.#host.markUnflushed(this);
    this.#checkState(`truncation to ${offset}`);
    await this.#writeMeta();
  }

  /**
   * Empties the log and restarts it at `offset` (a follower whose log end is below the leader's log
   * start, or whose log must be discarded): log start, log end and high watermark become `offset`
   * and the epoch cache is cleared.
   */
  async truncateFullyAndStartAt(offset: bigint): Promise<void> {
    this.#ensureAvailable();
    if (offset < 0n) throw new InvariantError(`${this.#where}: cannot restart the log at negative offset ${offset}`);
    void this.#db.clearAsync();
    this.#pending.clear();
    this.#dropTail(-1n);
    this.#committedEnd = offset;
    this.#sizeBytes = 0;
    this.#logStart = offset;
    this.#logEnd = offset;
    this.#highWatermark = offset;
    // Offsets below the new log start do not exist, so there is nothing below it left to flush.
    this.#lowerFlushed(offset);
    this.#flushed = offset;
    this.#epochs.truncateFromEnd(-1n);
    this.#host.markUnflushed(this);
    this.#checkState(`restart at ${offset}`);
    await this.#writeMeta();
  }

  latestEpoch(): number {
    return this.#epochs.latestEpoch();
  }

  epochEntries(): EpochEntry[] {
    return this.#epochs.entries();
  }

  /** Kafka's endOffsetFor over this log's epoch cache (the one rule, in replication/state/epochs). */
  endOffsetForEpoch(epoch: number): EpochEndOffset {
    return endOffsetForEpoch(this.#epochs.entries(), epoch, this.#logEnd);
  }

  /**
   * Records that leader epoch `epoch` starts at the log end offset, before any append in it (a new
   * leader does this on election, so followers can find the divergence point at once). A repeat of
   * the latest epoch changes nothing; an older epoch is an InvariantError.
   */
  assignEpochStart(epoch: number, startOffset: bigint): void {
    this.#ensureAvailable();
    const latest = this.#epochs.latestEpoch();
    if (epoch === latest) return;
    if (epoch < latest) throw new InvariantError(`${this.#where}: leader epoch ${epoch} is older than the latest epoch ${latest}`);
    if (startOffset !== this.#logEnd) {
      throw new InvariantError(`${this.#where}: epoch ${epoch} must start at the log end offset ${this.#logEnd}, not ${startOffset}`);
    }
    if (this.#epochs.assign(epoch, startOffset)) void this.#writeMeta().catch(() => undefined);
  }

  /**
   * The first record with timestamp >= `timestampMs` below the high watermark, or undefined. Scans
   * batch headers from the log start (max timestamps), then decodes the one batch that can hold it.
   */
  offsetForTimestamp(timestampMs: bigint): { offset: bigint; timestamp: bigint } | undefined {
    this.#ensureAvailable();
    const hw = this.#highWatermark;
    if (this.#logStart >= hw) return undefined;
    for (const { key, value } of this.#db.getRange({ start: offsetKey(this.#logStart), end: offsetKey(hw) })) {
      const s = this.#verify(key, value);
      if (s.maxTimestamp < timestampMs) continue;
      const records = decodeBatch(wireToRecordBatch(value.subarray(storedChecksumBytes)));
      for (const r of records) {
        if (r.offset >= hw) return undefined;
        if (r.timestamp >= timestampMs) return { offset: r.offset, timestamp: r.timestamp };
      }
    }
    return undefined;
  }

  /**
   * Calls `visit` with the full header of every committed batch whose base offset is >= `fromOffset`
   * (default: the log start), in offset order, checksums verified: for rebuilding state derived from
   * the log (idempotent producers) after opening or truncating. Reads the whole range.
   */
  forEachBatchHeader(visit: (header: RecordBatchHeader) => void, fromOffset: bigint = this.#logStart): void {
    this.#ensureAvailable();
    const start = fromOffset < this.#logStart ? this.#logStart : fromOffset;
    for (const { key, value } of this.#db.getRange({ start: offsetKey(start) })) {
      const s = this.#verify(key, value);
      visit(RecordBatchHeader.decode(value.subarray(storedChecksumBytes + s.headerStart, storedChecksumBytes + s.headerEnd)));
    }
  }

  /**
   * Deletes whole batches from the front while they are older than retention.ms (by max timestamp)
   * or the log is larger than retention.bytes, never a batch reaching the high watermark. Works in
   * transactions of at most maxRetentionDeletesPerTxn batches, so appends are never held up.
   */
  async applyRetention(nowMs: number): Promise<{ deletedBatches: number; newLogStartOffset: bigint }> {
    let deletedBatches = 0;
    for (;;) {
      this.#ensureAvailable();
      const { retentionMs, retentionBytes } = this.#config;
      if (retentionMs < 0 && retentionBytes < 0) break;
      const hw = this.#highWatermark;
      if (this.#logStart >= hw) break;
      this.#db.resetReadTxn();
      let size = this.#sizeBytes;
      const chunk: Array<{ base: bigint; storedBytes: number }> = [];
      let newStart = this.#logStart;
      for (const { key, value } of this.#db.getRange({ start: offsetKey(this.#logStart), end: offsetKey(hw) })) {
        const s = this.#verify(key, value);
        if (s.baseOffset < this.#logStart) continue;
        if (s.lastOffset >= hw) break;
        const expired = retentionMs >= 0 && nowMs - Number(s.maxTimestamp) > retentionMs;
        const oversized = retentionBytes >= 0 && size > retentionBytes;
        if (!expired && !oversized) break;
        chunk.push({ base: s.baseOffset, storedBytes: value.length });
        size -= value.length;
        newStart = s.lastOffset + 1n;
        if (chunk.length >= maxRetentionDeletesPerTxn) break;
      }
      if (chunk.length === 0) break;
      for (const { base } of chunk) void this.#db.remove(offsetKey(base));
      this.#sizeBytes = size;
      this.#logStart = newStart;
      if (this.#flushed < newStart) this.#flushed = newStart;
      this.#epochs.truncateFromStart(newStart);
      deletedBatches += chunk.length;
      this.#checkState(`retention up to ${newStart}`);
      await this.#writeMeta();
    }
    return { deletedBatches, newLogStartOffset: this.#logStart };
  }

  // ---- used by LogStore ----

  /** @internal */
  _beginFlush(): FlushTarget | undefined {
    if (this.#unavailable !== undefined || this.#flushed >= this.#logEnd) return undefined;
    const target: FlushTarget = { offset: this.#logEnd };
    this.#flushTargets.add(target);
    return target;
  }

  /** @internal */
  _completeFlush(target: FlushTarget): void {
    this.#flushTargets.delete(target);
    const offset = min(target.offset, this.#logEnd);
    if (offset > this.#flushed) this.#flushed = offset;
  }

  /** @internal Writes the metadata record when the high watermark moved since the last one. */
  _checkpointIfDirty(): void {
    if (this.#unavailable !== undefined || this.#highWatermark === this.#checkpointedHighWatermark) return;
    void this.#writeMeta().catch(() => undefined);
  }

  /** @internal */
  get _db(): Database<Uint8Array, Buffer> {
    return this.#db;
  }

  /** @internal */
  get _dbName(): string {
    return this.#dbName;
  }

  /** @internal Every later call fails with LogUnavailableError. */
  _close(reason: string): void {
    if (this.#unavailable === undefined) this.#unavailable = new LogUnavailableError(this.#where, reason);
    this.#flushTargets.clear();
    this.#dropTail(-1n);
  }

  // ---- internals ----

  #ensureAvailable(): void {
    if (this.#unavailable !== undefined) throw this.#unavailable;
  }

  #fail(err: unknown): LogUnavailableError {
    if (this.#unavailable === undefined) {
      this.#unavailable = new LogUnavailableError(this.#where, `a write failed, the partition is unusable until reopened: ${(err as Error)?.message ?? String(err)}`, {
        cause: err,
      });
    }
    return this.#unavailable;
  }

  #putBatch(baseOffset: bigint, lastOffset: bigint, stored: Uint8Array, cache: boolean): Promise<void> {
    const pending: PendingWrite = { storedBytes: stored.length };
    this.#pending.set(baseOffset, pending);
    this.#logEnd = lastOffset + 1n;
    this.#sizeBytes += stored.length;
    this.#host.markUnflushed(this);
    return this.#db.put(offsetKey(baseOffset), stored).then(
      () => {
        // A batch truncated away before its commit is no longer in #pending and is not part of the log.
        if (this.#pending.get(baseOffset) === pending) {
          this.#pending.delete(baseOffset);
          if (this.#unavailable === undefined) this.#committed(baseOffset, lastOffset, stored, cache);
        }
        this.#host.valuePool.release(stored);
        this.#host.requestBackgroundFlush();
      },
      (err: unknown) => {
        this.#host.valuePool.release(stored);
        throw this.#fail(err);
      },
    );
  }

  #metaRecord(): PartitionMetaRecord {
    return {
      format: 1,
      topicId: this.topicId,
      topicName: this.topicName,
      partition: this.partition,
      dbName: this.#dbName,
      logStartOffset: this.#logStart.toString(),
      highWatermark: this.#highWatermark.toString(),
      epochs: this.#epochs.entries().map((e) => [e.epoch, e.startOffset.toString()]),
      sizeBytes: this.#sizeBytes,
      sizeEndOffset: this.#logEnd.toString(),
    };
  }

  #writeMeta(): Promise<void> {
    const record = this.#metaRecord();
    this.#checkpointedHighWatermark = this.#highWatermark;
    return this.#host.metaDb.put(this.#metaKey, record).then(
      () => undefined,
      (err: unknown) => {
        throw this.#fail(err);
      },
    );
  }

  /** The offsets' order every operation keeps; breaking it is a bug here, so it fails loudly. */
  #checkState(after: string): void {
    const ok =
      this.#logStart <= this.#highWatermark &&
      this.#highWatermark <= this.#logEnd &&
      this.#logStart <= this.#flushed &&
      this.#flushed <= this.#logEnd &&
      this.#sizeBytes >= 0 &&
      (this.#sizeBytes === 0) === (this.#logStart === this.#logEnd);
    if (!ok) {
      throw new InvariantError(
        `${this.#where}: after ${after}: log start ${this.#logStart}, high watermark ${this.#highWatermark}, flushed ${this.#flushed}, ` +
          `log end ${this.#logEnd}, size ${this.#sizeBytes} bytes are out of order`,
      );
    }
  }

  #lowerFlushed(offset: bigint): void {
    if (this.#flushed > offset) this.#flushed = offset;
    for (const target of this.#flushTargets) if (target.offset > offset) target.offset = offset;
  }

  /** Checks every byte of a stored value (checksums, framing) and its key; returns its header summary. */
  #verify(key: unknown, value: Uint8Array): BatchSummary {
    const keyBase = keyOffset(key as Buffer);
    const check = checkStored(value);
    if (!check.ok) throw new StorageCorruptionError(this.#where, keyBase, check.problem);
    if (check.summary.baseOffset !== keyBase) throw new StorageCorruptionError(this.#where, keyBase, `header says base offset ${check.summary.baseOffset}`);
    return check.summary;
  }

  #recover(meta: PartitionMetaRecord | undefined): {
    logStart: bigint;
    logEnd: bigint;
    highWatermark: bigint;
    sizeBytes: number;
    epochs: LeaderEpochCache;
    metaOutdated: boolean;
  } {
    let last: BatchSummary | undefined;
    for (const { key, value } of this.#db.getRange({ reverse: true, limit: 1 })) last = this.#verify(key, value);
    let firstBase: bigint | undefined;
    for (const key of this.#db.getKeys({ limit: 1 })) firstBase = keyOffset(key as Buffer);

    const metaStart = meta === undefined ? 0n : BigInt(meta.logStartOffset);
    const logStart = firstBase ?? metaStart;
    const logEnd = last === undefined ? logStart : max(last.lastOffset + 1n, logStart);
    let metaOutdated = meta === undefined || metaStart !== logStart;

    let sizeBytes = 0;
    let sizeFrom = logStart;
    if (meta !== undefined && metaStart === logStart) {
      const sizeEnd = BigInt(meta.sizeEndOffset);
      if (sizeEnd >= logStart && sizeEnd <= logEnd) {
        sizeBytes = meta.sizeBytes;
        sizeFrom = sizeEnd;
      }
    }
    if (sizeFrom < logEnd) {
      for (const { value } of this.#db.getRange({ start: offsetKey(sizeFrom) })) sizeBytes += value.length;
      metaOutdated = true;
    }

    const entries: EpochEntry[] = (meta?.epochs ?? [])
      .map(([epoch, start]) => ({ epoch, startOffset: BigInt(start) }))
      .filter((e) => e.startOffset <= logEnd);
    const epochs = new LeaderEpochCache(this.#where, entries);
    if (last !== undefined && last.leaderEpoch > epochs.latestEpoch()) {
      // The cache is written with the batch that opens an epoch, so this means lost metadata:
      // rebuild the missing tail of the cache from the batches themselves.
      const known = epochs.latestEpoch();
      const found: EpochEntry[] = [];
      for (const { key, value } of this.#db.getRange({ reverse: true })) {
        const s = this.#verify(key, value);
        if (s.leaderEpoch <= known) break;
        const top = found.at(-1);
        if (top !== undefined && top.epoch === s.leaderEpoch) top.startOffset = s.baseOffset;
        else found.push({ epoch: s.leaderEpoch, startOffset: s.baseOffset });
      }
      for (const e of found.reverse()) epochs.assign(e.epoch, e.startOffset);
      metaOutdated = true;
    }

    let highWatermark = meta === undefined ? logStart : BigInt(meta.highWatermark);
    if (highWatermark < logStart) highWatermark = logStart;
    if (highWatermark > logEnd) highWatermark = logEnd;
    return { logStart, logEnd, highWatermark, sizeBytes, epochs, metaOutdated };
  }
}

function checksumOf(wire: Uint8Array, s: BatchSummary): number {
  return checksum(wire.subarray(s.recordsStart, s.recordsEnd));
}
