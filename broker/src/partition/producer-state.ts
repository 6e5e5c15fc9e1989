// Idempotent-producer state of one partition: for each producer id, its epoch and its last few
// batches' sequence ranges and offsets. The leader checks every idempotent batch against it (dropping
// duplicates, refusing gaps and fenced epochs); every replica updates it from the headers of the
// batches it appends, and rebuilds it by scanning batch headers at open, so it survives failover
// and restart. Pure: no I/O.
import { ErrorCode, type RecordBatchHeader } from "@runnel/proto";

/** Batches remembered per producer for duplicate detection (a client keeps at most this many in flight). */
export const maxRememberedBatchesPerProducer = 5;
/** Producers remembered per partition; the least recently written are forgotten beyond it. */
export const maxProducersPerPartition = 10_000;

const maxSequence = 0x7fffffff;

interface BatchMemo {
  firstSequence: number;
  lastSequence: number;
  baseOffset: bigint;
}

interface ProducerEntry {
  epoch: number;
  batches: BatchMemo[];
}

export type SequenceCheck =
  | { kind: "append" }
  | { kind: "duplicate"; baseOffset: bigint }
  /**
   * `ahead`: the batch continues a sequence whose earlier batches have not arrived yet. Concurrent
   * requests on one HTTP/2 connection may be delivered out of order, so the leader may wait a bounded
   * time for the gap to fill before refusing.
   */
  | { kind: "reject"; code: ErrorCode; message: string; ahead: boolean };

function nextSequence(seq: number, count: number): number {
  const n = seq + count;
  return n > maxSequence ? n - maxSequence - 1 : n;
}

/** Whether `seq` lies after `expected` (within half the sequence space, so wrap-around counts). */
function sequenceAhead(seq: number, expected: number): boolean {
  const distance = (seq - expected + maxSequence + 1) % (maxSequence + 1);
  return distance > 0 && distance < (maxSequence + 1) / 2;
}

export class ProducerStateTable {
  private readonly producers = new Map<bigint, ProducerEntry>();

  get size(): number {
    return this.producers.size;
  }

  check(header: RecordBatchHeader): SequenceCheck {
    if (header.producerId === 0n) return { kind: "append" };
    const entry = this.producers.get(header.producerId);
    const lastSequence = nextSequence(header.baseSequence, header.recordCount - 1);
    if (entry === undefined) {
      if (header.baseSequence === 0) return { kind: "append" };
      return {
        kind: "reject",
        code: ErrorCode.UNKNOWN_PRODUCER_ID,
        message: `producer ${header.producerId} has no state on this partition and its batch starts at sequence ${header.baseSequence}, not 0`,
        ahead: header.baseSequence > 0,
      };
    }
    if (header.producerEpoch < entry.epoch) {
      return { kind: "reject", code: ErrorCode.INVALID_PRODUCER_EPOCH, message: `producer ${header.producerId} epoch ${header.producerEpoch} is older than ${entry.epoch}`, ahead: false };
    }
    if (header.producerEpoch > entry.epoch) {
      if (header.baseSequence === 0) return { kind: "append" };
      return {
        kind: "reject",
        code: ErrorCode.OUT_OF_ORDER_SEQUENCE,
        message: `producer ${header.producerId} new epoch ${header.producerEpoch} must start at sequence 0, not ${header.baseSequence}`,
        ahead: true,
      };
    }
    for (const memo of entry.batches) {
      if (memo.firstSequence === header.baseSequence && memo.lastSequence === lastSequence) return { kind: "duplicate", baseOffset: memo.baseOffset };
    }
    const last = entry.batches[entry.batches.length - 1];
    const expected = last === undefined ? 0 : nextSequence(last.lastSequence, 1);
    if (header.baseSequence === expected) return { kind: "append" };
    const oldest = entry.batches[0];
    if (oldest !== undefined && header.baseSequence < oldest.firstSequence && header.baseSequence < expected) {
      // Older than anything remembered: it was appended long ago; the original offset is forgotten.
      return { kind: "duplicate", baseOffset: -1n };
    }
    return {
      kind: "reject",
      code: ErrorCode.OUT_OF_ORDER_SEQUENCE,
      message: `producer ${header.producerId} epoch ${header.producerEpoch}: expected sequence ${expected}, got ${header.baseSequence}`,
      ahead: sequenceAhead(header.baseSequence, expected),
    };
  }

  /** Records an appended batch (leader, follower, or recovery scan), in offset order. */
  record(header: RecordBatchHeader, baseOffset: bigint): void {
    if (header.producerId === 0n) return;
    let entry = this.producers.get(header.producerId);
    if (entry === undefined || header.producerEpoch > entry.epoch) {
      entry = { epoch: header.producerEpoch, batches: [] };
    }
    this.producers.delete(header.producerId); // re-insert: Map order is least recently written first
    this.producers.set(header.producerId, entry);
    entry.batches.push({ firstSequence: header.baseSequence, lastSequence: nextSequence(header.baseSequence, header.recordCount - 1), baseOffset });
    if (entry.batches.length > maxRememberedBatchesPerProducer) entry.batches.shift();
    if (this.producers.size > maxProducersPerPartition) {
      const oldest = this.producers.keys().next().value;
      if (oldest !== undefined) this.producers.delete(oldest);
    }
  }

  clear(): void {
    this.producers.clear();
  }
}
