import { ErrorCode } from "@runnel/proto";
import { describe, expect, it } from "vitest";
import { LeaderState, PartitionInvariantError, type LeaderStateInit } from "../src/replication/state/index.js";

const lagMs = 1_000;

function leader(overrides: Partial<LeaderStateInit> = {}): LeaderState {
  return new LeaderState({
    topic: "orders",
    partition: 3,
    localReplicaId: 1,
    leaderEpoch: 5,
    partitionEpoch: 10,
    replicas: [1, 2, 3],
    isr: [1, 2, 3],
    epochEntries: [{ epoch: 2, startOffset: 0n }],
    logEndOffset: 0n,
    flushedOffset: 0n,
    highWatermark: 0n,
    durability: "fsync",
    minInsyncReplicas: 2,
    replicaLagTimeMaxMs: lagMs,
    nowMs: 0,
    ...overrides,
  });
}

/** A follower fetch at the current epoch that is a prefix of the leader's log. */
function fetch(l: LeaderState, replicaId: number, fetchOffset: number, flushedOffset: number, nowMs: number, lastFetchedEpoch = 5) {
  return l.followerFetch({ replicaId, currentLeaderEpoch: 5, fetchOffset: BigInt(fetchOffset), flushedOffset: BigInt(flushedOffset), lastFetchedEpoch, nowMs });
}

function appendAndFlush(l: LeaderState, logEndOffset: number) {
  l.localAppend({ logEndOffset: BigInt(logEndOffset) });
  return l.localFlushed(BigInt(logEndOffset));
}

describe("high watermark", () => {
  it("is the minimum flushed offset over the ISR under fsync durability", () => {
    const l = leader();
    appendAndFlush(l, 10);
    expect(fetch(l, 2, 10, 4, 1).hwChanged).toBe(false); // replica 3 has not fetched yet
    const d = fetch(l, 3, 8, 6, 2);
    expect(d).toMatchObject({ hwChanged: true, highWatermark: 4n });
    expect(fetch(l, 2, 10, 10, 3).highWatermark).toBe(6n);
  });

  it("is the minimum log end offset over the ISR under memory durability", () => {
    const l = leader({ durability: "memory" });
    l.localAppend({ logEndOffset: 10n });
    fetch(l, 2, 10, 0, 1);
    expect(fetch(l, 3, 7, 0, 2).highWatermark).toBe(7n);
  });

  it("never passes the leader's own flushed offset under fsync durability", () => {
    const l = leader();
    l.localAppend({ logEndOffset: 10n });
    fetch(l, 2, 10, 10, 1);
    expect(fetch(l, 3, 10, 10, 2).highWatermark).toBe(0n);
    expect(l.localFlushed(7n).highWatermark).toBe(7n);
  });

  it("never decreases, even when an ISR member reports less after truncating", () => {
    const l = leader();
    appendAndFlush(l, 10);
    fetch(l, 2, 10, 10, 1);
    expect(fetch(l, 3, 10, 10, 2).highWatermark).toBe(10n);
    expect(fetch(l, 3, 3, 3, 3).highWatermark).toBe(10n);
  });

  it("does not count a diverging follower's offsets", () => {
    const l = leader({ epochEntries: [{ epoch: 2, startOffset: 0n }], logEndOffset: 4n, flushedOffset: 4n });
    appendAndFlush(l, 10);
    fetch(l, 2, 10, 10, 1);
    // Replica 3 has epoch-3 records from offset 4 that this leader never had.
    const d = fetch(l, 3, 10, 10, 2, 3);
    expect(d.divergingEpoch).toEqual({ leaderEpoch: 2, endOffset: 4n });
    expect(d.highWatermark).toBe(0n);
  });
});

