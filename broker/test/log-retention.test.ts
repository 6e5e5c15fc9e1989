import { afterEach, describe, expect, test } from "vitest";
import { decodeStoredHeader, LogStore, maxRetentionDeletesPerTxn, type LogConfig } from "../src/log/index.js";
import { batchOf, tempDir } from "./log-helpers.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function openStore(label: string): { store: LogStore; reopen: () => Promise<LogStore> } {
  const { dir, cleanup } = tempDir(label);
  let store = LogStore.open({ dir });
  cleanups.push(cleanup);
  cleanups.push(() => store.close());
  return {
    store,
    reopen: async () => {
      await store.close();
      store = LogStore.open({ dir });
      return store;
    },
  };
}

const config = (retentionMs: number, retentionBytes: number): LogConfig => ({ retentionMs, retentionBytes, maxMessageBytes: 1 << 20 });

describe("retention", () => {
  test("by time: batches whose max timestamp is older than retention.ms go, from the front", async () => {
    const { store, reopen } = openStore("ret-ms");
    const log = store.openPartition("tid", "events", 0, config(1_000, -1));
    await log.appendAsLeader(batchOf(2, "old", 1_000), 0); // 0-1, max 1001
    await log.appendAsLeader(batchOf(2, "old", 2_000), 0); // 2-3, max 2001
    await log.appendAsLeader(batchOf(2, "new", 9_000), 0); // 4-5, max 9001
    await log.appendAsLeader(batchOf(2, "old", 500), 0); // 6-7, max 501: old but behind a young batch
    log.setHighWatermark(8n);
    const sizeBefore = log.sizeBytes;
    expect(await log.applyRetention(3_001)).toEqual({ deletedBatches: 1, newLogStartOffset: 2n });
    expect(await log.applyRetention(3_002)).toEqual({ deletedBatches: 1, newLogStartOffset: 4n });
    expect(log.sizeBytes).toBeLessThan(sizeBefore);
    expect(log.read(4n, 1 << 20, 8n).batches).toHaveLength(2);
    expect(() => log.read(3n, 1 << 20, 8n)).toThrow(/out of range \[4, 8\]/);
    const size = log.sizeBytes;
    const again = (await reopen()).openPartition("tid", "events", 0, config(1_000, -1));
    expect([again.logStartOffset, again.logEndOffset, again.sizeBytes]).toEqual([4n, 8n, size]);
  });

  test("-1 keeps everything", async () => {
    const { store } = openStore("ret-forever");
    const log = store.openPartition("tid", "events", 0, config(-1, -1));
    await log.appendAsLeader(batchOf(2, "old", 1), 0);
    log.setHighWatermark(2n);
    expect(await log.applyRetention(Number.MAX_SAFE_INTEGER)).toEqual({ deletedBatches: 0, newLogStartOffset: 0n });
    log.setConfig(config(-1, 1));
    expect(await log.applyRetention(0)).toEqual({ deletedBatches: 1, newLogStartOffset: 2n });
  });

  test("by size: oldest batches go while the log holds more than retention.bytes", async () => {
    const { store } = openStore("ret-bytes");
    const log = store.openPartition("tid", "events", 0, config(-1, -1));
    for (let i = 0; i < 10; i++) await log.appendAsLeader(batchOf(1, `v${i}`), 0);
    log.setHighWatermark(10n);
    // Stored bytes per batch: the wire bytes read() returns plus the 4-byte checksum.
    const sizes = log.read(0n, 1 << 20, 10n).batches.map((b) => b.length + 4);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(log.sizeBytes);
    const lastFour = sizes.slice(6).reduce((a, b) => a + b, 0);
    log.setConfig(config(-1, lastFour + 1));
    expect(await log.applyRetention(0)).toEqual({ deletedBatches: 6, newLogStartOffset: 6n });
    expect(log.sizeBytes).toBe(lastFour);
    log.setConfig(config(-1, lastFour));
    expect((await log.applyRetention(0)).deletedBatches).toBe(0);
    log.setConfig(config(-1, lastFour - 1));
    expect(await log.applyRetention(0)).toEqual({ deletedBatches: 1, newLogStartOffset: 7n });
  });

  test("never deletes a batch that reaches the high watermark", async () => {
    const { store } = openStore("ret-hw");
    const log = store.openPartition("tid", "events", 0, config(1, 1));
    await log.appendAsLeader(batchOf(2, "a", 1), 0); // 0-1
    await log.appendAsLeader(batchOf(2, "b", 1), 0); // 2-3
    await log.appendAsLeader(batchOf(2, "c", 1), 0); // 4-5
    log.setHighWatermark(3n);
    expect(await log.applyRetention(1_000_000)).toEqual({ deletedBatches: 1, newLogStartOffset: 2n });
    log.setHighWatermark(6n);
    expect(await log.applyRetention(1_000_000)).toEqual({ deletedBatches: 2, newLogStartOffset: 6n });
    expect([log.logStartOffset, log.logEndOffset, log.sizeBytes]).toEqual([6n, 6n, 0]);
    expect((await log.appendAsLeader(batchOf(1, "d"), 0)).baseOffset).toBe(6n);
  });

  test("deletes in bounded transactions while appends continue, and keeps the epoch cache bounded", async () => {
    const { store, reopen } = openStore("ret-many");
    const log = store.openPartition("tid", "events", 0, config(10, -1));
    const total = maxRetentionDeletesPerTxn * 2 + 17;
    const appends = [];
    for (let i = 0; i < total; i++) appends.push(log.appendAsLeader(batchOf(1, `v${i}`, 1), i < 100 ? 1 : 2));
    await Promise.all(appends);
    log.setHighWatermark(BigInt(total));
    const retention = log.applyRetention(1_000);
    const during = log.appendAsLeader(batchOf(1, "during", 5_000), 3);
    expect(await retention).toEqual({ deletedBatches: total, newLogStartOffset: BigInt(total) });
    expect((await during).baseOffset).toBe(BigInt(total));
    // Epochs 1 and 2 have no batches left; the cache keeps only what covers the log.
    expect(log.epochEntries()).toEqual([{ epoch: 3, startOffset: BigInt(total) }]);
    const read = log.read(BigInt(total), 1 << 20, BigInt(total + 1));
    expect(read.batches.map((b) => decodeStoredHeader(b).baseOffset)).toEqual([BigInt(total)]);
    const size = log.sizeBytes;
    const again = (await reopen()).openPartition("tid", "events", 0, config(10, -1));
    expect([again.logStartOffset, again.logEndOffset, again.sizeBytes]).toEqual([BigInt(total), BigInt(total + 1), size]);
    expect(again.latestEpoch()).toBe(3);
  });
});
