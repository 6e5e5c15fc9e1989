// Hand-written encoders for the two responses that carry record batches (Fetch and ReplicaFetch).
// Stored batches are already encoded RecordBatch messages, so they are written into the response as
// length-delimited fields as they are: the wire bytes are identical to what the generated encoder
// would produce from decoded batches, without decoding or re-encoding them.
import { BinaryReader, BinaryWriter, type EpochEndOffset, EpochEndOffset as EpochEndOffsetCodec, type ErrorCode, LeaderHint } from "@runnel/proto";

export interface FetchPartitionWire {
  partition: number;
  errorCode: ErrorCode;
  errorMessage: string;
  highWatermark: bigint;
  logStartOffset: bigint;
  logEndOffset: bigint;
  currentLeader: LeaderHint | undefined;
  /** Encoded RecordBatch messages. */
  batches: Uint8Array[];
}

export interface FetchTopicWire {
  topic: string;
  partitions: FetchPartitionWire[];
}

/** Encodes a FetchResponse (runnel.v1.FetchResponse) whose batches are pre-encoded. */
export function encodeFetchResponse(topics: readonly FetchTopicWire[]): Buffer {
  const w = new BinaryWriter();
  for (const t of topics) {
    w.uint32(10).fork(); // topics = 1
    if (t.topic !== "") w.uint32(10).string(t.topic);
    for (const p of t.partitions) {
      w.uint32(18).fork(); // partitions = 2
      if (p.partition !== 0) w.uint32(8).int32(p.partition);
      if (p.errorCode !== 0) w.uint32(16).int32(p.errorCode);
      if (p.errorMessage !== "") w.uint32(26).string(p.errorMessage);
      if (p.highWatermark !== 0n) w.uint32(32).int64(p.highWatermark);
      if (p.logStartOffset !== 0n) w.uint32(40).int64(p.logStartOffset);
      if (p.logEndOffset !== 0n) w.uint32(48).int64(p.logEndOffset);
      if (p.currentLeader !== undefined) LeaderHint.encode(p.currentLeader, w.uint32(58).fork()).join();
      for (const b of p.batches) w.uint32(66).bytes(b); // batches = 8
      w.join();
    }
    w.join();
  }
  return toBuffer(w.finish());
}

export interface ReplicaFetchPartitionWire {
  topic: string;
  partition: number;
  errorCode: ErrorCode;
  errorMessage: string;
  highWatermark: bigint;
  logStartOffset: bigint;
  logEndOffset: bigint;
  divergingEpoch: EpochEndOffset | undefined;
  /** Encoded RecordBatch messages. */
  batches: Uint8Array[];
}

/** Encodes a ReplicaFetchResponse (runnel.v1.ReplicaFetchResponse) whose batches are pre-encoded. */
export function encodeReplicaFetchResponse(partitions: readonly ReplicaFetchPartitionWire[]): Buffer {
  const w = new BinaryWriter();
  for (const p of partitions) {
    w.uint32(10).fork(); // partitions = 1
    if (p.topic !== "") w.uint32(10).string(p.topic);
    if (p.partition !== 0) w.uint32(16).int32(p.partition);
    if (p.errorCode !== 0) w.uint32(24).int32(p.errorCode);
    if (p.errorMessage !== "") w.uint32(34).string(p.errorMessage);
    if (p.highWatermark !== 0n) w.uint32(40).int64(p.highWatermark);
    if (p.logStartOffset !== 0n) w.uint32(48).int64(p.logStartOffset);
    if (p.logEndOffset !== 0n) w.uint32(56).int64(p.logEndOffset);
    if (p.divergingEpoch !== undefined) EpochEndOffsetCodec.encode(p.divergingEpoch, w.uint32(66).fork()).join();
    for (const b of p.batches) w.uint32(74).bytes(b); // batches = 9
    w.join();
  }
  return toBuffer(w.finish());
}

/** A Buffer view of the writer's output (no copy: grpc-js wants a Buffer). */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes a ReplicaFetchResponse keeping each batch as its raw encoded bytes (views into `bytes`). */
export function decodeReplicaFetchResponse(bytes: Uint8Array): ReplicaFetchPartitionWire[] {
  const r = new BinaryReader(bytes);
  const out: ReplicaFetchPartitionWire[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const end = r.uint32() + r.pos;
      const p: ReplicaFetchPartitionWire = {
        topic: "",
        partition: 0,
        errorCode: 0,
        errorMessage: "",
        highWatermark: 0n,
        logStartOffset: 0n,
        logEndOffset: 0n,
        divergingEpoch: undefined,
        batches: [],
      };
      while (r.pos < end) {
        const t = r.uint32();
        switch (t >>> 3) {
          case 1: p.topic = r.string(); break;
          case 2: p.partition = r.int32(); break;
          case 3: p.errorCode = r.int32(); break;
          case 4: p.errorMessage = r.string(); break;
          case 5: p.highWatermark = r.int64() as bigint; break;
          case 6: p.logStartOffset = r.int64() as bigint; break;
          case 7: p.logEndOffset = r.int64() as bigint; break;
          case 8: p.divergingEpoch = EpochEndOffsetCodec.decode(r, r.uint32()); break;
          case 9: p.batches.push(r.bytes()); break;
          default: r.skip(t & 7);
        }
      }
      out.push(p);
    } else {
      r.skip(tag & 7);
    }
  }
  return out;
}