describe("KIP-320 fencing and bad input", () => {
  it("answers FENCED_LEADER_EPOCH to an older epoch and UNKNOWN_LEADER_EPOCH to a newer one", () => {
    const l = leader();
    const base = { replicaId: 2, fetchOffset: 0n, flushedOffset: 0n, lastFetchedEpoch: -1, nowMs: 1 };
    expect(l.followerFetch({ ...base, currentLeaderEpoch: 4 }).errorCode).toBe(ErrorCode.FENCED_LEADER_EPOCH);
    expect(l.followerFetch({ ...base, currentLeaderEpoch: 6 }).errorCode).toBe(ErrorCode.UNKNOWN_LEADER_EPOCH);
    expect(l.offsetForLeaderEpoch({ leaderEpoch: 2, currentLeaderEpoch: 4 }).errorCode).toBe(ErrorCode.FENCED_LEADER_EPOCH);
  });

  it("answers OffsetForLeaderEpoch from its epoch cache", () => {
    const l = leader({ logEndOffset: 4n, flushedOffset: 4n });
    l.localAppend({ logEndOffset: 9n });
    expect(l.offsetForLeaderEpoch({ leaderEpoch: 3, currentLeaderEpoch: 5 })).toEqual({ errorCode: ErrorCode.ERROR_CODE_NONE, epochEndOffset: { leaderEpoch: 2, endOffset: 4n } });
    expect(l.offsetForLeaderEpoch({ leaderEpoch: 5, currentLeaderEpoch: 5 }).epochEndOffset).toEqual({ leaderEpoch: 5, endOffset: 9n });
  });

  it("answers INVALID_REQUEST to unknown replicas and inconsistent offsets, OFFSET_OUT_OF_RANGE past its end", () => {
    const l = leader();
    appendAndFlush(l, 5);
    expect(fetch(l, 9, 0, 0, 1).errorCode).toBe(ErrorCode.INVALID_REQUEST);
    expect(fetch(l, 1, 0, 0, 1).errorCode).toBe(ErrorCode.INVALID_REQUEST);
    expect(fetch(l, 2, 3, 4, 1).errorCode).toBe(ErrorCode.INVALID_REQUEST);
    expect(fetch(l, 2, -1, -1, 1).errorCode).toBe(ErrorCode.INVALID_REQUEST);
    expect(fetch(l, 2, 7, 0, 1, -1).errorCode).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
  });

  it("throws a PartitionInvariantError naming the partition for impossible local states", () => {
    const l = leader();
    l.localAppend({ logEndOffset: 5n });
    expect(() => l.localAppend({ logEndOffset: 4n })).toThrow(PartitionInvariantError);
    expect(() => l.localAppend({ logEndOffset: 4n })).toThrow(/orders-3: leader log end offset moved back from 5 to 4/);
    expect(() => l.localFlushed(6n)).toThrow(/orders-3/);
    expect(() => leader({ highWatermark: 3n })).toThrow(/orders-3: new leader's high watermark 3 is above its flushed offset 0/);
    expect(() => leader({ isr: [2, 3] })).toThrow(/does not contain the leader 1/);
    expect(() => l.tick(-1)).toThrow(/clock went back/);
  });
});

describe("ISR shrink (replica.lag.time.max.ms) and expand", () => {
  it("proposes removing a follower that has not caught up within the lag time", () => {
    const l = leader();
    appendAndFlush(l, 10);
    fetch(l, 2, 10, 10, 100);
    fetch(l, 3, 2, 2, 100);
    expect(l.tick(lagMs).isrProposal).toBeUndefined();
    fetch(l, 2, 10, 10, lagMs + 1);
    const d = l.tick(lagMs + 1);
    expect(d.isrProposal).toEqual({ kind: "shrink", replicaIds: [3], newIsr: [1, 2], leaderEpoch: 5, partitionEpoch: 10 });
  });

  it("keeps an idle follower that is at the leader's log end however much time passes", () => {
    const l = leader();
    appendAndFlush(l, 10);
    fetch(l, 2, 10, 10, 1);
    fetch(l, 3, 10, 10, 1);
    expect(l.tick(100 * lagMs).isrProposal).toBeUndefined();
  });

  it("counts a follower as caught up as of its previous fetch when it reached the leader's end of then", () => {
    const l = leader();
    appendAndFlush(l, 10);
    fetch(l, 2, 10, 10, 0);
    fetch(l, 3, 10, 10, 0);
    // Appends keep coming; replica 3 always reaches the end the leader had at its previous fetch.
    for (let t = 1; t <= 5; t++) {
      appendAndFlush(l, 10 + t * 10);
      fetch(l, 2, 10 + t * 10, 10 + t * 10, t * 900);
      fetch(l, 3, t * 10, t * 10, t * 900);
    }
    expect(l.tick(5 * 900 + lagMs - 900).isrProposal).toBeUndefined();
    expect(l.tick(5 * 900 + lagMs - 899).isrProposal?.replicaIds).toEqual([3]);
  });

  it("proposes adding a follower once it has caught up to the HW and reached the current epoch", () => {
    const l = leader({ isr: [1, 2], logEndOffset: 4n, flushedOffset: 4n, highWatermark: 4n });
    appendAndFlush(l, 10);
    expect(fetch(l, 2, 10, 10, 1).highWatermark).toBe(10n);
    expect(fetch(l, 3, 3, 3, 2, 2).isrProposal).toBeUndefined(); // below the epoch start offset 4 and the HW
    expect(fetch(l, 3, 10, 9, 3).isrProposal).toBeUndefined(); // fetched but not flushed up to the HW
    const d = fetch(l, 3, 10, 10, 4);
    expect(d.isrProposal).toEqual({ kind: "expand", replicaIds: [3], newIsr: [1, 2, 3], leaderEpoch: 5, partitionEpoch: 10 });
    expect(l.maximalIsr).toEqual([1, 2, 3]);
  });

  it("keeps one ISR change in flight at a time; the answer clears it", () => {
    const l = leader();
    appendAndFlush(l, 10);
    fetch(l, 2, 10, 10, 1);
    expect(l.tick(lagMs + 2).isrProposal?.newIsr).toEqual([1, 2]);
    expect(l.tick(lagMs + 3).isrProposal).toBeUndefined();
    expect(l.isrProposalFailed().isrProposal).toBeUndefined();
    expect(l.tick(lagMs + 4).isrProposal?.newIsr).toEqual([1, 2]);
    l.isrChanged([1, 2], 11);
    expect(l.isrChangeInFlight).toBeUndefined();
    expect(l.partitionEpoch).toBe(11);
    expect(fetch(l, 3, 10, 10, lagMs + 5).isrProposal?.newIsr).toEqual([1, 2, 3]);
    expect(fetch(l, 3, 10, 10, lagMs + 6).isrProposal).toBeUndefined();
  });

  it("waits for an ISR member whose removal is pending, and for a member whose addition is pending", () => {
    const l = leader();
    appendAndFlush(l, 10);
    fetch(l, 2, 10, 10, 1);
    l.tick(lagMs + 2); // proposes removing 3, which has never fetched
    expect(l.highWatermark).toBe(0n);
    expect(l.isrChanged([1, 2], 11).highWatermark).toBe(10n);

    expect(fetch(l, 3, 10, 10, lagMs + 3).isrProposal?.kind).toBe("expand");
    appendAndFlush(l, 20);
    expect(fetch(l, 2, 20, 20, lagMs + 4).highWatermark).toBe(10n); // 3 may join: wait for it
    expect(fetch(l, 3, 15, 15, lagMs + 5).highWatermark).toBe(15n);
  });

  it("ignores stale ISR notices", () => {
    const l = leader();
    l.isrChanged([1, 2], 11);
    expect(l.isrChanged([1, 2, 3], 11).hwChanged).toBe(false);
    expect(l.isr).toEqual([1, 2]);
  });
});

describe("acks=all and min.insync.replicas", () => {
  it("refuses before appending with NOT_ENOUGH_REPLICAS when the ISR is below min.insync.replicas", () => {
    const l = leader({ isr: [1], minInsyncReplicas: 2 });
    expect(l.acksAllAdmission()).toBe(ErrorCode.NOT_ENOUGH_REPLICAS);
    expect(l.canAcceptAcksAll()).toBe(false);
    expect(leader().acksAllAdmission()).toBe(ErrorCode.ERROR_CODE_NONE);
  });

  it("completes once the HW passes the batch's last offset", () => {
    const l = leader();
    appendAndFlush(l, 5);
    expect(l.addPendingAck({ id: 1, lastOffset: 4n, deadlineMs: 100 }).acks).toEqual([]);
    l.localAppend({ logEndOffset: 9n });
    l.addPendingAck({ id: 2, lastOffset: 8n, deadlineMs: 100 });
    fetch(l, 2, 9, 9, 1);
    expect(fetch(l, 3, 4, 4, 2).acks).toEqual([]);
    expect(fetch(l, 3, 5, 5, 3).acks).toEqual([{ id: 1, errorCode: ErrorCode.ERROR_CODE_NONE }]);
    expect(fetch(l, 3, 9, 9, 4).acks).toEqual([]); // the leader has not flushed 8 yet
    expect(l.localFlushed(9n).acks).toEqual([{ id: 2, errorCode: ErrorCode.ERROR_CODE_NONE }]);
    expect(l.pendingAckCount).toBe(0);
  });

  it("answers at once when the HW already covers the batch", () => {
    const l = leader({ isr: [1], minInsyncReplicas: 1, durability: "memory" });
    l.localAppend({ logEndOffset: 3n });
    expect(l.addPendingAck({ id: 7, lastOffset: 2n, deadlineMs: 5 }).acks).toEqual([{ id: 7, errorCode: ErrorCode.ERROR_CODE_NONE }]);
  });

  it("times out with REQUEST_TIMED_OUT at the deadline", () => {
    const l = leader();
    appendAndFlush(l, 5);
    l.addPendingAck({ id: 1, lastOffset: 4n, deadlineMs: 50 });
    expect(l.nextDeadlineMs()).toBe(50);
    expect(l.tick(49).acks).toEqual([]);
    expect(l.tick(50).acks).toEqual([{ id: 1, errorCode: ErrorCode.REQUEST_TIMED_OUT }]);
    expect(l.nextDeadlineMs()).toBeUndefined();
  });

  it("fails with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrinks below min.insync.replicas first", () => {
    const l = leader({ minInsyncReplicas: 3 });
    appendAndFlush(l, 5);
    l.addPendingAck({ id: 1, lastOffset: 4n, deadlineMs: 5_000 });
    l.addPendingAck({ id: 2, lastOffset: 4n, deadlineMs: 5_000 });
    fetch(l, 2, 5, 5, 1);
    const proposal = l.tick(lagMs + 1).isrProposal;
    expect(proposal?.newIsr).toEqual([1, 2]);
    expect(l.pendingAckCount).toBe(2); // nothing fails while the shrink is only proposed
    const d = l.isrChanged(proposal!.newIsr, 11);
    expect(d.acks).toEqual([
      { id: 1, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND },
      { id: 2, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND },
    ]);
    expect(d.highWatermark).toBe(5n);
    // The ISR shrank while a batch was being appended: same answer.
    l.localAppend({ logEndOffset: 6n });
    expect(l.addPendingAck({ id: 3, lastOffset: 5n, deadlineMs: 5_000 }).acks).toEqual([{ id: 3, errorCode: ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND }]);
  });

  it("answers NOT_LEADER to everything pending when it resigns, and refuses use afterwards", () => {
    const l = leader();
    appendAndFlush(l, 5);
    l.addPendingAck({ id: 1, lastOffset: 4n, deadlineMs: 5_000 });
    expect(l.resign()).toEqual([{ id: 1, errorCode: ErrorCode.NOT_LEADER }]);
    expect(() => l.tick(1)).toThrow(/orders-3: leader state for epoch 5 used after it resigned/);
  });

  it("rejects waiting for an offset not yet appended", () => {
    const l = leader();
    expect(() => l.addPendingAck({ id: 1, lastOffset: 0n, deadlineMs: 1 })).toThrow(/orders-3: acks=all request 1 waits for offset 0/);
  });
});
