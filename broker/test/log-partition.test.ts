import { afterEach, describe, expect, test } from "vitest";
import { open } from "lmdb";
import { buildBatch, decodeBatch, RecordBatch } from "@runnel/proto";
import { offsetKey, storeWireBatch } from "../src/log/codec.js";
import {
  decodeStoredHeader,
  InvalidBatchError,
  InvariantError,
  LogStore,
  LogUnavailableError,
  OffsetOutOfRangeError,
  type PartitionLog,
  StorageCorruptionError,
} from "../src/log/index.js";
import { maxTailCacheBytesPerPartition } from "../src/log/limits.js";
import { batchOf, keepForever, tempDir, text } from "./log-helpers.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function openStore(label: string): { store: LogStore; dir: string; reopen: () => Promise<LogStore> } {
  const { dir, cleanup } = tempDir(label);
  let store = LogStore.open({ dir });
  cleanups.push(cleanup);
  cleanups.push(() => store.close());
  return {
    store,
    dir,
    reopen: async () => {
      await store.close();
      store = LogStore.open({ dir });
      return store;
    },
  };
}

function values(wires: Uint8Array[]): string[] {
  return wires.flatMap((w) => decodeBatch(RecordBatch.decode(w)).map((r) => `${r.offset}:${text(r.value)}`));
}

/** Three batches: offsets 0-2, 3-4, 5-8. */
async function threeBatches(log: PartitionLog): Promise<void> {
  await log.appendAsLeader(batchOf(3, "a"), 0);
  await log.appendAsLeader(batchOf(2, "b"), 0);
  await log.appendAsLeader(batchOf(4, "c"), 0);
}

describe("append and read", () => {
  test("appends get consecutive offsets, also when issued concurrently", async () => {
    const { store } = openStore("append");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    const infos = await Promise.all([1, 2, 3, 4, 5].map((n, i) => log.appendAsLeader(batchOf(n, `b${i}`), 0)));
    expect(infos.map((i) => [i.baseOffset, i.lastOffset, i.logEndOffset])).toEqual([
      [0n, 0n, 1n],
      [1n, 2n, 3n],
      [3n, 5n, 6n],
      [6n, 9n, 10n],
      [10n, 14n, 15n],
    ]);
    expect(log.logEndOffset).toBe(15n);
    const read = log.read(0n, 1 << 20, log.logEndOffset);
    expect(read.batches.map((w) => decodeStoredHeader(w).baseOffset)).toEqual([0n, 1n, 3n, 6n, 10n]);
    expect(read.bytes).toBe(read.batches.reduce((n, w) => n + w.length, 0));
  });

  test("log end offset advances at call time, before the commit", async () => {
    const { store } = openStore("leo");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    const pending = log.appendAsLeader(batchOf(4, "a"), 0);
    expect(log.logEndOffset).toBe(4n);
    await pending;
    expect(log.read(0n, 1 << 20, 4n).batches).toHaveLength(1);
  });

  test("a read inside a batch returns that whole batch", async () => {
    const { store } = openStore("inside");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    const r = log.read(4n, 1 << 20, log.logEndOffset);
    expect(r.firstOffset).toBe(3n);
    expect(values(r.batches)).toEqual(["3:b-0", "4:b-1", "5:c-0", "6:c-1", "7:c-2", "8:c-3"]);
    expect(log.read(8n, 1 << 20, log.logEndOffset).firstOffset).toBe(5n);
    expect(log.read(0n, 1 << 20, log.logEndOffset).firstOffset).toBe(0n);
  });

  test("maxBytes bounds the total but the first batch always comes back", async () => {
    const { store } = openStore("maxbytes");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    const all = log.read(0n, 1 << 20, log.logEndOffset).batches;
    const [first, second] = all.map((w) => w.length);
    expect(log.read(0n, 1, log.logEndOffset).batches).toHaveLength(1);
    expect(log.read(0n, first! + second! - 1, log.logEndOffset).batches).toHaveLength(1);
    expect(log.read(0n, first! + second!, log.logEndOffset).batches).toHaveLength(2);
  });

  test("upToOffset excludes any batch that reaches it", async () => {
    const { store } = openStore("upto");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    expect(log.read(0n, 1 << 20, 5n).batches.map((w) => decodeStoredHeader(w).baseOffset)).toEqual([0n, 3n]);
    expect(log.read(0n, 1 << 20, 4n).batches.map((w) => decodeStoredHeader(w).baseOffset)).toEqual([0n]);
    expect(log.read(0n, 1 << 20, 2n).batches).toEqual([]);
    expect(log.read(3n, 1 << 20, 3n)).toEqual({ batches: [], bytes: 0, firstOffset: undefined });
  });

  test("out of range reads name both bounds; the log end itself is an empty read", async () => {
    const { store } = openStore("range");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    expect(log.read(9n, 100, 9n).batches).toEqual([]);
    let err: unknown;
    try {
      log.read(10n, 100, 9n);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OffsetOutOfRangeError);
    expect(err).toMatchObject({ requested: 10n, logStartOffset: 0n, logEndOffset: 9n });
    expect(() => log.read(-1n, 100, 9n)).toThrow(OffsetOutOfRangeError);
  });

  test("the leader stamps base offset and epoch; LogAppendTime moves timestamps to the append time", async () => {
    const { store } = openStore("stamp");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(2, "a"), 3);
    const info = await log.appendAsLeader(batchOf(3, "b", 1_000, 10), 3, 50_000n);
    expect(info.maxTimestamp).toBe(50_020n);
    const [, wire] = log.read(0n, 1 << 20, log.logEndOffset).batches;
    const h = decodeStoredHeader(wire!);
    expect(h).toMatchObject({ baseOffset: 2n, leaderEpoch: 3, firstTimestamp: 50_000n, maxTimestamp: 50_020n, attributes: 8 });
    expect(decodeBatch(RecordBatch.decode(wire!)).map((r) => r.timestamp)).toEqual([50_000n, 50_010n, 50_020n]);
  });

  test("a fenced leader epoch cannot append", async () => {
    const { store } = openStore("fenced");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(1, "a"), 5);
    expect(() => log.appendAsLeader(batchOf(1, "b"), 4)).toThrow(InvariantError);
    expect(log.logEndOffset).toBe(1n);
  });
});

