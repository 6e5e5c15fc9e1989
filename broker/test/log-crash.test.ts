import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, expect, test } from "vitest";
import { checksum, decodeBatch, RecordBatch } from "@runnel/proto";
import { LogStore } from "../src/log/index.js";
import { crashBatchRecords } from "./fixtures/log-crash-pattern.js";
import { tempDir, text } from "./log-helpers.js";

const childScript = fileURLToPath(new URL("./fixtures/log-crash-child.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

interface Reported {
  index: number;
  baseOffset: bigint;
  count: number;
}

/** Runs the child until it has reported `batches` durable batches, then SIGKILLs it. */
async function runAndKill(dir: string, batches: number): Promise<Reported[]> {
  const child = spawn(process.execPath, ["--import", "tsx", childScript, dir], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  const pid = child.pid;
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on("exit", (code, signal) => resolve(signal ?? code)));
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null && pid !== undefined) child.kill("SIGKILL");
  });
  const reported: Reported[] = [];
  for await (const line of createInterface({ input: child.stdout })) {
    const [kind, a, b, c] = line.split(" ");
    if (kind === "durable") reported.push({ index: Number(a), baseOffset: BigInt(b!), count: Number(c) });
    if (reported.length >= batches) {
      // Killed while the next group is being appended and flushed: mid-write, by construction.
      child.kill("SIGKILL");
      break;
    }
  }
  const how = await exited;
  if (how !== "SIGKILL") throw new Error(`child ended with ${String(how)} before it was killed: ${stderr}`);
  return reported;
}

function checkLog(dir: string, reported: Reported[]): Promise<bigint> {
  const store = LogStore.open({ dir });
  const log = store.openPartition("crash-topic-id", "crash", 0, { retentionMs: -1, retentionBytes: -1, maxMessageBytes: 1 << 20 });
  // Read everything: read() verifies each batch's storage checksum; decodeBatch checks the records CRC.
  let next = 0n;
  let index = 0;
  while (next < log.logEndOffset) {
    const { batches } = log.read(next, 1 << 20, log.logEndOffset);
    expect(batches.length).toBeGreaterThan(0);
    for (const wire of batches) {
      const batch = RecordBatch.decode(wire);
      expect(checksum(batch.records)).toBe(batch.header!.crc);
      const records = decodeBatch(batch);
      expect(records[0]!.offset).toBe(next); // contiguous, nothing missing, nothing partial
      expect(records.map((r) => text(r.value))).toEqual(crashBatchRecords(index));
      next += BigInt(records.length);
      index += 1;
    }
  }
  expect(next).toBe(log.logEndOffset);
  const last = reported.at(-1)!;
  expect(log.logEndOffset).toBeGreaterThanOrEqual(last.baseOffset + BigInt(last.count));
  for (const r of reported) {
    const [wire] = log.read(r.baseOffset, 1, log.logEndOffset).batches;
    expect(decodeBatch(RecordBatch.decode(wire!)).map((x) => text(x.value))).toEqual(crashBatchRecords(r.index));
  }
  const end = log.logEndOffset;
  return store.close().then(() => end);
}

test("every batch reported durable survives SIGKILL, intact and contiguous, twice in a row", async () => {
  const { dir, cleanup } = tempDir("crash");
  cleanups.push(cleanup);
  const first = await runAndKill(dir, 240);
  expect(first[0]).toEqual({ index: 0, baseOffset: 0n, count: 1 });
  const endAfterFirst = await checkLog(dir, first);
  // The second run recovers the log, continues it, and is killed again.
  const second = await runAndKill(dir, 160);
  expect(second[0]!.baseOffset).toBe(endAfterFirst);
  await checkLog(dir, [...first, ...second]);
}, 120_000);
