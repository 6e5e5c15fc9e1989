// Shared helpers for the partition log tests: temp directories and batch builders.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBatch, type RecordBatch } from "@runnel/proto";
import type { LogConfig } from "../src/log/index.js";

export const keepForever: LogConfig = { retentionMs: -1, retentionBytes: -1, maxMessageBytes: 1024 * 1024 };

export function tempDir(label: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `runnel-${label}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A batch of `count` records with values "<tag>-<i>" and timestamps starting at `timestampMs`. */
export function batchOf(count: number, tag: string, timestampMs = 1_000, stepMs = 1): RecordBatch {
  const records = Array.from({ length: count }, (_, i) => ({
    key: new TextEncoder().encode(`k${i}`),
    value: new TextEncoder().encode(`${tag}-${i}`),
    timestamp: timestampMs + i * stepMs,
  }));
  return buildBatch(records, { nowMs: timestampMs });
}

export function text(bytes: Uint8Array | undefined): string {
  return bytes === undefined ? "<null>" : new TextDecoder().decode(bytes);
}
