// The replica-consistency check: with the brokers stopped, open every broker's log store directly and
// compare each partition's batches below the high watermark byte for byte across replicas. It reads
// what is on disk, independently of any broker code path that served the workload.
import { join } from "node:path";
import { LogStore } from "@runnel/broker";
import { RecordBatch } from "@runnel/proto";

export interface ReplicaDivergence {
  topic: string;
  partition: number;
  brokers: [number, number];
  offset: bigint;
  detail: string;
}

export interface ReplicaReport {
  /** Partitions compared (present on at least two brokers). */
  partitionsChecked: number;
  /** Batches compared across all replica pairs. */
  batchesCompared: number;
  divergences: ReplicaDivergence[];
  /** Per partition, the common high watermark compared up to. */
  checkedUpTo: Map<string, bigint>;
}

const readChunkBytes = 8 * 1024 * 1024;

/** Reads every batch of a partition below `upTo` (encoded RecordBatch bytes, in offset order). */
function readAll(store: LogStore, topicId: string, topicName: string, partition: number, upTo: bigint): Array<{ bytes: Buffer }> {
  const log = store.openPartition(topicId, topicName, partition, { retentionMs: -1, retentionBytes: -1, maxMessageBytes: 1 << 30 });
  const out: Array<{ bytes: Buffer }> = [];
  let next = log.logStartOffset;
  while (next < upTo) {
    const read = log.read(next, readChunkBytes, upTo);
    if (read.batches.length === 0) break;
    for (const b of read.batches) out.push({ bytes: Buffer.from(b) });
    // Batch base offsets come from the stored headers; advance past the last one read.
    const last = read.batches[read.batches.length - 1]!;
    next = lastOffsetOf(last) + 1n;
  }
  return out;
}

function lastOffsetOf(batch: Uint8Array): bigint {
  const h = RecordBatch.decode(batch).header!;
  return h.baseOffset + BigInt(h.recordCount - 1);
}

/**
 * Compares replicas of every partition found in the given brokers' data directories. Only offsets below
 * the smallest high watermark among the replicas (and at or above the largest log start) are compared:
 * those are committed on every replica that is in sync.
 */
export async function checkReplicas(brokerDataDirs: ReadonlyMap<number, string>): Promise<ReplicaReport> {
  const stores = new Map<number, LogStore>();
  for (const [id, dir] of brokerDataDirs) stores.set(id, LogStore.open({ dir: join(dir, "log") }));
  const report: ReplicaReport = { partitionsChecked: 0, batchesCompared: 0, divergences: [], checkedUpTo: new Map() };
  try {
    const holders = new Map<string, Array<{ broker: number; topicId: string; topicName: string; partition: number }>>();
    for (const [id, store] of stores) {
      for (const p of store.listStoredPartitions()) {
        const key = `${p.topicId}/${p.partition}`;
        const list = holders.get(key) ?? [];
        list.push({ broker: id, ...p });
        holders.set(key, list);
      }
    }
    for (const replicas of holders.values()) {
      if (replicas.length < 2) continue;
      const first = replicas[0]!;
      let upTo: bigint | undefined;
      for (const r of replicas) {
        const log = stores.get(r.broker)!.openPartition(r.topicId, r.topicName, r.partition, { retentionMs: -1, retentionBytes: -1, maxMessageBytes: 1 << 30 });
        upTo = upTo === undefined || log.highWatermark < upTo ? log.highWatermark : upTo;
      }
      report.partitionsChecked++;
      report.checkedUpTo.set(`${first.topicName}-${first.partition}`, upTo ?? 0n);
      const reads = replicas.map((r) => ({ broker: r.broker, batches: readAll(stores.get(r.broker)!, r.topicId, r.topicName, r.partition, upTo ?? 0n) }));
      const reference = reads[0]!;
      for (const other of reads.slice(1)) {
        const byOffset = new Map(other.batches.map((b) => [lastOffsetOf(b.bytes), b.bytes]));
        for (const b of reference.batches) {
          const last = lastOffsetOf(b.bytes);
          const theirs = byOffset.get(last);
          // Retention may have removed the oldest batches on one replica but not another.
          if (theirs === undefined) {
            const minOther = other.batches[0] === undefined ? undefined : lastOffsetOf(other.batches[0].bytes);
            if (minOther !== undefined && last < minOther) continue;
            report.divergences.push({ topic: first.topicName, partition: first.partition, brokers: [reference.broker, other.broker], offset: last, detail: `batch ending at ${last} missing on broker ${other.broker}` });
            continue;
          }
          report.batchesCompared++;
          if (!theirs.equals(b.bytes)) {
            report.divergences.push({ topic: first.topicName, partition: first.partition, brokers: [reference.broker, other.broker], offset: last, detail: `batch ending at ${last} differs` });
          }
        }
      }
    }
  } finally {
    for (const s of stores.values()) await s.close();
  }
  return report;
}
