// The follower side of one partition's replication: where to truncate when the leader reports a
// diverging epoch (or answers OffsetForLeaderEpoch), and what the follower's high watermark is.
import type { Durability, EpochEndOffset } from "@runnel/proto";
import {
  assignEpoch,
  checkEpochEntries,
  endOffsetForEpoch,
  latestEpoch,
  truncateEpochsFromEnd,
  undefinedEpoch,
  undefinedEpochOffset,
  type EpochEntries,
  type EpochEntry,
} from "./epochs.js";
import { invariant, maxBigint, minBigint, partitionName } from "./errors.js";

export interface TruncationDecision {
  /** Truncate the log to this offset (equal to the log end offset: nothing to remove). */
  truncateTo: bigint;
  /**
   * False when this follower does not have the epoch the leader answered with (KIP-279): after
   * truncating, fetch again with the new last epoch; the leader walks the epoch chain with us.
   */
  complete: boolean;
}

export interface TruncationInput {
  /** "topic-partition", for the invariant message. */
  partitionName: string;
  /** The leader's diverging epoch, or its OffsetForLeaderEpoch answer. */
  leaderAnswer: EpochEndOffset;
  epochEntries: EpochEntries;
  logEndOffset: bigint;
  highWatermark: bigint;
  /** Only after an unclean election may committed records be dropped; default false. */
  allowTruncationBelowHighWatermark?: boolean;
}

/**
 * Kafka's AbstractFetcherThread.getOffsetTruncationState. The result never removes a record below
 * the follower's high watermark: those are committed, and a clean leader always has them, so such an
 * answer means a broken invariant somewhere and throws InvariantError.
 */
export function decideTruncation(input: TruncationInput): TruncationDecision {
  const { leaderAnswer, logEndOffset, highWatermark } = input;
  let decision: TruncationDecision;
  if (leaderAnswer.endOffset === undefinedEpochOffset) {
    // The leader knows no epoch at or below ours: all we can trust is what was committed.
    decision = { truncateTo: highWatermark, complete: true };
  } else if (leaderAnswer.leaderEpoch === undefinedEpoch) {
    decision = { truncateTo: minBigint(leaderAnswer.endOffset, logEndOffset), complete: true };
  } else {
    const ours = endOffsetForEpoch(input.epochEntries, leaderAnswer.leaderEpoch, logEndOffset);
    if (ours.endOffset === undefinedEpochOffset) {
      decision = { truncateTo: minBigint(leaderAnswer.endOffset, logEndOffset), complete: true };
    } else if (ours.leaderEpoch !== leaderAnswer.leaderEpoch) {
      // We never had the leader's epoch: cut back to the end of our largest epoch below it, then ask again.
      decision = { truncateTo: minBigint(ours.endOffset, logEndOffset), complete: false };
    } else {
      decision = { truncateTo: minBigint(ours.endOffset, leaderAnswer.endOffset, logEndOffset), complete: true };
    }
  }
  invariant(decision.truncateTo >= highWatermark || input.allowTruncationBelowHighWatermark === true, input.partitionName, () =>
    `follower would truncate to offset ${decision.truncateTo}, below its high watermark ${highWatermark} ` +
      `(log end offset ${logEndOffset}, leader answered epoch ${leaderAnswer.leaderEpoch} end offset ${leaderAnswer.endOffset}, ` +
      `own epochs ${input.epochEntries.map((e) => `${e.epoch}@${e.startOffset}`).join(" ")}): a committed record would be lost`);
  return decision;
}

/**
 * The follower's high watermark: the leader's, bounded by what this replica holds (its log end offset,
 * or under fsync durability its flushed offset, so that a power loss cannot leave HW above the log).
 * It never decreases: a new leader may report a lower HW for a while, but committed stays committed.
 */
export function followerHighWatermark(input: {
  currentHighWatermark: bigint;
  leaderHighWatermark: bigint;
  logEndOffset: bigint;
  flushedOffset: bigint;
  durability: Durability;
}): bigint {
  const bound = input.durability === "fsync" ? input.flushedOffset : input.logEndOffset;
  return maxBigint(input.currentHighWatermark, minBigint(input.leaderHighWatermark, bound));
}

export interface FollowerStateInit {
  topic: string;
  partition: number;
  replicaId: number;
  /** The leader epoch from the latest metadata. */
  leaderEpoch: number;
  durability: Durability;
  epochEntries: EpochEntries;
  logEndOffset: bigint;
  flushedOffset: bigint;
  highWatermark: bigint;
  allowTruncationBelowHighWatermark?: boolean;
}

/** What the follower's log looks like, kept in step with its storage by the adapter. */
export class FollowerState {
  readonly topic: string;
  readonly partition: number;
  readonly replicaId: number;
  readonly durability: Durability;
  private readonly name: string;
  private readonly allowBelowHw: boolean;
  private epoch: number;
  private entries: EpochEntry[];
  private logEnd: bigint;
  private flushedEnd: bigint;
  private hw: bigint;

