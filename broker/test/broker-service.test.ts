// Integration: one broker in-process (standalone metadata), real LMDB and real gRPC. Produce, fetch,
// list offsets and metadata, and every kind of bad input answered with a typed error while the stored
// data stays intact.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Acks,
  BrokerServiceClient,
  buildBatch,
  decodeBatch,
  ErrorCode,
  type FetchResponse,
  type MetadataEvent,
  OffsetSpec,
  type RecordBatch,
} from "@runnel/proto";
import { callUnary, channelOptions } from "@runnel/common";
import type { Broker } from "../src/node.js";
import { type StandaloneBroker, startStandaloneBroker } from "./fixtures/test-broker.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

function snapshot(port: number): MetadataEvent {
  const partition = (topic: string, p: number) => ({ topic, partition: p, replicas: [1], isr: [1], leaderId: 1, leaderEpoch: 1, partitionEpoch: 1 });
  return {
    metadataVersion: 1n,
    event: {
      $case: "snapshot",
      value: {
        clusterId: "test-cluster",
        brokers: [{ brokerId: 1, brokerEpoch: 1n, host: "127.0.0.1", port, rack: "", alive: true, shuttingDown: false }],
        topics: [
          { name: "events", topicId: "t-events", configs: {}, partitions: [partition("events", 0), partition("events", 1)] },
          { name: "small", topicId: "t-small", configs: { "max.message.bytes": "1024" }, partitions: [partition("small", 0)] },
        ],
      },
    },
  };
}


let broker: Broker;
let client: BrokerServiceClient;

function produce(topic: string, partition: number, batch: RecordBatch | undefined, acks = Acks.ACKS_ALL) {
  return callUnary(client, client.produce, { acks, timeoutMs: 5_000, topics: [{ topic, partitions: [{ partition, batch }] }] }, 10_000);
}

function fetch(topic: string, partition: number, fetchOffset: bigint, extra: Partial<{ maxWaitMs: number; minBytes: number; maxBytes: number }> = {}): Promise<FetchResponse> {
  return callUnary(
    client,
    client.fetch,
    { maxWaitMs: extra.maxWaitMs ?? 0, minBytes: extra.minBytes ?? 0, maxBytes: extra.maxBytes ?? 0, topics: [{ topic, partitions: [{ partition, fetchOffset, partitionMaxBytes: 0 }] }] },
    10_000,
  );
}

function values(res: FetchResponse): string[] {
  return res.topics.flatMap((t) => t.partitions.flatMap((p) => p.batches.flatMap((b) => decodeBatch(b).map((r) => dec.decode(r.value)))));
}

let standalone: StandaloneBroker | undefined;

beforeAll(async () => {
  standalone = await startStandaloneBroker("runnel-broker-", snapshot);
  ({ broker, client } = standalone);
});

afterAll(async () => {
  await standalone?.stop();
});

