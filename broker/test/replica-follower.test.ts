import { describe, expect, it } from "vitest";
import {
  decideTruncation,
  FollowerState,
  followerHighWatermark,
  PartitionInvariantError,
  type EpochEntry,
  type FollowerStateInit,
} from "../src/replication/state/index.js";

const e = (epoch: number, startOffset: number): EpochEntry => ({ epoch, startOffset: BigInt(startOffset) });

function follower(overrides: Partial<FollowerStateInit> = {}): FollowerState {
  return new FollowerState({
    topic: "orders",
    partition: 1,
    replicaId: 2,
    leaderEpoch: 6,
    durability: "fsync",
    // Epoch 1 wrote [0, 5), epoch 4 wrote [5, 10).
    epochEntries: [e(1, 0), e(4, 5)],
    logEndOffset: 10n,
    flushedOffset: 10n,
    highWatermark: 3n,
    ...overrides,
  });
}

describe("truncation decision (Kafka's getOffsetTruncationState)", () => {
  it("truncates to min(own end of the epoch, leader's end of it) when both have the epoch", () => {
    expect(follower().decideTruncation({ leaderEpoch: 4, endOffset: 7n })).toEqual({ truncateTo: 7n, complete: true });
    expect(follower().decideTruncation({ leaderEpoch: 1, endOffset: 8n })).toEqual({ truncateTo: 5n, complete: true });
  });

  it("keeps everything when the leader's end is past ours", () => {
    expect(follower().decideTruncation({ leaderEpoch: 4, endOffset: 12n })).toEqual({ truncateTo: 10n, complete: true });
  });

  it("cuts back to its own largest older epoch and asks again when it lacks the leader's epoch (KIP-279)", () => {
    // The leader answered epoch 3 (which it has, and we do not): our largest epoch <= 3 is 1, ending at 5.
    expect(follower().decideTruncation({ leaderEpoch: 3, endOffset: 9n })).toEqual({ truncateTo: 5n, complete: false });
  });

  it("falls back to the leader's end offset when the leader has no epoch or we have none below it", () => {
    expect(follower().decideTruncation({ leaderEpoch: -1, endOffset: 6n })).toEqual({ truncateTo: 6n, complete: true });
    expect(follower({ epochEntries: [], highWatermark: 0n }).decideTruncation({ leaderEpoch: 2, endOffset: 4n })).toEqual({ truncateTo: 4n, complete: true });
  });

  it("truncates to its high watermark when the leader cannot answer at all", () => {
    expect(follower().decideTruncation({ leaderEpoch: -1, endOffset: -1n })).toEqual({ truncateTo: 3n, complete: true });
  });

  it("never truncates below its own high watermark: a committed record would be lost", () => {
    const f = follower({ highWatermark: 8n });
    expect(() => f.decideTruncation({ leaderEpoch: 4, endOffset: 6n })).toThrow(PartitionInvariantError);
    expect(() => f.decideTruncation({ leaderEpoch: 4, endOffset: 6n })).toThrow(
      /^orders-1: follower would truncate to offset 6, below its high watermark 8 \(log end offset 10, leader answered epoch 4 end offset 6/,
    );
    expect(() => f.truncated(7n)).toThrow(/orders-1: truncation to 7 is below the high watermark 8/);
  });

  it("may go below its high watermark only when unclean election is allowed", () => {
    const f = follower({ highWatermark: 8n, allowTruncationBelowHighWatermark: true });
    expect(f.decideTruncation({ leaderEpoch: 4, endOffset: 6n }).truncateTo).toBe(6n);
    f.truncated(6n);
    expect(f.highWatermark).toBe(6n);
  });

  it("works as a pure function too", () => {
    expect(decideTruncation({ partitionName: "t-0", leaderAnswer: { leaderEpoch: 4, endOffset: 7n }, epochEntries: [e(1, 0), e(4, 5)], logEndOffset: 10n, highWatermark: 0n }))
      .toEqual({ truncateTo: 7n, complete: true });
  });
});

describe("follower log bookkeeping", () => {
  it("reports its fetch position with the epoch of its last batch", () => {
    expect(follower().fetchRequest()).toEqual({ currentLeaderEpoch: 6, fetchOffset: 10n, flushedOffset: 10n, lastFetchedEpoch: 4 });
  });

  it("drops epochs at or after the truncation point, then assigns epochs of appended batches", () => {
    const f = follower();
    f.truncated(5n);
    expect(f.epochEntries).toEqual([e(1, 0)]);
    expect(f.flushedOffset).toBe(5n);
    f.appended({ baseOffset: 5n, lastOffset: 6n, leaderEpoch: 3 });
    f.appended({ baseOffset: 7n, lastOffset: 7n, leaderEpoch: 6 });
    expect(f.epochEntries).toEqual([e(1, 0), e(3, 5), e(6, 7)]);
    expect(f.fetchRequest()).toMatchObject({ fetchOffset: 8n, flushedOffset: 5n, lastFetchedEpoch: 6 });
  });

  it("refuses appends that do not continue the log or come from a future epoch", () => {
    const f = follower();
    expect(() => f.appended({ baseOffset: 11n, lastOffset: 11n, leaderEpoch: 6 })).toThrow(/orders-1: batch \[11, 11\] does not start at the log end offset 10/);
    expect(() => f.appended({ baseOffset: 10n, lastOffset: 10n, leaderEpoch: 7 })).toThrow(/newer than the current 6/);
    expect(() => f.newLeaderEpoch(5)).toThrow(/leader epoch went back from 6 to 5/);
  });
});

describe("follower high watermark", () => {
  it("is min(leader HW, own log end offset) under memory durability", () => {
    const f = follower({ durability: "memory", flushedOffset: 2n, highWatermark: 0n });
    expect(f.leaderHighWatermark(8n)).toEqual({ highWatermark: 8n, hwChanged: true });
    expect(f.leaderHighWatermark(20n).highWatermark).toBe(10n);
  });

  it("is bounded by its flushed offset under fsync durability", () => {
    const f = follower({ flushedOffset: 6n, highWatermark: 0n });
    expect(f.leaderHighWatermark(8n).highWatermark).toBe(6n);
    f.flushed(10n);
    expect(f.leaderHighWatermark(8n).highWatermark).toBe(8n);
  });

  it("never decreases when a new leader reports a lower HW", () => {
    const f = follower({ highWatermark: 7n });
    expect(f.leaderHighWatermark(4n)).toEqual({ highWatermark: 7n, hwChanged: false });
    expect(followerHighWatermark({ currentHighWatermark: 7n, leaderHighWatermark: 4n, logEndOffset: 10n, flushedOffset: 10n, durability: "memory" })).toBe(7n);
  });

  it("refuses a starting HW above the log (clamp after recovery first)", () => {
    expect(() => follower({ highWatermark: 11n })).toThrow(/orders-1: follower high watermark 11 above its log end offset 10/);
  });
});
