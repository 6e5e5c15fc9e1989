// The leader epoch cache (KIP-101) as plain arrays: which leader epoch wrote which offsets. Every
// replica keeps one beside its log; it is how a follower finds where its log diverges from the leader.
import type { EpochEndOffset } from "@runnel/proto";
import { invariant } from "./errors.js";

/** Kafka's UNDEFINED_EPOCH: "no epoch" (an empty log, or an epoch the cache cannot answer for). */
export const undefinedEpoch = -1;
/** Kafka's UNDEFINED_EPOCH_OFFSET. */
export const undefinedEpochOffset = -1n;

/** The first offset written by a leader epoch. Entries are kept in ascending epoch and offset order. */
export interface EpochEntry {
  readonly epoch: number;
  readonly startOffset: bigint;
}

export type EpochEntries = readonly EpochEntry[];

/** The epoch of the last entry (the epoch of the last batch, or of the current leadership), or -1. */
export function latestEpoch(entries: EpochEntries): number {
  return entries.length === 0 ? undefinedEpoch : entries[entries.length - 1]!.epoch;
}

/**
 * Kafka's LeaderEpochFileCache.endOffsetFor: the largest epoch <= requestedEpoch this log has and the
 * exclusive end offset of that epoch (the start offset of the next known epoch).
 * - requestedEpoch is -1, or greater than every known epoch: (-1, -1).
 * - requestedEpoch is the latest epoch: (requestedEpoch, logEndOffset).
 * - requestedEpoch is older than every known epoch: (requestedEpoch, start offset of the first
 *   entry); the older data is gone (retention), and the follower may replicate from there.
 */
export function endOffsetForEpoch(entries: EpochEntries, requestedEpoch: number, logEndOffset: bigint): EpochEndOffset {
  if (requestedEpoch === undefinedEpoch) return { leaderEpoch: undefinedEpoch, endOffset: undefinedEpochOffset };
  if (entries.length > 0 && latestEpoch(entries) === requestedEpoch) return { leaderEpoch: requestedEpoch, endOffset: logEndOffset };
  // higher: first entry with epoch > requested; floor: last entry with epoch <= requested.
  const higherIndex = entries.findIndex((e) => e.epoch > requestedEpoch);
  if (higherIndex < 0) return { leaderEpoch: undefinedEpoch, endOffset: undefinedEpochOffset };
  const higher = entries[higherIndex]!;
  if (higherIndex === 0) return { leaderEpoch: requestedEpoch, endOffset: higher.startOffset };
  return { leaderEpoch: entries[higherIndex - 1]!.epoch, endOffset: higher.startOffset };
}

/**
 * The leader's divergence check on a follower fetch (KIP-320 / KIP-595's fetch-time truncation): when
 * the leader's log ends the follower's last fetched epoch earlier than the follower's fetch offset, or
 * does not have that epoch at all, the follower holds a suffix the leader never had. Returns the epoch
 * and end offset to put in the response, or undefined when the follower's log is a prefix of ours.
 * A follower with an empty log (lastFetchedEpoch -1) cannot diverge.
 */
export function divergence(
  leaderEntries: EpochEntries,
  leaderLogEndOffset: bigint,
  fetchOffset: bigint,
  lastFetchedEpoch: number,
): EpochEndOffset | undefined {
  if (lastFetchedEpoch === undefinedEpoch) return undefined;
  const end = endOffsetForEpoch(leaderEntries, lastFetchedEpoch, leaderLogEndOffset);
  if (end.leaderEpoch < lastFetchedEpoch || end.endOffset < fetchOffset) return end;
  return undefined;
}

/**
 * Records that `epoch` starts at `startOffset` (Kafka's assign). Assigning the latest epoch again is
 * a no-op. Entries at or after startOffset belong to epochs that wrote nothing (a leadership without
 * appends) and are dropped. Anything else, an older epoch after a newer one, means the log was not
 * truncated before appending: a broken invariant.
 */
export function assignEpoch(entries: EpochEntries, epoch: number, startOffset: bigint, partitionName: string): EpochEntry[] {
  invariant(epoch >= 0 && startOffset >= 0n, partitionName, () => `cannot assign leader epoch ${epoch} at offset ${startOffset}`);
  const last = entries[entries.length - 1];
  if (last !== undefined && last.epoch === epoch && last.startOffset <= startOffset) return [...entries];
  const kept: EpochEntry[] = [];
  for (const e of entries) {
    if (e.startOffset >= startOffset) {
      invariant(e.epoch < epoch, partitionName, () =>
        `assigning leader epoch ${epoch} at offset ${startOffset} would drop newer epoch ${e.epoch} starting at ${e.startOffset}`);
      continue;
    }
    invariant(e.epoch < epoch, partitionName, () =>
      `leader epoch ${epoch} at offset ${startOffset} is not newer than epoch ${e.epoch} starting at ${e.startOffset}; the log was not truncated first`);
    kept.push(e);
  }
  kept.push({ epoch, startOffset });
  return kept;
}

/** After truncating the log to endOffset: drops epochs that started at or after it (Kafka's truncateFromEnd). */
export function truncateEpochsFromEnd(entries: EpochEntries, endOffset: bigint): EpochEntry[] {
  return entries.filter((e) => e.startOffset < endOffset);
}

/**
 * After retention moved the log start offset: drops epochs wholly before it and moves the start of the
 * epoch that covers it (Kafka's truncateFromStart).
 */
export function truncateEpochsFromStart(entries: EpochEntries, logStartOffset: bigint): EpochEntry[] {
  const result: EpochEntry[] = [];
  let covering: EpochEntry | undefined;
  for (const e of entries) {
    if (e.startOffset <= logStartOffset) covering = e;
    else result.push(e);
  }
  if (covering !== undefined) result.unshift({ epoch: covering.epoch, startOffset: logStartOffset });
  return result;
}

/** Asserts ascending epochs and non-decreasing start offsets (what every function here relies on). */
export function checkEpochEntries(entries: EpochEntries, partitionName: string): void {
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1]!;
    const cur = entries[i]!;
    invariant(cur.epoch > prev.epoch && cur.startOffset >= prev.startOffset, partitionName, () =>
      `leader epoch cache out of order: epoch ${prev.epoch}@${prev.startOffset} then ${cur.epoch}@${cur.startOffset}`);
  }
}