  constructor(init: FollowerStateInit) {
    this.topic = init.topic;
    this.partition = init.partition;
    this.name = partitionName(init.topic, init.partition);
    this.replicaId = init.replicaId;
    this.durability = init.durability;
    this.allowBelowHw = init.allowTruncationBelowHighWatermark === true;
    this.epoch = init.leaderEpoch;
    checkEpochEntries(init.epochEntries, this.name);
    this.entries = [...init.epochEntries];
    this.logEnd = init.logEndOffset;
    this.flushedEnd = init.flushedOffset;
    this.hw = init.highWatermark;
    invariant(0n <= this.flushedEnd && this.flushedEnd <= this.logEnd, this.name, () =>
      `follower flushed offset ${this.flushedEnd} outside [0, log end offset ${this.logEnd}]`);
    invariant(0n <= this.hw && this.hw <= this.logEnd, this.name, () =>
      `follower high watermark ${this.hw} above its log end offset ${this.logEnd} (clamp it to the recovered log first)`);
  }

  get leaderEpoch(): number {
    return this.epoch;
  }
  get logEndOffset(): bigint {
    return this.logEnd;
  }
  get flushedOffset(): bigint {
    return this.flushedEnd;
  }
  get highWatermark(): bigint {
    return this.hw;
  }
  get epochEntries(): EpochEntries {
    return this.entries;
  }

  /** The fields of the next ReplicaFetchPartition. */
  fetchRequest(): { currentLeaderEpoch: number; fetchOffset: bigint; flushedOffset: bigint; lastFetchedEpoch: number } {
    return { currentLeaderEpoch: this.epoch, fetchOffset: this.logEnd, flushedOffset: this.flushedEnd, lastFetchedEpoch: latestEpoch(this.entries) };
  }

  /** Metadata says a newer leader epoch is current (fetches go to its leader from now on). */
  newLeaderEpoch(leaderEpoch: number): void {
    invariant(leaderEpoch >= this.epoch, this.name, () => `leader epoch went back from ${this.epoch} to ${leaderEpoch}`);
    this.epoch = leaderEpoch;
  }

  /** Decides a truncation from the leader's diverging epoch or OffsetForLeaderEpoch answer; changes nothing. */
  decideTruncation(leaderAnswer: EpochEndOffset): TruncationDecision {
    return decideTruncation({
      partitionName: this.name,
      leaderAnswer,
      epochEntries: this.entries,
      logEndOffset: this.logEnd,
      highWatermark: this.hw,
      allowTruncationBelowHighWatermark: this.allowBelowHw,
    });
  }

  /** The log was truncated to offset (storage first, then this). */
  truncated(offset: bigint): void {
    invariant(offset <= this.logEnd, this.name, () => `truncation to ${offset} is beyond the log end offset ${this.logEnd}`);
    invariant(offset >= this.hw || this.allowBelowHw, this.name, () => `truncation to ${offset} is below the high watermark ${this.hw}`);
    this.logEnd = offset;
    this.flushedEnd = minBigint(this.flushedEnd, offset);
    this.hw = minBigint(this.hw, offset);
    // Even when nothing was removed, an epoch that starts at the new end wrote nothing we keep.
    this.entries = truncateEpochsFromEnd(this.entries, offset);
  }

  /** A batch fetched from the leader was appended at the log end. */
  appended(batch: { baseOffset: bigint; lastOffset: bigint; leaderEpoch: number }): void {
    invariant(batch.baseOffset === this.logEnd && batch.lastOffset >= batch.baseOffset, this.name, () =>
      `batch [${batch.baseOffset}, ${batch.lastOffset}] does not start at the log end offset ${this.logEnd}`);
    invariant(batch.leaderEpoch <= this.epoch, this.name, () =>
      `batch at ${batch.baseOffset} has leader epoch ${batch.leaderEpoch}, newer than the current ${this.epoch}`);
    this.entries = assignEpoch(this.entries, batch.leaderEpoch, batch.baseOffset, this.name);
    this.logEnd = batch.lastOffset + 1n;
  }

  /** Everything below flushedOffset is fsynced locally. */
  flushed(flushedOffset: bigint): void {
    invariant(flushedOffset >= this.flushedEnd && flushedOffset <= this.logEnd, this.name, () =>
      `follower flushed offset ${flushedOffset} must be in [${this.flushedEnd}, log end offset ${this.logEnd}]`);
    this.flushedEnd = flushedOffset;
  }

  /** The leader's high watermark from a fetch response. */
  leaderHighWatermark(leaderHighWatermark: bigint): { highWatermark: bigint; hwChanged: boolean } {
    const next = followerHighWatermark({
      currentHighWatermark: this.hw,
      leaderHighWatermark,
      logEndOffset: this.logEnd,
      flushedOffset: this.flushedEnd,
      durability: this.durability,
    });
    const hwChanged = next !== this.hw;
    this.hw = next;
    return { highWatermark: this.hw, hwChanged };
  }
}
