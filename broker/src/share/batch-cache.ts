// The batches a share partition read from the log last, kept so the next ShareFetches and admissions
// take them from memory: every member acquires from the same few batches at the window's start, and
// admission continues inside the batch it stopped in, so without it each fetch re-read (and
// re-checked) whole batches from the log for a few records. Bounded per share partition
// (maxCachedBatchesPerSharePartition) and per broker (maxShareBatchCacheBytes). Only batches below the
// bound they were read with are kept; a leader never changes those in its leader epoch, and the cache
// lives in the share partition's entry, which is dropped when the epoch or leadership changes.
import type { Partition } from "../partition/partition.js";
import { summarizeBatch } from "../log/codec.js";
import { maxCachedBatchesPerSharePartition } from "./limits.js";
import { scanNotBefore, type BatchNotBefore } from "./not-before.js";

export interface CachedBatch {
  readonly baseOffset: bigint;
  readonly lastOffset: bigint;
  /** The stored batch bytes (an encoded RecordBatch), checked when read from the log. */
  readonly wire: Uint8Array;
  /** Its records' runnel.not-before times, scanned once on first use. */
  notBefore: BatchNotBefore | undefined;
}

/** Bytes of cached batches across every share partition of this broker. */
export class BatchCacheBudget {
  bytes = 0;
  constructor(readonly maxBytes: number) {}
}

export class ShareBatchCache {
  /** Base offset -> batch, oldest first (evicted first). */
  private readonly batches = new Map<bigint, CachedBatch>();
  private bytes = 0;

  constructor(private readonly budget: BatchCacheBudget) {}

  /**
   * The batch holding `offset`, from the cache or read from the log (one batch) when its last offset
   * is below `upToOffset`; undefined when the log has no such batch (below the log start, or not yet
   * there). Throws what PartitionLog.read throws (a corrupt stored batch).
   */
  batchContaining(p: Partition, offset: bigint, upToOffset: bigint): CachedBatch | undefined {
    if (offset < p.log.logStartOffset) return undefined;
    for (const b of this.batches.values()) {
      if (b.baseOffset <= offset && offset <= b.lastOffset) return b.lastOffset < upToOffset ? b : undefined;
    }
    if (offset >= upToOffset || offset >= p.log.logEndOffset) return undefined;
    // maxBytes 1: the read returns the one batch holding `offset` (a read always returns its first batch).
    const read = p.log.read(offset, 1, upToOffset);
    const wire = read.batches[0];
    if (wire === undefined) return undefined;
    const s = summarizeBatch(wire);
    const b: CachedBatch = { baseOffset: s.baseOffset, lastOffset: s.lastOffset, wire, notBefore: undefined };
    this.add(b);
    return b;
  }

  notBeforeOf(b: CachedBatch): BatchNotBefore {
    b.notBefore ??= scanNotBefore(b.wire);
    return b.notBefore;
  }

  /** Forgets every batch (the entry is dropped), returning their bytes to the broker's budget. */
  clear(): void {
    this.budget.bytes -= this.bytes;
    this.bytes = 0;
    this.batches.clear();
  }

  private add(b: CachedBatch): void {
    while (this.batches.size >= maxCachedBatchesPerSharePartition || (this.batches.size > 0 && this.budget.bytes + b.wire.length > this.budget.maxBytes)) {
      const [oldest] = this.batches.values();
      this.batches.delete(oldest!.baseOffset);
      this.bytes -= oldest!.wire.length;
      this.budget.bytes -= oldest!.wire.length;
    }
    if (this.budget.bytes + b.wire.length > this.budget.maxBytes) return; // the broker's budget is spent elsewhere
    this.batches.set(b.baseOffset, b);
    this.bytes += b.wire.length;
    this.budget.bytes += b.wire.length;
  }
}
