// Partition log throughput against raw lmdb-js, in one run on one machine: appends then reads back
// the same stored values through PartitionLog (appendAsLeader + read) and through plain lmdb-js
// puts and a getRange scan. Both sides write the same bytes per value, keep the same number of
// writes in flight and end with an fsync (store.flush() / db.flushed), so the ratio is the cost of
// the log layer itself (encoding, checksums, bookkeeping, header checks on read).
//
// Rounds alternate which side goes first (page cache and disk state favour neither) and the
// medians are reported, because a shared 2-core machine is noisy.
//
//   node broker/dist/bench/log-bench.js [--bytes 1GiB] [--batch-bytes 16320] [--read-max-bytes 1MiB]
//                                       [--in-flight 512] [--rounds 3] [--dir DIR] [--no-sync]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { open } from "lmdb";
import { buildBatch, type RecordBatch } from "@runnel/proto";
import { encodeStoredBatch, offsetKey } from "../log/codec.js";
import { LogStore } from "../log/index.js";

/** Distinct batches cycled through, so building them stays out of the measurement. */
const batchPoolSize = 64;
/** Records per batch: the batch is split so the broker's per-batch work is realistic. */
const recordsPerBatch = 16;

function parseBytes(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(text.trim());
  if (m === null) throw new Error(`cannot parse byte size "${text}" (examples: 1GiB, 256MiB, 16320)`);
  const unit = (m[2] ?? "b").toLowerCase()[0];
  const scale = unit === "k" ? 1024 : unit === "m" ? 1024 ** 2 : unit === "g" ? 1024 ** 3 : 1;
  return Math.round(Number(m[1]) * scale);
}

const { values: args } = parseArgs({
  options: {
    bytes: { type: "string", default: "1GiB" },
    "batch-bytes": { type: "string", default: "16320" },
    "read-max-bytes": { type: "string", default: "1MiB" },
    "in-flight": { type: "string", default: "512" },
    dir: { type: "string" },
    rounds: { type: "string", default: "3" },
    "no-sync": { type: "boolean", default: false },
  },
});

const totalBytes = parseBytes(args.bytes);
// 16320 stored bytes + LMDB's 24-byte node header fit exactly 4 overflow pages (STACK-NOTES).
const storedBatchBytes = parseBytes(args["batch-bytes"]);
const readMaxBytes = parseBytes(args["read-max-bytes"]);
const inFlight = Number(args["in-flight"]);
const noSync = args["no-sync"];
const rounds = Math.max(1, Number(args.rounds));

/** Builds a batch whose stored value (checksum + encoded RecordBatch) is `storedBytes` long. */
function batchWithStoredSize(seed: number, storedBytes: number): RecordBatch {
  const sizes = Array.from({ length: recordsPerBatch }, () => Math.max(1, Math.floor((storedBytes - 300) / recordsPerBatch)));
  let batch = build(seed, sizes);
  for (let attempt = 0; attempt < 16; attempt++) {
    const diff = storedBytes - storedSize(batch);
    if (diff === 0) break;
    sizes[recordsPerBatch - 1] = Math.max(1, sizes[recordsPerBatch - 1]! + diff);
    batch = build(seed, sizes);
  }
  return batch;
}

function build(seed: number, valueSizes: number[]): RecordBatch {
  const records = valueSizes.map((size, i) => {
    const value = new Uint8Array(size);
    for (let j = 0; j < value.length; j += 61) value[j] = (seed * 31 + i * 7 + j) & 0xff;
    return { key: new TextEncoder().encode(`key-${seed}-${i}`), value, timestamp: 1_700_000_000_000 + i };
  });
  return buildBatch(records, { nowMs: 1_700_000_000_000 });
}

/** Stored size with a base offset as long as the benchmark's largest (the header grows with it). */
function storedSize(batch: RecordBatch): number {
  return encodeStoredBatch({ ...batch.header!, baseOffset: 1n << 30n, leaderEpoch: 1 }, batch.records).length;
}

