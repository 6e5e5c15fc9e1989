// Integration: a leader and a follower in-process (standalone metadata, real LMDB and gRPC) on an fsync
// topic. The flush path waits for as little as it can (the store's background flush, one event-loop
// turn), so this proves the durability order still holds end to end: an acks=all answer means the
// batch is flushed on every ISR member, and the high watermark never runs ahead of a flushed log.
import { rmSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Acks, BrokerServiceClient, buildBatch, ErrorCode, type MetadataEvent } from "@runnel/proto";
import { callUnary, channelOptions } from "@runnel/common";
import type { Broker } from "../src/node.js";
import { startTestBroker } from "./fixtures/test-broker.js";

const enc = new TextEncoder();
const leaderId = 1;
const followerId = 2;

function snapshot(ports: Record<number, number>): MetadataEvent {
  return {
    metadataVersion: 1n,
    event: {
      $case: "snapshot",
      value: {
        clusterId: "test-cluster",
        // Without a controller link a broker fetches with broker epoch 0.
        brokers: [leaderId, followerId].map((id) => ({ brokerId: id, brokerEpoch: 0n, host: "127.0.0.1", port: ports[id]!, rack: "", alive: true, shuttingDown: false })),
        topics: [{
          name: "durable",
          topicId: "t-durable",
          configs: { durability: "fsync", "min.insync.replicas": "2" },
          partitions: [{ topic: "durable", partition: 0, replicas: [leaderId, followerId], isr: [leaderId, followerId], leaderId, leaderEpoch: 1, partitionEpoch: 1 }],
        }],
      },
    },
  };
}

const dirs: string[] = [];
const brokers = new Map<number, Broker>();
let client: BrokerServiceClient;

beforeAll(async () => {
  for (const id of [leaderId, followerId]) {
    const { broker, dir } = await startTestBroker(id, `runnel-replica-flush-${id}-`, 60_000);
    dirs.push(dir);
    brokers.set(id, broker);
  }
  const ports = Object.fromEntries([...brokers].map(([id, b]) => [id, b.grpcPort]));
  for (const b of brokers.values()) {
    expect(b.applyMetadata(snapshot(ports))).toBe(true);
    await b.replicas.settled();
  }
  client = new BrokerServiceClient(`127.0.0.1:${ports[leaderId]}`, grpc.credentials.createInsecure(), channelOptions);
});

afterAll(async () => {
  client?.close();
  for (const b of brokers.values()) await b.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function partitionOn(id: number) {
  const p = brokers.get(id)!.replicas.partition("durable", 0);
  expect(p).toBeDefined();
  return p!;
}

describe("fsync durability across a leader and a follower", () => {
  it("acks=all is answered only once the leader and the follower have flushed the batch, and the HW never passes a flushed offset", async () => {
    const leader = partitionOn(leaderId);
    const follower = partitionOn(followerId);
    const violations: string[] = [];
    // The rule checked at every HW move on the leader: HW <= its own flushed offset.
    const watch = setInterval(() => {
      if (leader.log.highWatermark > leader.log.flushedOffset) violations.push(`leader HW ${leader.log.highWatermark} > flushed ${leader.log.flushedOffset}`);
      if (follower.log.highWatermark > follower.log.flushedOffset) violations.push(`follower HW ${follower.log.highWatermark} > flushed ${follower.log.flushedOffset}`);
    }, 1);
    try {
      let end = 0n;
      for (let i = 0; i < 30; i++) {
        const records = Array.from({ length: 1 + (i % 4) }, (_, j) => ({ value: enc.encode(`r${i}-${j}`) }));
        const res = await callUnary(client, client.produce, { acks: Acks.ACKS_ALL, timeoutMs: 10_000, topics: [{ topic: "durable", partitions: [{ partition: 0, batch: buildBatch(records) }] }] }, 20_000);
        const answer = res.topics[0]!.partitions[0]!;
        expect(answer.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
        expect(answer.baseOffset).toBe(end);
        end += BigInt(records.length);
        // At the moment the answer arrives both replicas hold the batch on disk.
        expect(leader.log.flushedOffset).toBeGreaterThanOrEqual(end);
        expect(follower.log.flushedOffset).toBeGreaterThanOrEqual(end);
        expect(leader.log.highWatermark).toBeGreaterThanOrEqual(end);
      }
      // The follower learns the leader's HW from fetch responses, bounded by its own flushed offset.
      await vi.waitFor(() => expect(follower.log.highWatermark).toBe(end), { timeout: 10_000, interval: 20 });
      expect(follower.log.logEndOffset).toBe(end);
    } finally {
      clearInterval(watch);
    }
    expect(violations).toEqual([]);
  });
});