describe("truncation", () => {
  test("removes whole batches from a boundary and persists", async () => {
    const { store, reopen } = openStore("truncate");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    const sizeBefore = log.sizeBytes;
    await log.truncateTo(5n);
    expect(log.logEndOffset).toBe(5n);
    expect(values(log.read(0n, 1 << 20, 5n).batches)).toEqual(["0:a-0", "1:a-1", "2:a-2", "3:b-0", "4:b-1"]);
    expect(log.sizeBytes).toBeLessThan(sizeBefore);
    const next = await log.appendAsLeader(batchOf(1, "d"), 0);
    expect(next.baseOffset).toBe(5n);
    const sizeAfter = log.sizeBytes;
    const again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(again.logEndOffset).toBe(6n);
    expect(again.sizeBytes).toBe(sizeAfter);
    expect(values(again.read(5n, 1 << 20, 6n).batches)).toEqual(["5:d-0"]);
  });

  test("to the log end drops an epoch opened there without batches, so the new leader's older-epoch batch appends", async () => {
    const { store, reopen } = openStore("truncate-empty-epoch");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(2, "a"), 3);
    log.assignEpochStart(4, 2n); // leader in epoch 4 for a moment, nothing appended
    await log.truncateTo(2n); // the leader of epoch 5 says epoch 3 ends past 2: nothing to remove
    expect(log.epochEntries().map((e) => e.epoch)).toEqual([3]);
    const leader = store.openPartition("tid2", "orders-leader", 0, keepForever);
    await leader.appendAsLeader(batchOf(2, "a"), 3);
    await leader.appendAsLeader(batchOf(1, "b"), 3);
    await log.appendStored(leader.read(2n, 1, leader.logEndOffset).batches);
    expect(log.logEndOffset).toBe(3n);
    expect((await reopen()).openPartition("tid", "orders", 0, keepForever).epochEntries().map((e) => e.epoch)).toEqual([3]);
  });

  test("never below the high watermark, only at batch boundaries, never past the end", async () => {
    const { store } = openStore("truncate-hw");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    log.setHighWatermark(3n);
    await expect(log.truncateTo(0n)).rejects.toThrow(InvariantError);
    await expect(log.truncateTo(0n)).rejects.toThrow(/high watermark 3/);
    await expect(log.truncateTo(4n)).rejects.toThrow(/not a batch boundary/);
    await expect(log.truncateTo(10n)).rejects.toThrow(InvariantError);
    expect(log.logEndOffset).toBe(9n);
    await log.truncateTo(9n); // the log end: nothing to do
    await log.truncateTo(3n);
    expect(log.logEndOffset).toBe(3n);
    expect(log.highWatermark).toBe(3n);
  });

  test("an unclean truncation below the high watermark lowers it", async () => {
    const { store } = openStore("truncate-unclean");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    log.setHighWatermark(9n);
    await log.truncateTo(3n, { allowBelowHighWatermark: true });
    expect([log.logEndOffset, log.highWatermark]).toEqual([3n, 3n]);
  });

  test("also removes appends that have not committed yet", async () => {
    const { store, reopen } = openStore("truncate-pending");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(2, "a"), 0);
    const inFlight = [log.appendAsLeader(batchOf(2, "b"), 0), log.appendAsLeader(batchOf(2, "c"), 0)];
    await log.truncateTo(2n);
    await Promise.all(inFlight);
    expect(log.logEndOffset).toBe(2n);
    expect(values(log.read(0n, 1 << 20, 10n).batches)).toEqual(["0:a-0", "1:a-1"]);
    const again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(again.logEndOffset).toBe(2n);
    expect(again.sizeBytes).toBe(log.sizeBytes);
  });

  test("truncateFullyAndStartAt restarts an empty log at a new offset", async () => {
    const { store, reopen } = openStore("restart");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    await log.truncateFullyAndStartAt(100n);
    expect([log.logStartOffset, log.logEndOffset, log.highWatermark, log.sizeBytes, log.latestEpoch()]).toEqual([100n, 100n, 100n, 0, -1]);
    expect((await log.appendAsLeader(batchOf(1, "x"), 2)).baseOffset).toBe(100n);
    const again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect([again.logStartOffset, again.logEndOffset]).toEqual([100n, 101n]);
    expect(() => again.read(99n, 100, 101n)).toThrow(OffsetOutOfRangeError);
  });
});