describe("produce and fetch", () => {
  it("assigns consecutive offsets to whole batches and reads them back below the high watermark", async () => {
    const r1 = await produce("events", 0, buildBatch([{ value: enc.encode("a") }, { value: enc.encode("b") }]));
    const r2 = await produce("events", 0, buildBatch([{ value: enc.encode("c") }]));
    expect(r1.topics[0]!.partitions[0]).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, baseOffset: 0n });
    expect(r2.topics[0]!.partitions[0]).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, baseOffset: 2n });
    const res = await fetch("events", 0, 0n);
    const p = res.topics[0]!.partitions[0]!;
    expect(p.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(p.highWatermark).toBe(3n);
    expect(values(res)).toEqual(["a", "b", "c"]);
    expect(p.batches[1]!.header!.leaderEpoch).toBe(1);
  });

  it("a fetch starting inside a batch returns that whole batch", async () => {
    const res = await fetch("events", 0, 1n);
    expect(res.topics[0]!.partitions[0]!.batches[0]!.header!.baseOffset).toBe(0n);
  });

  it("long-polls until data arrives", async () => {
    const waiting = fetch("events", 1, 0n, { maxWaitMs: 10_000, minBytes: 1 });
    await new Promise((r) => setTimeout(r, 100));
    await produce("events", 1, buildBatch([{ value: enc.encode("late") }]));
    expect(values(await waiting)).toEqual(["late"]);
  });

  it("a long poll with nothing to return answers after max wait with no batches", async () => {
    const res = await fetch("events", 1, 1n, { maxWaitMs: 200, minBytes: 1 });
    expect(res.topics[0]!.partitions[0]).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, batches: [] });
  });

  it("acks=1 and acks=0 are answered", async () => {
    const one = await produce("events", 1, buildBatch([{ value: enc.encode("x") }]), Acks.ACKS_LEADER);
    expect(one.topics[0]!.partitions[0]).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, baseOffset: 1n });
    const zero = await produce("events", 1, buildBatch([{ value: enc.encode("y") }]), Acks.ACKS_NONE);
    expect(zero.topics[0]!.partitions[0]).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, baseOffset: -1n });
  });

  it("appends one producer's batches in sequence order even when the requests arrive out of order", async () => {
    const b0 = buildBatch([{ value: enc.encode("s0") }, { value: enc.encode("s1") }], { producerId: 11n, producerEpoch: 0, baseSequence: 0 });
    const b1 = buildBatch([{ value: enc.encode("s2") }], { producerId: 11n, producerEpoch: 0, baseSequence: 2 });
    const b2 = buildBatch([{ value: enc.encode("s3") }], { producerId: 11n, producerEpoch: 0, baseSequence: 3 });
    const later = Promise.all([produce("events", 1, b2), produce("events", 1, b1)] as const);
    await new Promise((r) => setTimeout(r, 100));
    const first = await produce("events", 1, b0);
    const [r2, r1] = await later;
    for (const r of [first, r1, r2]) expect(r.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    const o0 = first.topics[0]!.partitions[0]!.baseOffset;
    expect(r1.topics[0]!.partitions[0]!.baseOffset).toBe(o0 + 2n);
    expect(r2.topics[0]!.partitions[0]!.baseOffset).toBe(o0 + 3n);
    expect(values(await fetch("events", 1, o0))).toEqual(["s0", "s1", "s2", "s3"]);
  });

  it("drops an idempotent producer's retried batch and answers with its original offset", async () => {
    const batch = buildBatch([{ value: enc.encode("once") }], { producerId: 7n, producerEpoch: 0, baseSequence: 0 });
    const first = await produce("events", 1, batch);
    const retry = await produce("events", 1, batch);
    expect(first.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(retry.topics[0]!.partitions[0]).toMatchObject({ errorCode: ErrorCode.DUPLICATE_SEQUENCE, baseOffset: first.topics[0]!.partitions[0]!.baseOffset });
    // A gap that never fills is refused once the bounded wait for the missing batches is over.
    const gap = await produce("events", 1, buildBatch([{ value: enc.encode("gap") }], { producerId: 7n, producerEpoch: 0, baseSequence: 5 }));
    expect(gap.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.OUT_OF_ORDER_SEQUENCE);
    expect(values(await fetch("events", 1, 0n)).filter((v) => v === "once")).toHaveLength(1);
  });
});

describe("list offsets and metadata", () => {
  it("answers earliest, latest and by timestamp", async () => {
    const ts = Date.now() + 60_000;
    await produce("events", 0, buildBatch([{ value: enc.encode("future"), timestamp: ts }]));
    const res = await callUnary(
      client,
      client.listOffsets,
      {
        topics: [
          {
            topic: "events",
            partitions: [
              { partition: 0, spec: OffsetSpec.OFFSET_SPEC_EARLIEST, timestamp: 0n },
              { partition: 0, spec: OffsetSpec.OFFSET_SPEC_LATEST, timestamp: 0n },
              { partition: 0, spec: OffsetSpec.OFFSET_SPEC_TIMESTAMP, timestamp: BigInt(ts) },
              { partition: 0, spec: OffsetSpec.OFFSET_SPEC_TIMESTAMP, timestamp: BigInt(ts + 1) },
            ],
          },
        ],
      },
      5_000,
    );
    const [earliest, latest, byTime, none] = res.topics[0]!.partitions;
    expect(earliest!.offset).toBe(0n);
    expect(latest!.offset).toBe(4n);
    expect(byTime).toMatchObject({ offset: 3n, timestamp: BigInt(ts) });
    expect(none).toMatchObject({ offset: 4n, timestamp: -1n });
  });

  it("describes topics, partitions and brokers", async () => {
    const res = await callUnary(client, client.metadata, { topics: [] }, 5_000);
    expect(res.clusterId).toBe("test-cluster");
    expect(res.brokers.map((b) => b.brokerId)).toEqual([1]);
    expect(res.topics.map((t) => t.name)).toEqual(["events", "small"]);
    expect(res.topics[0]!.partitions[0]).toMatchObject({ leaderId: 1, leaderEpoch: 1, replicas: [1], isr: [1] });
    const unknown = await callUnary(client, client.metadata, { topics: ["nope", "bad name!"] }, 5_000);
    expect(unknown.topics.map((t) => t.errorCode)).toEqual([ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_TOPIC_NAME]);
  });
});

