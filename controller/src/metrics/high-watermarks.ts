// Reads partition high watermarks from their leaders (ListOffsets LATEST), for the group lag metric:
// only brokers know high watermarks, so the controller asks at scrape time, one request per leader,
// each with a deadline, and a partition whose leader does not answer in time has no lag sample.
import * as grpc from "@grpc/grpc-js";
import { BrokerServiceClient, ErrorCode, OffsetSpec } from "@runnel/proto";
import { callUnary, channelOptions } from "@runnel/common";
import { noLeader, type ClusterState } from "../metadata/index.js";

/** Deadline of each ListOffsets call made for one scrape. */
export const highWatermarkReadTimeoutMs = 1_000;
/** Partitions one scrape asks about at most (bounds the work a scrape can cause). */
export const maxLagPartitionsPerScrape = 10_000;

export interface TopicPartitionRef {
  topic: string;
  partition: number;
}

export function hwKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export class HighWatermarkReader {
  private readonly clients = new Map<string, BrokerServiceClient>();

  /** High watermarks of the given partitions, keyed by hwKey; partitions without an answer are absent. */
  async read(state: ClusterState, partitions: readonly TopicPartitionRef[]): Promise<Map<string, bigint>> {
    const byLeader = new Map<number, Map<string, number[]>>();
    for (const { topic, partition } of partitions.slice(0, maxLagPartitionsPerScrape)) {
      const leader = state.topics.get(topic)?.partitions[partition]?.leader;
      if (leader === undefined || leader === noLeader) continue;
      const topics = byLeader.get(leader) ?? new Map<string, number[]>();
      topics.set(topic, [...(topics.get(topic) ?? []), partition]);
      byLeader.set(leader, topics);
    }
    const out = new Map<string, bigint>();
    await Promise.all(
      [...byLeader].map(async ([leader, topics]) => {
        const broker = state.brokers.get(leader);
        if (broker === undefined || !broker.alive) return;
        const client = this.client(`${broker.host}:${broker.port}`);
        try {
          const res = await callUnary(
            client,
            client.listOffsets,
            { topics: [...topics].map(([topic, ps]) => ({ topic, partitions: ps.map((partition) => ({ partition, spec: OffsetSpec.OFFSET_SPEC_LATEST, timestamp: 0n })) })) },
            highWatermarkReadTimeoutMs,
          );
          for (const t of res.topics) for (const p of t.partitions) if (p.errorCode === ErrorCode.ERROR_CODE_NONE) out.set(hwKey(t.topic, p.partition), p.offset);
        } catch {
          // A leader that does not answer within the deadline leaves its partitions without a sample.
        }
      }),
    );
    return out;
  }

  private client(address: string): BrokerServiceClient {
    let c = this.clients.get(address);
    if (c === undefined) {
      c = new BrokerServiceClient(address, grpc.credentials.createInsecure(), channelOptions);
      this.clients.set(address, c);
    }
    return c;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