describe("leader epoch cache", () => {
  test("follows appends, answers endOffsetForEpoch and survives a reopen", async () => {
    const { store, reopen } = openStore("epochs");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    expect(log.latestEpoch()).toBe(-1);
    expect(log.endOffsetForEpoch(0)).toEqual({ leaderEpoch: -1, endOffset: -1n });
    await log.appendAsLeader(batchOf(2, "a"), 1); // 0-1
    await log.appendAsLeader(batchOf(2, "b"), 1); // 2-3
    await log.appendAsLeader(batchOf(3, "c"), 3); // 4-6
    await log.appendAsLeader(batchOf(1, "d"), 6); // 7
    const expected = [
      { epoch: 1, startOffset: 0n },
      { epoch: 3, startOffset: 4n },
      { epoch: 6, startOffset: 7n },
    ];
    expect(log.epochEntries()).toEqual(expected);
    expect(log.latestEpoch()).toBe(6);
    expect(log.endOffsetForEpoch(6)).toEqual({ leaderEpoch: 6, endOffset: 8n });
    expect(log.endOffsetForEpoch(3)).toEqual({ leaderEpoch: 3, endOffset: 7n });
    expect(log.endOffsetForEpoch(2)).toEqual({ leaderEpoch: 1, endOffset: 4n });
    // Older than every known epoch: Kafka answers with the requested epoch ending where the first starts.
    expect(log.endOffsetForEpoch(0)).toEqual({ leaderEpoch: 0, endOffset: 0n });
    expect(log.endOffsetForEpoch(7)).toEqual({ leaderEpoch: -1, endOffset: -1n });

    const again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(again.epochEntries()).toEqual(expected);
    expect(again.endOffsetForEpoch(6)).toEqual({ leaderEpoch: 6, endOffset: 8n });
  });

  test("assignEpochStart records a new leader's epoch before any append, persistently", async () => {
    const { store, reopen } = openStore("epoch-assign");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(2, "a"), 1);
    log.assignEpochStart(4, 2n);
    log.assignEpochStart(4, 2n); // repeat: no change
    expect(() => log.assignEpochStart(3, 2n)).toThrow(InvariantError);
    expect(() => log.assignEpochStart(5, 1n)).toThrow(InvariantError);
    expect(log.endOffsetForEpoch(1)).toEqual({ leaderEpoch: 1, endOffset: 2n });
    const again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(again.epochEntries()).toEqual([
      { epoch: 1, startOffset: 0n },
      { epoch: 4, startOffset: 2n },
    ]);
    expect((await again.appendAsLeader(batchOf(1, "b"), 4)).baseOffset).toBe(2n);
    expect(again.epochEntries()).toHaveLength(2);
  });

  test("truncation trims epochs that start at or after the new end", async () => {
    const { store } = openStore("epoch-trunc");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(2, "a"), 1);
    await log.appendAsLeader(batchOf(2, "b"), 2);
    await log.appendAsLeader(batchOf(2, "c"), 3);
    await log.truncateTo(2n);
    expect(log.epochEntries()).toEqual([{ epoch: 1, startOffset: 0n }]);
    expect(log.endOffsetForEpoch(1)).toEqual({ leaderEpoch: 1, endOffset: 2n });
  });

  test("lost epoch metadata is rebuilt from the batches on open", async () => {
    const { store, reopen } = openStore("epoch-rebuild");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(2, "a"), 1);
    await log.appendAsLeader(batchOf(2, "b"), 2);
    await log.appendAsLeader(batchOf(2, "c"), 2);
    await log.appendAsLeader(batchOf(2, "d"), 5);
    // Simulate a metadata record that only knows epoch 1.
    await store.close();
    const root = open({ path: store.dir, maxDbs: 10 });
    const metaDb = root.openDB<Record<string, unknown>, string>({ name: "runnel:partition-meta", encoding: "json" });
    const record = metaDb.get("p/tid/0")!;
    await metaDb.put("p/tid/0", { ...record, epochs: [[1, "0"]] });
    await root.close();
    const again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(again.epochEntries()).toEqual([
      { epoch: 1, startOffset: 0n },
      { epoch: 2, startOffset: 2n },
      { epoch: 5, startOffset: 6n },
    ]);
  });
});