describe("bad input gets a typed error and leaves stored data intact", () => {
  async function intact() {
    expect(values(await fetch("events", 0, 0n)).slice(0, 3)).toEqual(["a", "b", "c"]);
  }

  it("unknown topic and unknown partition", async () => {
    const t = await produce("nope", 0, buildBatch([{ value: enc.encode("x") }]));
    expect(t.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    const p = await fetch("events", 9, 0n);
    expect(p.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    expect(p.topics[0]!.partitions[0]!.errorMessage).toMatch(/no partition 9/);
    await intact();
  });

  it("invalid topic name", async () => {
    const res = await produce("bad/name", 0, buildBatch([{ value: enc.encode("x") }]));
    expect(res.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.INVALID_TOPIC_NAME);
    const long = await fetch("x".repeat(250), 0, 0n);
    expect(long.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.INVALID_TOPIC_NAME);
  });

  it("a batch above max.message.bytes", async () => {
    const res = await produce("small", 0, buildBatch([{ value: new Uint8Array(2048) }]));
    expect(res.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.RECORD_TOO_LARGE);
    expect(res.topics[0]!.partitions[0]!.errorMessage).toMatch(/max\.message\.bytes 1024/);
    const fine = await produce("small", 0, buildBatch([{ value: new Uint8Array(100) }]));
    expect(fine.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  });

  it("a CRC mismatch", async () => {
    const batch = buildBatch([{ value: enc.encode("tampered") }]);
    batch.records = Uint8Array.from(batch.records);
    batch.records[batch.records.length - 1]! ^= 0xff;
    const res = await produce("events", 0, batch);
    expect(res.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.CORRUPT_BATCH);
    expect(res.topics[0]!.partitions[0]!.errorMessage).toMatch(/CRC32C/);
    await intact();
  });

  it("a record count that disagrees with the records", async () => {
    const batch = buildBatch([{ value: enc.encode("1") }, { value: enc.encode("2") }]);
    batch.header!.recordCount = 3;
    const res = await produce("events", 0, batch);
    expect(res.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.CORRUPT_BATCH);
    expect(res.topics[0]!.partitions[0]!.errorMessage).toMatch(/record_count says 3 but the batch holds 2/);
    const missing = await produce("events", 0, undefined);
    expect(missing.topics[0]!.partitions[0]!.errorCode).toBe(ErrorCode.CORRUPT_BATCH);
    await intact();
  });

  it("offsets outside the log carry both bounds", async () => {
    const res = await fetch("events", 0, 1_000n);
    const p = res.topics[0]!.partitions[0]!;
    expect(p.errorCode).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
    expect(p.logStartOffset).toBe(0n);
    expect(p.logEndOffset).toBe(4n);
    expect(p.errorMessage).toMatch(/log start offset 0, log end offset 4/);
  });

  it("negative or absurd limits are INVALID_ARGUMENT", async () => {
    const bad = [
      { maxWaitMs: -1, minBytes: 0, maxBytes: 0 },
      { maxWaitMs: 1_000_000_000, minBytes: 0, maxBytes: 0 },
      { maxWaitMs: 0, minBytes: 0, maxBytes: -5 },
      { maxWaitMs: 0, minBytes: 0, maxBytes: 2 ** 31 - 1 },
      { maxWaitMs: 0, minBytes: -1, maxBytes: 0 },
    ];
    for (const limits of bad) {
      const err = await callUnary(client, client.fetch, { ...limits, topics: [{ topic: "events", partitions: [{ partition: 0, fetchOffset: 0n, partitionMaxBytes: 0 }] }] }, 5_000).catch((e: grpc.ServiceError) => e);
      expect((err as grpc.ServiceError).code, JSON.stringify(limits)).toBe(grpc.status.INVALID_ARGUMENT);
    }
    const negOffset = await fetch("events", 0, -1n).catch((e: grpc.ServiceError) => e);
    expect((negOffset as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    const timeout = await callUnary(client, client.produce, { acks: Acks.ACKS_ALL, timeoutMs: -3, topics: [] }, 5_000).catch((e: grpc.ServiceError) => e);
    expect((timeout as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    await intact();
  });

  it("a request above the gRPC receive limit is refused with RESOURCE_EXHAUSTED", async () => {
    const big = new BrokerServiceClient(`127.0.0.1:${broker.grpcPort}`, grpc.credentials.createInsecure(), { ...channelOptions, "grpc.max_send_message_length": 128 * 1024 * 1024 });
    try {
      const batch = buildBatch([{ value: new Uint8Array(65 * 1024 * 1024) }]);
      const err = await callUnary(big, big.produce, { acks: Acks.ACKS_ALL, timeoutMs: 0, topics: [{ topic: "events", partitions: [{ partition: 0, batch }] }] }, 20_000).catch((e: grpc.ServiceError) => e);
      expect((err as grpc.ServiceError).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      big.close();
    }
    await intact();
  });

  it("garbage bytes instead of a protobuf request are INVALID_ARGUMENT or INTERNAL, never a crash", async () => {
    const raw = new grpc.Client(`127.0.0.1:${broker.grpcPort}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      raw.makeUnaryRequest("/runnel.v1.BrokerService/Produce", (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), (e) => resolve(e));
    });
    raw.close();
    expect(err?.code).toBeDefined();
    await intact();
  });
});