function mibPerSec(bytes: number, ms: number): number {
  return bytes / (1024 * 1024) / (ms / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

interface Round {
  rawWrite: number;
  logWrite: number;
  rawRead: number;
  logRead: number;
}

async function runRound(dir: string, pool: RecordBatch[], rawValues: Uint8Array[], batchCount: number, logFirst: boolean): Promise<Round> {
  const rawEnv = open({ path: join(dir, "raw"), maxDbs: 4, ...(noSync ? { noSync: true } : {}) });
  const rawDb = rawEnv.openDB<Uint8Array, Buffer>({ name: "raw", encoding: "binary", keyEncoding: "binary" });
  const store = LogStore.open({ dir: join(dir, "log"), ...(noSync ? { noSync: true } : {}) });
  const log = store.openPartition("bench-topic", "bench", 0, { retentionMs: -1, retentionBytes: -1, maxMessageBytes: 1 << 24 });

  // Both sides: the same keys and value bytes, `inFlight` writes issued before waiting, fsync at the end.
  const rawWrite = async (): Promise<number> => {
    let offset = 0n;
    let bytes = 0;
    const t0 = performance.now();
    let last: Promise<boolean> | undefined;
    for (let i = 0; i < batchCount; i++) {
      const value = rawValues[i % batchPoolSize]!;
      last = rawDb.put(offsetKey(offset), value);
      bytes += value.length;
      offset += BigInt(recordsPerBatch);
      if (i % inFlight === inFlight - 1) await last;
    }
    await last;
    await rawDb.flushed;
    return mibPerSec(bytes, performance.now() - t0);
  };
  const logWrite = async (): Promise<number> => {
    const t0 = performance.now();
    let last: Promise<unknown> | undefined;
    for (let i = 0; i < batchCount; i++) {
      last = log.appendAsLeader(pool[i % batchPoolSize]!, 1);
      if (i % inFlight === inFlight - 1) await last;
    }
    await last;
    await store.flush();
    const ms = performance.now() - t0;
    if (log.flushedOffset !== log.logEndOffset) throw new Error(`flush left ${log.flushedOffset} < ${log.logEndOffset}`);
    return mibPerSec(log.sizeBytes, ms);
  };
  const rawRead = (): number => {
    const t0 = performance.now();
    let bytes = 0;
    let entries = 0;
    for (const { value } of rawDb.getRange({ start: offsetKey(0n) })) {
      bytes += value.length;
      entries += 1;
    }
    const ms = performance.now() - t0;
    if (entries !== batchCount) throw new Error(`raw scan saw ${entries} of ${batchCount} values`);
    return mibPerSec(bytes, ms);
  };
  const logRead = (): number => {
    const t0 = performance.now();
    let bytes = 0;
    let batches = 0;
    let next = log.logStartOffset;
    const end = log.logEndOffset;
    while (next < end) {
      const r = log.read(next, readMaxBytes, end);
      bytes += r.bytes + r.batches.length * 4; // stored bytes, as the raw side counts them
      batches += r.batches.length;
      next += BigInt(r.batches.length * recordsPerBatch);
    }
    const ms = performance.now() - t0;
    if (batches !== batchCount) throw new Error(`log read saw ${batches} of ${batchCount} batches`);
    return mibPerSec(bytes, ms);
  };

  const round: Round = { rawWrite: 0, logWrite: 0, rawRead: 0, logRead: 0 };
  if (logFirst) {
    round.logWrite = await logWrite();
    round.rawWrite = await rawWrite();
    round.logRead = logRead();
    round.rawRead = rawRead();
  } else {
    round.rawWrite = await rawWrite();
    round.logWrite = await logWrite();
    round.rawRead = rawRead();
    round.logRead = logRead();
  }
  await store.close();
  await rawEnv.close();
  return round;
}

async function main(): Promise<void> {
  const baseDir = args.dir ?? mkdtempSync(join(tmpdir(), "runnel-log-bench-"));
  const pool = Array.from({ length: batchPoolSize }, (_, i) => batchWithStoredSize(i, storedBatchBytes));
  const storedBytes = storedSize(pool[0]!);
  const batchCount = Math.max(1, Math.round(totalBytes / storedBytes));
  // The raw side stores the very bytes the log stores (checksum prefix included).
  const rawValues = pool.map((b) => Uint8Array.from(encodeStoredBatch({ ...b.header!, baseOffset: 1n << 30n, leaderEpoch: 1 }, b.records)));
  console.log(
    `log bench: ${rounds} rounds of ${batchCount} batches x ${storedBytes} stored bytes (${((batchCount * storedBytes) / 1024 ** 2).toFixed(0)} MiB) per side, ` +
      `${recordsPerBatch} records per batch, ${inFlight} writes in flight, reads of ${readMaxBytes} bytes, ${noSync ? "noSync" : "fsync at the end"}`,
  );
  const results: Round[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      const dir = join(baseDir, `round-${r}`);
      const round = await runRound(dir, pool, rawValues, batchCount, r % 2 === 1);
      rmSync(dir, { recursive: true, force: true });
      results.push(round);
      const f = (n: number) => n.toFixed(0).padStart(5);
      console.log(
        `round ${r + 1}: append raw ${f(round.rawWrite)} log ${f(round.logWrite)} MiB/s (${(round.logWrite / round.rawWrite).toFixed(2)})   ` +
          `read raw ${f(round.rawRead)} log ${f(round.logRead)} MiB/s (${(round.logRead / round.rawRead).toFixed(2)})`,
      );
    }
  } finally {
    if (args.dir === undefined) rmSync(baseDir, { recursive: true, force: true });
  }
  const m = (k: keyof Round) => median(results.map((r) => r[k]));
  const writeRatio = median(results.map((r) => r.logWrite / r.rawWrite));
  const readRatio = median(results.map((r) => r.logRead / r.rawRead));
  const fmt = (n: number) => n.toFixed(0).padStart(6);
  console.log(`median  append: raw lmdb puts ${fmt(m("rawWrite"))} MiB/s, PartitionLog.appendAsLeader ${fmt(m("logWrite"))} MiB/s, ratio ${writeRatio.toFixed(2)} (target >= 0.70)`);
  console.log(`median  read:   raw getRange  ${fmt(m("rawRead"))} MiB/s, PartitionLog.read           ${fmt(m("logRead"))} MiB/s, ratio ${readRatio.toFixed(2)} (target >= 0.70)`);
  console.log(
    JSON.stringify({
      rounds,
      batchesPerRound: batchCount,
      storedBatchBytes: storedBytes,
      rawWriteMiBps: Math.round(m("rawWrite")),
      logWriteMiBps: Math.round(m("logWrite")),
      writeRatio: Number(writeRatio.toFixed(3)),
      rawReadMiBps: Math.round(m("rawRead")),
      logReadMiBps: Math.round(m("logRead")),
      readRatio: Number(readRatio.toFixed(3)),
    }),
  );
}

await main();
