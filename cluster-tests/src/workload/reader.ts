// Reads a whole partition back from its leader (below the high watermark), for checkers.
import { decodeBatch, ErrorCode } from "@runnel/proto";
import type { Cluster } from "../harness/index.js";
import { callUnary } from "../harness/rpc.js";

export interface ReadRecord {
  offset: bigint;
  value: string;
}

/** Every committed record of topic/partition, from the log start to the high watermark. */
export async function readPartition(cluster: Cluster, topic: string, partition: number, timeoutMs = 20_000): Promise<ReadRecord[]> {
  const deadline = Date.now() + timeoutMs;
  const out: ReadRecord[] = [];
  let offset = 0n;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`reading ${topic}-${partition} did not finish within ${timeoutMs} ms (at offset ${offset})`);
    const leader = await cluster.waitForLeader(topic, partition);
    const client = cluster.brokerClient(leader.leaderId);
    let res;
    try {
      res = await callUnary(client, client.fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 4 * 1024 * 1024, topics: [{ topic, partitions: [{ partition, fetchOffset: offset, partitionMaxBytes: 0 }] }] }, 5_000);
    } catch {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const p = res.topics[0]!.partitions[0]!;
    if (p.errorCode === ErrorCode.OFFSET_OUT_OF_RANGE && offset < p.logStartOffset) {
      offset = p.logStartOffset;
      continue;
    }
    if (p.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    for (const b of p.batches) {
      for (const r of decodeBatch(b)) {
        if (r.offset < offset) continue;
        out.push({ offset: r.offset, value: Buffer.from(r.value ?? new Uint8Array()).toString() });
        offset = r.offset + 1n;
      }
    }
    if (offset >= p.highWatermark) return out;
  }
}
