// Integration: two brokers in-process (standalone metadata), real LMDB, gRPC and HTTP. A scrape of
// /metrics shows what was produced, fetched and replicated, the per-partition offsets and ISR, the
// per-RPC counts and Node's process metrics; /readyz waits until the broker is in every ISR.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Acks, BrokerServiceClient, buildBatch, ErrorCode, type MetadataEvent, type PartitionState, type RecordBatch } from "@runnel/proto";
import { callUnary, channelOptions, createLogger, type MetricSample, metricSample as sample, parseMetricsText as parseMetrics } from "@runnel/common";
import { Broker } from "../src/node.js";

const enc = new TextEncoder();
/** Longest a test waits for replication to settle before failing (a bound, not an assertion on speed). */
const settleTimeoutMs = 20_000;




function partitionState(isr: number[], partitionEpoch: number): PartitionState {
  return { topic: "m", partition: 0, replicas: [1, 2], isr, leaderId: 1, leaderEpoch: 1, partitionEpoch };
}

function snapshot(version: bigint, ports: [number, number], isr: number[], partitionEpoch: number): MetadataEvent {
  return {
    metadataVersion: version,
    event: {
      $case: "snapshot",
      value: {
        clusterId: "metrics-test",
        brokers: ports.map((port, i) => ({ brokerId: i + 1, brokerEpoch: 0n, host: "127.0.0.1", port, rack: "", alive: true, shuttingDown: false })),
        topics: [{ name: "m", topicId: "t-m", configs: {}, partitions: [partitionState(isr, partitionEpoch)] }],
      },
    },
  };
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + settleTimeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let dir: string;
const brokers: Broker[] = [];
let client: BrokerServiceClient;

function broker(id: 1 | 2): Broker {
  return brokers[id - 1]!;
}

async function scrape(b: Broker): Promise<MetricSample[]> {
  const res = await fetch(`http://127.0.0.1:${b.httpPort}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return parseMetrics(await res.text());
}

async function readyz(b: Broker): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${b.httpPort}/readyz`);
  return { status: res.status, body: await res.text() };
}

function produce(batch: RecordBatch | undefined) {
  return callUnary(client, client.produce, { acks: Acks.ACKS_LEADER, timeoutMs: 5_000, topics: [{ topic: "m", partitions: [{ partition: 0, batch }] }] }, 10_000);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "runnel-broker-metrics-"));
  for (const id of [1, 2]) {
    const b = new Broker({
      brokerId: id,
      listen: { host: "127.0.0.1", port: 0 },
      http: { host: "127.0.0.1", port: 0 },
      dataDir: join(dir, `broker-${id}`),
      replicaLagTimeMaxMs: 600_000,
      logger: createLogger({ role: "test", id, level: "silent" }),
      onFatal: (err) => {
        throw err;
      },
    });
    brokers.push(b);
    await b.start();
  }
  client = new BrokerServiceClient(`127.0.0.1:${broker(1).grpcPort}`, grpc.credentials.createInsecure(), channelOptions);
});