describe("high watermark", () => {
  test("only moves forward within [log start, log end]", async () => {
    const { store } = openStore("hw");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    log.setHighWatermark(5n);
    expect(() => log.setHighWatermark(4n)).toThrow(InvariantError);
    expect(() => log.setHighWatermark(10n)).toThrow(InvariantError);
    log.setHighWatermark(9n);
    expect(log.highWatermark).toBe(9n);
  });

  test("the checkpoint survives a reopen and is clamped to the log", async () => {
    const { store, reopen } = openStore("hw-checkpoint");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(log);
    log.setHighWatermark(5n);
    await store.flush();
    let again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(again.highWatermark).toBe(5n);
    again.setHighWatermark(9n);
    await again.truncateTo(9n);
    again = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(again.highWatermark).toBe(9n);
  });
});

describe("follower append", () => {
  test("a follower stores the leader's bytes exactly and serves the same bytes", async () => {
    const leaderSide = openStore("leader");
    const followerSide = openStore("follower");
    const leader = leaderSide.store.openPartition("tid", "orders", 0, keepForever);
    const follower = followerSide.store.openPartition("tid", "orders", 0, keepForever);
    await leader.appendAsLeader(batchOf(3, "a"), 1);
    await leader.appendAsLeader(batchOf(1, "b", 7_000), 1, 9_000n);
    await leader.appendAsLeader(batchOf(5, "c"), 4);
    const fromLeader = leader.read(0n, 1 << 20, leader.logEndOffset);
    const info = await follower.appendStored(fromLeader.batches);
    expect(info).toEqual({ baseOffset: 0n, lastOffset: 8n, logEndOffset: 9n, maxTimestamp: 9_000n });
    const fromFollower = follower.read(0n, 1 << 20, follower.logEndOffset);
    expect(fromFollower.batches.map((b) => Buffer.from(b))).toEqual(fromLeader.batches.map((b) => Buffer.from(b)));
    expect(follower.epochEntries()).toEqual(leader.epochEntries());
    expect(follower.sizeBytes).toBe(leader.sizeBytes);
    // Fetching in two steps gives the same result.
    const again = followerSide.store.openPartition("tid", "orders", 1, keepForever);
    await again.appendStored(leader.read(0n, 1, leader.logEndOffset).batches);
    await again.appendStored(leader.read(again.logEndOffset, 1 << 20, leader.logEndOffset).batches);
    expect(again.read(0n, 1 << 20, 9n).batches.map((b) => Buffer.from(b))).toEqual(fromLeader.batches.map((b) => Buffer.from(b)));
    expect(await again.appendStored([])).toMatchObject({ baseOffset: 9n, logEndOffset: 9n });
  });

  test("gaps, overlaps, bad CRCs and epochs going back are refused without writing", async () => {
    const leaderSide = openStore("leader-bad");
    const followerSide = openStore("follower-bad");
    const leader = leaderSide.store.openPartition("tid", "orders", 0, keepForever);
    const follower = followerSide.store.openPartition("tid", "orders", 0, keepForever);
    await leader.appendAsLeader(batchOf(2, "a"), 3);
    await leader.appendAsLeader(batchOf(2, "b"), 3);
    const [first, second] = leader.read(0n, 1 << 20, 4n).batches;
    expect(() => follower.appendStored([second!])).toThrow(InvalidBatchError);
    expect(() => follower.appendStored([first!, first!])).toThrow(/starts at offset 0, expected 2/);
    const corrupt = Uint8Array.from(second!);
    corrupt[corrupt.length - 1] = corrupt[corrupt.length - 1]! ^ 0x40;
    expect(() => follower.appendStored([first!, corrupt])).toThrow(StorageCorruptionError);
    expect(() => follower.appendStored([new Uint8Array([1, 2, 3])])).toThrow(InvalidBatchError);
    expect(follower.logEndOffset).toBe(0n);
    await follower.appendStored([first!]);
    await follower.appendAsLeader(batchOf(1, "x"), 5);
    await follower.truncateTo(2n); // back to the leader's history
    expect(follower.latestEpoch()).toBe(3);
    const older = await (async () => {
      const other = leaderSide.store.openPartition("tid", "orders", 1, keepForever);
      await other.appendAsLeader(batchOf(2, "z"), 0);
      await other.appendAsLeader(batchOf(1, "z"), 1);
      return other.read(0n, 1 << 20, 3n).batches;
    })();
    const f2 = followerSide.store.openPartition("tid", "orders", 1, keepForever);
    await f2.appendAsLeader(batchOf(2, "y"), 2);
    expect(() => f2.appendStored([older[1]!])).toThrow(/leader epoch 1 after epoch 2/);
    expect(f2.logEndOffset).toBe(2n);
  });
});

