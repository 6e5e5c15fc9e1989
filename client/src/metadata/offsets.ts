// Offset lookups (ListOffsets at each partition's leader), shared by the admin client and the consumer's
// seek: the log start offset, the high watermark, or the first offset at or after a timestamp.
import { ErrorCode, OffsetSpec } from "@runnel/proto";
import { errorFromCode, needsMetadataRefresh } from "../errors/index.js";
import type { ChannelPool } from "../network/index.js";
import { withRetry, type RetryPolicy } from "../retry/index.js";
import type { ClusterMetadata } from "./index.js";

export type OffsetQuery = "earliest" | "latest" | { timestamp: number };

export interface PartitionOffset {
  partition: number;
  offset: bigint;
  /** Timestamp of the record at `offset` for a timestamp query, else -1n. */
  timestamp: bigint;
  leaderEpoch: number;
}

/** Looks up `query` for `partitions` of `topic` (all partitions when omitted), retrying leader changes. */
export async function listOffsets(
  pool: ChannelPool,
  metadata: ClusterMetadata,
  policy: RetryPolicy,
  topic: string,
  query: OffsetQuery,
  partitions?: readonly number[],
): Promise<PartitionOffset[]> {
  const info = await metadata.ensureTopic(topic);
  const wanted = partitions ?? info.partitions.map((p) => p.partition);
  const results = new Map<number, PartitionOffset>();
  const spec = query === "earliest" ? OffsetSpec.OFFSET_SPEC_EARLIEST : query === "latest" ? OffsetSpec.OFFSET_SPEC_LATEST : OffsetSpec.OFFSET_SPEC_TIMESTAMP;
  const timestamp = typeof query === "object" ? BigInt(Math.trunc(query.timestamp)) : -1n;
  await withRetry(policy, async () => {
    const byLeader = new Map<string, number[]>();
    for (const p of wanted) {
      if (results.has(p)) continue;
      const leader = metadata.leaderFor(topic, p);
      byLeader.set(leader.address, [...(byLeader.get(leader.address) ?? []), p]);
    }
    let firstError: unknown;
    await Promise.all([...byLeader].map(async ([address, ps]) => {
      try {
        const res = await pool.broker(address, "listOffsets", {
          topics: [{ topic, partitions: ps.map((partition) => ({ partition, spec, timestamp })) }],
        });
        for (const r of res.topics.find((t) => t.topic === topic)?.partitions ?? []) {
          if (r.errorCode !== ErrorCode.ERROR_CODE_NONE) {
            firstError ??= errorFromCode(r.errorCode, { topic, partition: r.partition, address, detail: r.errorMessage, leaderHint: r.currentLeader });
            continue;
          }
          results.set(r.partition, { partition: r.partition, offset: r.offset, timestamp: r.timestamp, leaderEpoch: r.leaderEpoch });
        }
      } catch (err) {
        firstError ??= err;
      }
    }));
    if (firstError !== undefined) throw firstError;
  }, { beforeRetry: async (err) => { if (needsMetadataRefresh(err)) await metadata.refresh([topic]).catch(() => undefined); } });
  return wanted.map((p) => results.get(p)!).sort((a, b) => a.partition - b.partition);
}