afterAll(async () => {
  client?.close();
  for (const b of brokers) await b.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("broker /readyz and /metrics", () => {
  it("is alive at once but not ready before it has metadata", async () => {
    expect((await fetch(`http://127.0.0.1:${broker(2).httpPort}/healthz`)).status).toBe(200);
    const r = await readyz(broker(2));
    expect(r.status).toBe(503);
    expect(r.body).toContain("no metadata");
  });

  it("a follower outside the ISR is not ready; the leader reports the partition under-replicated", async () => {
    const ports: [number, number] = [broker(1).grpcPort, broker(2).grpcPort];
    for (const b of brokers) {
      expect(b.applyMetadata(snapshot(1n, ports, [1], 1))).toBe(true);
      await b.replicas.settled();
    }
    expect((await readyz(broker(1))).status).toBe(200);
    const r = await readyz(broker(2));
    expect(r.status).toBe(503);
    expect(r.body).toContain("not in the ISR of 1 partition(s) yet: m-0");

    const leader = await scrape(broker(1));
    const p = { topic: "m", partition: "0" };
    expect(sample(leader, "runnel_partition_isr_size", p)).toBe(1);
    expect(sample(leader, "runnel_partition_replicas", p)).toBe(2);
    expect(sample(leader, "runnel_partition_under_replicated", p)).toBe(1);
    expect(sample(leader, "runnel_broker_under_replicated_partitions")).toBe(1);
    expect(sample(leader, "runnel_broker_leader_partitions")).toBe(1);
    const follower = await scrape(broker(2));
    expect(sample(follower, "runnel_partition_leader", p)).toBe(0);
    expect(sample(follower, "runnel_partition_under_replicated", p)).toBeUndefined(); // only the leader reports it
    expect(sample(follower, "runnel_broker_out_of_sync_partitions")).toBe(1);
  });

  it("counts produced, fetched and replicated bytes and shows the offsets on both replicas", async () => {
    const batches = [buildBatch([{ value: enc.encode("one") }, { value: enc.encode("two") }]), buildBatch([{ value: enc.encode("three") }])];
    let producedBytes = 0;
    for (const batch of batches) {
      const res = await produce(batch);
      expect(res.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
      producedBytes += batch.records.length;
    }
    // acks=leader answers before the flush that moves the high watermark: fetch once it has moved.
    await waitFor("the leader's high watermark to reach 3", () => broker(1).replicas.partition("m", 0)!.log.highWatermark === 3n);
    const fetched = await callUnary(client, client.fetch, { maxWaitMs: 0, minBytes: 0, maxBytes: 0, topics: [{ topic: "m", partitions: [{ partition: 0, fetchOffset: 0n, partitionMaxBytes: 0 }] }] }, 10_000);
    expect(fetched.topics[0]!.partitions[0]!.batches).toHaveLength(2);
    await waitFor("the follower to replicate both batches", () => broker(2).replicas.partition("m", 0)!.log.logEndOffset === 3n);
    await waitFor("the follower to learn the high watermark", () => broker(2).replicas.partition("m", 0)!.log.highWatermark === 3n);

    const leader = await scrape(broker(1));
    expect(sample(leader, "runnel_broker_produce_bytes_total")).toBe(producedBytes);
    // Fetch counts stored batches (record bytes plus the stored header), so at least what was produced.
    expect(sample(leader, "runnel_broker_fetch_bytes_total")).toBeGreaterThanOrEqual(producedBytes);
    expect(sample(leader, "runnel_broker_replication_bytes_out_total", { follower: "2" })).toBeGreaterThanOrEqual(producedBytes);
    // What the follower appended is exactly what the leader sent it.
    expect(sample(await scrape(broker(2)), "runnel_broker_replication_bytes_in_total", { leader: "1" })).toBe(
      sample(leader, "runnel_broker_replication_bytes_out_total", { follower: "2" }),
    );
    const p = { topic: "m", partition: "0" };
    for (const samples of [leader, await scrape(broker(2))]) {
      expect(sample(samples, "runnel_partition_log_end_offset", p)).toBe(3);
      expect(sample(samples, "runnel_partition_high_watermark", p)).toBe(3);
      expect(sample(samples, "runnel_partition_log_start_offset", p)).toBe(0);
      expect(sample(samples, "runnel_partition_size_bytes", p)).toBeGreaterThanOrEqual(producedBytes);
      expect(sample(samples, "runnel_broker_partitions")).toBe(1);
      expect(sample(samples, "runnel_broker_metadata_version")).toBe(1);
    }
    expect(sample(leader, "runnel_partition_leader", p)).toBe(1);
    expect(sample(leader, "runnel_partition_leader_epoch", p)).toBe(1);
  });

  it("once the controller's ISR includes the follower, it is ready and nothing is under-replicated", async () => {
    const ports: [number, number] = [broker(1).grpcPort, broker(2).grpcPort];
    for (const b of brokers) {
      expect(b.applyMetadata(snapshot(2n, ports, [1, 2], 2))).toBe(true);
      await b.replicas.settled();
    }
    expect(await readyz(broker(2))).toEqual({ status: 200, body: "ready\n" });
    const leader = await scrape(broker(1));
    expect(sample(leader, "runnel_partition_isr_size", { topic: "m", partition: "0" })).toBe(2);
    expect(sample(leader, "runnel_partition_under_replicated", { topic: "m", partition: "0" })).toBe(0);
    expect(sample(leader, "runnel_broker_under_replicated_partitions")).toBe(0);
    expect(sample(await scrape(broker(2)), "runnel_broker_out_of_sync_partitions")).toBe(0);
  });

  it("counts requests and latency per RPC method and status code", async () => {
    const before = await scrape(broker(1));
    const produceOk = { method: "runnel.v1.BrokerService/Produce", code: "OK" };
    const okBefore = sample(before, "runnel_rpc_requests_total", produceOk) ?? 0;
    const badBefore = sample(before, "runnel_rpc_requests_total", { method: "runnel.v1.BrokerService/Produce", code: "INVALID_ARGUMENT" }) ?? 0;
    await produce(buildBatch([{ value: enc.encode("four") }]));
    const bad = await callUnary(client, client.produce, { acks: 99 as Acks, timeoutMs: 0, topics: [] }, 10_000).catch((err: grpc.ServiceError) => err);
    expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);

    const after = await scrape(broker(1));
    expect(sample(after, "runnel_rpc_requests_total", produceOk)).toBe(okBefore + 1);
    expect(sample(after, "runnel_rpc_requests_total", { method: "runnel.v1.BrokerService/Produce", code: "INVALID_ARGUMENT" })).toBe(badBefore + 1);
    expect(sample(after, "runnel_rpc_duration_seconds_count", produceOk)).toBe(okBefore + 1);
    expect(sample(after, "runnel_rpc_duration_seconds_bucket", { ...produceOk, le: "+Inf" })).toBe(okBefore + 1);
    expect(sample(after, "runnel_rpc_duration_seconds_sum", produceOk)).toBeGreaterThan(0);
    // The follower's replica fetches are counted on the leader too.
    expect(sample(after, "runnel_rpc_requests_total", { method: "runnel.v1.ReplicationService/ReplicaFetch", code: "OK" })).toBeGreaterThan(0);
  });

  it("exposes process memory and event-loop delay, and each broker has its own registry", async () => {
    const samples = await scrape(broker(1));
    expect(sample(samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(sample(samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
    expect(sample(samples, "nodejs_eventloop_lag_p99_seconds")).toBeGreaterThanOrEqual(0);
    // Broker 2 produced nothing: its counter is its own, not broker 1's.
    expect(sample(await scrape(broker(2)), "runnel_broker_produce_bytes_total")).toBe(0);
  });
});