describe("offsetForTimestamp", () => {
  test("finds the first record at or after a time, below the high watermark", async () => {
    const { store } = openStore("timestamps");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(3, "a", 1_000, 10), 0); // 0-2 at 1000, 1010, 1020
    await log.appendAsLeader(batchOf(3, "b", 2_000, 10), 0); // 3-5 at 2000..2020
    await log.appendAsLeader(batchOf(3, "c", 3_000, 10), 0); // 6-8 at 3000..3020
    log.setHighWatermark(6n);
    expect(log.offsetForTimestamp(0n)).toEqual({ offset: 0n, timestamp: 1_000n });
    expect(log.offsetForTimestamp(1_005n)).toEqual({ offset: 1n, timestamp: 1_010n });
    expect(log.offsetForTimestamp(1_021n)).toEqual({ offset: 3n, timestamp: 2_000n });
    expect(log.offsetForTimestamp(2_020n)).toEqual({ offset: 5n, timestamp: 2_020n });
    expect(log.offsetForTimestamp(2_021n)).toBeUndefined(); // only above the high watermark
    log.setHighWatermark(9n);
    expect(log.offsetForTimestamp(2_021n)).toEqual({ offset: 6n, timestamp: 3_000n });
    expect(log.offsetForTimestamp(5_000n)).toBeUndefined();
  });
});

