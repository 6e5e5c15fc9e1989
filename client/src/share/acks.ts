// The share consumer's pure rules: how pending acknowledgements become the fewest runs on the wire,
// which records of a ShareFetch answer are the member's, and how run outcomes map back to records.
// No clocks, sockets or timers here; the consumer (consumer.ts) is the thin shell around them.
import { BatchError, ShareAcknowledgeType, decodeBatch, type AcquiredRecords, type ConsumedRecord, type RecordBatch, type ShareAcknowledgement } from "@runnel/proto";

export type AckType = "accept" | "release" | "reject" | "renew";

/** The largest release delay the broker accepts, in milliseconds (ShareAcknowledgement.release_delay_ms). */
export const maxReleaseDelayMs = 86_400_000;
/** The longest failure reason the broker keeps, in UTF-8 bytes. */
export const maxReasonBytes = 1024;

/** One record's pending acknowledgement. */
export interface PendingAck {
  offset: bigint;
  type: AckType;
  /** With release: milliseconds before the record may be delivered again. */
  releaseDelayMs: number;
  /** With release or reject: why. */
  reason: string;
}

export const ackTypeToProto: Readonly<Record<AckType, ShareAcknowledgeType>> = {
  accept: ShareAcknowledgeType.SHARE_ACKNOWLEDGE_ACCEPT,
  release: ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RELEASE,
  reject: ShareAcknowledgeType.SHARE_ACKNOWLEDGE_REJECT,
  renew: ShareAcknowledgeType.SHARE_ACKNOWLEDGE_RENEW,
};

/**
 * Coalesces acknowledgements of one partition into runs of consecutive offsets with the same type
 * (and, for release and reject, the same delay and reason, because a run carries one of each), in
 * offset order. Throws RangeError when an offset is acknowledged twice: runs must not overlap.
 */
export function coalesceAcks(acks: readonly PendingAck[]): ShareAcknowledgement[] {
  const sorted = [...acks].sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  const runs: ShareAcknowledgement[] = [];
  let prev: PendingAck | undefined;
  for (const a of sorted) {
    if (prev !== undefined && a.offset === prev.offset) throw new RangeError(`offset ${a.offset} is acknowledged twice`);
    const last = runs[runs.length - 1];
    if (
      last !== undefined && prev !== undefined && a.offset === prev.offset + 1n && a.type === prev.type &&
      a.releaseDelayMs === prev.releaseDelayMs && a.reason === prev.reason
    ) {
      last.lastOffset = a.offset;
    } else {
      runs.push({
        firstOffset: a.offset, lastOffset: a.offset, type: ackTypeToProto[a.type],
        releaseDelayMs: BigInt(a.type === "release" ? a.releaseDelayMs : 0),
        reason: a.type === "release" || a.type === "reject" ? a.reason : "",
        lockDurationMs: 0,
      });
    }
    prev = a;
  }
  return runs;
}

/** Cuts a reason to at most maxReasonBytes of UTF-8 without splitting a character. */
export function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason, "utf8") <= maxReasonBytes) return reason;
  let out = "";
  let bytes = 0;
  for (const ch of reason) {
    const n = Buffer.byteLength(ch, "utf8");
    if (bytes + n > maxReasonBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/** A record the member acquired, with how often it has been delivered (this delivery included). */
export interface AcquiredRecord extends ConsumedRecord {
  deliveryCount: number;
}

export interface AcquiredBatches {
  /** The acquired records found in the batches, in offset order. */
  records: AcquiredRecord[];
  /** Acquired offsets that no batch held, or whose batch could not be decoded: the member cannot process them. */
  missing: bigint[];
  /** Why a batch could not be decoded, if one could not. */
  batchError: string | undefined;
}

/**
 * Keeps only the acquired offsets of whole batches (a batch may hold records acquired by other
 * members, archived ones, or ones below the share-partition start), each with its run's delivery count.
 */
export function acquiredFromBatches(batches: readonly RecordBatch[], acquired: readonly AcquiredRecords[]): AcquiredBatches {
  const byOffset = (a: { offset: bigint }, b: { offset: bigint }) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0);
  const runs = [...acquired].sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0));
  // Every decoded record in offset order (answers come in offset order; sorted only when not), then
  // one merge walk with the runs: this runs once per record a member receives.
  const decoded: ConsumedRecord[] = [];
  let inOrder = true;
  let batchError: string | undefined;
  for (const batch of batches) {
    let records: ConsumedRecord[];
    try {
      records = decodeBatch(batch);
    } catch (err) {
      batchError ??= err instanceof BatchError ? err.message : String(err);
      continue;
    }
    for (const r of records) {
      const last = decoded[decoded.length - 1];
      if (last !== undefined && r.offset <= last.offset) inOrder = false;
      decoded.push(r);
    }
  }
  if (!inOrder) decoded.sort(byOffset);
  const records: AcquiredRecord[] = [];
  const missing: bigint[] = [];
  let i = 0;
  // The lowest offset no run has covered yet: an offset in two runs belongs to the first (a record once).
  let next: bigint | undefined;
  for (const run of runs) {
    let offset = next !== undefined && next > run.firstOffset ? next : run.firstOffset;
    for (; offset <= run.lastOffset; offset++) {
      while (i < decoded.length && decoded[i]!.offset < offset) i++;
      const r = decoded[i];
      if (r !== undefined && r.offset === offset) {
        records.push({ ...r, deliveryCount: run.deliveryCount });
        i++;
      } else {
        missing.push(offset);
      }
    }
    if (next === undefined || offset > next) next = offset;
  }
  return { records, missing, batchError };
}

/**
 * Splits `total` records over `slots` requests without exceeding it. The remainder goes to the slots
 * from `firstSlot` on (wrapping): a caller that moves `firstSlot` each round lets every slot have its
 * turn when `total` is below `slots` (a worker with one job in flight and three partition leaders
 * would otherwise only ever ask the first leader).
 */
export function splitRecordBudget(total: number, slots: number, firstSlot = 0): number[] {
  if (slots <= 0) return [];
  const base = Math.floor(Math.max(0, total) / slots);
  const extra = Math.max(0, total) % slots;
  const first = ((firstSlot % slots) + slots) % slots;
  return Array.from({ length: slots }, (_, i) => base + ((i - first + slots) % slots < extra ? 1 : 0));
}
