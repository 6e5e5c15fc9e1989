import { describe, expect, it } from "vitest";
import {
  assignEpoch,
  checkEpochEntries,
  divergence,
  endOffsetForEpoch,
  PartitionInvariantError,
  latestEpoch,
  truncateEpochsFromEnd,
  truncateEpochsFromStart,
  type EpochEntry,
} from "../src/replication/state/index.js";

const e = (epoch: number, startOffset: number): EpochEntry => ({ epoch, startOffset: BigInt(startOffset) });
// Epoch 1 wrote [0, 5), epoch 3 wrote [5, 9), epoch 4 is current from 9; log end offset 12.
const cache = [e(1, 0), e(3, 5), e(4, 9)];

describe("endOffsetForEpoch (Kafka's LeaderEpochFileCache.endOffsetFor)", () => {
  it("answers the log end offset for the latest epoch", () => {
    expect(endOffsetForEpoch(cache, 4, 12n)).toEqual({ leaderEpoch: 4, endOffset: 12n });
  });
  it("answers an older epoch with the start of the next one", () => {
    expect(endOffsetForEpoch(cache, 1, 12n)).toEqual({ leaderEpoch: 1, endOffset: 5n });
    expect(endOffsetForEpoch(cache, 3, 12n)).toEqual({ leaderEpoch: 3, endOffset: 9n });
  });
  it("answers an epoch it never had with the largest epoch below it and the next start (KIP-279)", () => {
    expect(endOffsetForEpoch(cache, 2, 12n)).toEqual({ leaderEpoch: 1, endOffset: 5n });
  });
  it("answers an epoch older than every entry with the requested epoch and the first start", () => {
    expect(endOffsetForEpoch([e(3, 7), e(4, 9)], 1, 12n)).toEqual({ leaderEpoch: 1, endOffset: 7n });
  });
  it("answers undefined (-1, -1) for -1, for epochs above every entry and for an empty cache", () => {
    const undef = { leaderEpoch: -1, endOffset: -1n };
    expect(endOffsetForEpoch(cache, -1, 12n)).toEqual(undef);
    expect(endOffsetForEpoch(cache, 7, 12n)).toEqual(undef);
    expect(endOffsetForEpoch([], 0, 0n)).toEqual(undef);
  });
});

describe("divergence (the leader's check on a follower fetch, KIP-320)", () => {
  it("finds none when the follower's log is a prefix of the leader's", () => {
    expect(divergence(cache, 12n, 12n, 4)).toBeUndefined();
    expect(divergence(cache, 12n, 7n, 3)).toBeUndefined();
    expect(divergence(cache, 12n, 5n, 1)).toBeUndefined();
    expect(divergence(cache, 12n, 0n, -1)).toBeUndefined();
  });
  it("reports the leader's end of the follower's last epoch when the follower reaches past it", () => {
    expect(divergence(cache, 12n, 7n, 1)).toEqual({ leaderEpoch: 1, endOffset: 5n });
    expect(divergence(cache, 12n, 13n, 4)).toEqual({ leaderEpoch: 4, endOffset: 12n });
  });
  it("reports the largest older epoch when the leader never had the follower's last epoch", () => {
    expect(divergence(cache, 12n, 6n, 2)).toEqual({ leaderEpoch: 1, endOffset: 5n });
  });
});

describe("epoch cache maintenance", () => {
  const name = "t-0";
  it("assigns a newer epoch and ignores the latest epoch again", () => {
    expect(assignEpoch(cache, 5, 12n, name)).toEqual([...cache, e(5, 12)]);
    expect(assignEpoch(cache, 4, 11n, name)).toEqual(cache);
    expect(latestEpoch([])).toBe(-1);
  });
  it("drops epochs that wrote nothing when a newer epoch starts at the same offset", () => {
    expect(assignEpoch([e(1, 0), e(3, 5)], 4, 5n, name)).toEqual([e(1, 0), e(4, 5)]);
  });
  it("refuses an older epoch after a newer one: the log was not truncated first", () => {
    expect(() => assignEpoch(cache, 2, 12n, name)).toThrow(PartitionInvariantError);
    expect(() => assignEpoch(cache, 2, 12n, name)).toThrow(/t-0: leader epoch 2 at offset 12/);
  });
  it("truncates from the end and from the start like Kafka", () => {
    expect(truncateEpochsFromEnd(cache, 9n)).toEqual([e(1, 0), e(3, 5)]);
    expect(truncateEpochsFromEnd(cache, 6n)).toEqual([e(1, 0), e(3, 5)]);
    expect(truncateEpochsFromStart(cache, 6n)).toEqual([e(3, 6), e(4, 9)]);
    expect(truncateEpochsFromStart(cache, 5n)).toEqual([e(3, 5), e(4, 9)]);
  });
  it("rejects out-of-order caches with the partition named", () => {
    expect(() => checkEpochEntries([e(3, 5), e(2, 6)], "orders-2")).toThrow(/orders-2: leader epoch cache out of order/);
  });
});