describe("corruption", () => {
  test("a damaged stored value is a StorageCorruptionError on read, and on open when it is the last", async () => {
    const { store, reopen } = openStore("corrupt");
    const written = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(written);
    const stored = Buffer.from(written._db.getBinary(offsetKey(3n))!);
    stored[stored.length - 2] = stored[stored.length - 2]! ^ 0x01;
    await written._db.put(offsetKey(3n), stored);
    // The writer's in-memory tail still serves what it appended; a reopened store reads the disk.
    expect(values(written.read(3n, 1 << 20, 9n).batches)).toEqual(["3:b-0", "4:b-1", "5:c-0", "6:c-1", "7:c-2", "8:c-3"]);
    const log = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    const db = log._db;
    expect(() => log.read(0n, 1 << 20, 9n)).toThrow(StorageCorruptionError);
    expect(() => log.read(3n, 1 << 20, 9n)).toThrow(/offset 3/);
    expect(log.read(0n, 1 << 20, 3n).batches).toHaveLength(1); // the batch before is fine

    // Damage the last batch: recovery must refuse to guess.
    const last = Buffer.from(db.getBinary(offsetKey(5n))!);
    last[10] = last[10]! ^ 0xff;
    await db.put(offsetKey(5n), last);
    const again = await reopen();
    expect(() => again.openPartition("tid", "orders", 0, keepForever)).toThrow(StorageCorruptionError);
  });

  test("a value whose checksum matches but whose header disagrees with its key is corrupt too", async () => {
    const { store, reopen } = openStore("corrupt-key");
    const written = store.openPartition("tid", "orders", 0, keepForever);
    await threeBatches(written);
    const wire = written.read(0n, 1 << 20, 3n).batches[0]!;
    await written._db.put(offsetKey(3n), storeWireBatch(wire));
    const log = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    expect(() => log.read(3n, 1 << 20, 9n)).toThrow(/header says base offset 0/);
  });
});

describe("store", () => {
  test("flush advances flushedOffset to everything written before it", async () => {
    const { store } = openStore("flush");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    const other = store.openPartition("tid", "orders", 1, keepForever);
    void log.appendAsLeader(batchOf(3, "a"), 0);
    void other.appendAsLeader(batchOf(2, "a"), 0);
    const flushes = [store.flush(), store.flush()];
    void log.appendAsLeader(batchOf(1, "late"), 0);
    const third = store.flush();
    await Promise.all(flushes);
    expect(log.flushedOffset).toBeGreaterThanOrEqual(3n);
    expect(other.flushedOffset).toBe(2n);
    await third;
    expect(log.flushedOffset).toBe(4n);
    await log.truncateTo(3n);
    expect(log.flushedOffset).toBe(3n);
  });

  test("flushedOffset advances in the background after commits, without a flush() call", async () => {
    const { store } = openStore("background-flush");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(3, "a"), 0);
    // Wait (with a generous bound, not a timing assertion) for LMDB's own sync to be observed.
    for (let i = 0; i < 3000 && log.flushedOffset < 3n; i++) await new Promise((r) => setTimeout(r, 10));
    expect(log.flushedOffset).toBe(3n);
  });

  test("a closed store refuses work with LogUnavailableError", async () => {
    const { dir, cleanup } = tempDir("closed");
    cleanups.push(cleanup);
    const store = LogStore.open({ dir });
    const log = store.openPartition("tid", "orders", 0, keepForever);
    await log.appendAsLeader(batchOf(1, "a"), 0);
    await store.close();
    expect(() => log.read(0n, 10, 1n)).toThrow(LogUnavailableError);
    expect(() => log.appendAsLeader(batchOf(1, "b"), 0)).toThrow(LogUnavailableError);
    expect(() => store.openPartition("tid", "orders", 0, keepForever)).toThrow(LogUnavailableError);
    await expect(store.flush()).rejects.toThrow(LogUnavailableError);
    await store.close(); // idempotent
  });

  test("same object on repeat; lists, reopens and deletes partitions", async () => {
    const { store, reopen } = openStore("store");
    const a = store.openPartition("t-a", "alpha", 0, keepForever);
    expect(store.openPartition("t-a", "alpha", 0, keepForever)).toBe(a);
    const b = store.openPartition("t-b", "beta", 2, keepForever);
    await a.appendAsLeader(batchOf(2, "a"), 0);
    await b.appendAsLeader(batchOf(1, "b"), 0);
    const again = await reopen();
    expect(again.listStoredPartitions().sort((x, y) => x.topicId.localeCompare(y.topicId))).toEqual([
      { topicId: "t-a", topicName: "alpha", partition: 0 },
      { topicId: "t-b", topicName: "beta", partition: 2 },
    ]);
    const all = again.partitions();
    expect(all.map((p) => [p.topicName, p.partition, p.logEndOffset]).sort()).toEqual([
      ["alpha", 0, 2n],
      ["beta", 2, 1n],
    ]);
    await again.deletePartition("t-a", 0);
    expect(() => all.find((p) => p.topicId === "t-a")!.read(0n, 10, 2n)).toThrow(LogUnavailableError);
    expect(again.listStoredPartitions()).toEqual([{ topicId: "t-b", topicName: "beta", partition: 2 }]);
    const fresh = again.openPartition("t-a", "alpha", 0, keepForever);
    expect([fresh.logStartOffset, fresh.logEndOffset, fresh.sizeBytes]).toEqual([0n, 0n, 0]);
    const last = await reopen();
    expect(last.listStoredPartitions()).toHaveLength(2);
    expect(last.openPartition("t-a", "alpha", 0, keepForever).logEndOffset).toBe(0n);
    expect(last.openPartition("t-b", "beta", 2, keepForever).logEndOffset).toBe(1n);
  });
});

describe("tail cache (reads at the tail do not touch LMDB's map)", () => {
  const hex = (wires: Uint8Array[]) => wires.map((w) => Buffer.from(w).toString("hex"));
  /** Overwrites a stored batch behind the log's back: a read that comes from disk then fails. */
  async function damage(log: PartitionLog, base: bigint): Promise<void> {
    const stored = Buffer.from(log._db.getBinary(offsetKey(base))!);
    stored[stored.length - 1] = stored[stored.length - 1]! ^ 0x01;
    await log._db.put(offsetKey(base), stored);
  }

  test("a read served from memory returns exactly what the same read from disk returns", async () => {
    const { store, reopen } = openStore("tail-equal");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    for (let i = 0; i < 8; i++) await log.appendAsLeader(batchOf(1 + (i % 3), `t${i}`), 0);
    const end = log.logEndOffset;
    const cases: Array<[bigint, number, bigint]> = [];
    for (let from = 0n; from < end; from++) for (const maxBytes of [1, 150, 400, 1 << 20]) for (const upTo of [from + 1n, from + 4n, end]) cases.push([from, maxBytes, upTo]);
    const fromMemory = cases.map(([f, m, u]) => log.read(f, m, u));
    const fromDisk = (await reopen()).openPartition("tid", "orders", 0, keepForever);
    cases.forEach(([f, m, u], i) => {
      const disk = fromDisk.read(f, m, u);
      expect({ batches: hex(fromMemory[i]!.batches), bytes: fromMemory[i]!.bytes, first: fromMemory[i]!.firstOffset }, `read(${f}, ${m}, ${u})`).toEqual({ batches: hex(disk.batches), bytes: disk.bytes, first: disk.firstOffset });
    });
  });

  test("holds the newest leader appends up to its bound; older batches, follower appends and truncated ones come from disk", async () => {
    const { store } = openStore("tail-bound");
    const log = store.openPartition("tid", "orders", 0, keepForever);
    const big = (tag: string) => buildBatch([{ value: new TextEncoder().encode(tag.repeat(256 * 1024)) }], { nowMs: 1 });
    const count = Math.ceil(maxTailCacheBytesPerPartition / (256 * 1024)) + 2;
    for (let i = 0; i < count; i++) await log.appendAsLeader(big(String(i % 10)), 0);
    await damage(log, 0n);
    await damage(log, BigInt(count - 1));
    expect(() => log.read(0n, 1, 1n)).toThrow(StorageCorruptionError); // evicted: read from disk
    expect(log.read(BigInt(count - 1), 1, log.logEndOffset).batches).toHaveLength(1); // cached

    // Truncation forgets the cached batches it removes; the new batch at the same offset is read.
    await log.truncateTo(BigInt(count - 1));
    await log.appendAsLeader(batchOf(1, "new"), 0);
    expect(values(log.read(BigInt(count - 1), 1 << 20, log.logEndOffset).batches)).toEqual([`${count - 1}:new-0`]);

    // A follower's appends are not cached (a follower serves no reads).
    const follower = store.openPartition("tid", "orders", 1, keepForever);
    const source = store.openPartition("tid", "orders", 2, keepForever);
    await threeBatches(source);
    await follower.appendStored(source.read(0n, 1 << 20, source.logEndOffset).batches);
    await damage(follower, 5n);
    expect(() => follower.read(5n, 1 << 20, follower.logEndOffset)).toThrow(StorageCorruptionError);
  });
});
