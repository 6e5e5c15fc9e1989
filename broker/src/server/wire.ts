// Hand-written encoders for the responses that carry record batches (Fetch, ReplicaFetch, ShareFetch).
// Stored batches are already encoded RecordBatch messages, so they are written into the response as
// length-delimited fields as they are: the wire bytes are identical to what the generated encoder
// would produce from decoded batches, without decoding or re-encoding them.
import {
  BinaryReader,
  BinaryWriter,
  type EpochEndOffset,
  EpochEndOffset as EpochEndOffsetCodec,
  type ErrorCode,
  LeaderHint,
  ShareFetchPartitionResponse,
} from "@runnel/proto";

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

/**
 * Encodes a FetchResponse (runnel.v1.FetchResponse) whose batches are pre-encoded. The response is
 * written into one buffer of its exact size: BinaryWriter's fork()/join() copy everything inside a
 * fork once per nesting level, which made each fetch response three transient copies of its batches.
 */
export function encodeFetchResponse(topics: readonly FetchTopicWire[]): Buffer {
  return encodeTopicsWithBatches(topics, 66, (p) => { // batches = 8
    const w = new BinaryWriter();
    if (p.partition !== 0) w.uint32(8).int32(p.partition);
    if (p.errorCode !== 0) w.uint32(16).int32(p.errorCode);
    if (p.errorMessage !== "") w.uint32(26).string(p.errorMessage);
    if (p.highWatermark !== 0n) w.uint32(32).int64(p.highWatermark);
    if (p.logStartOffset !== 0n) w.uint32(40).int64(p.logStartOffset);
    if (p.logEndOffset !== 0n) w.uint32(48).int64(p.logEndOffset);
    if (p.currentLeader !== undefined) LeaderHint.encode(p.currentLeader, w.uint32(58).fork()).join();
    return w.finish();
  });
}

/** ShareFetchPartitionResponse with its batches kept as encoded RecordBatch bytes. */
export type ShareFetchPartitionWire = Omit<ShareFetchPartitionResponse, "batches"> & { batches: Uint8Array[] };
export interface ShareFetchTopicWire {
  topic: string;
  partitions: ShareFetchPartitionWire[];
}

/**
 * Encodes a ShareFetchResponse whose batches are pre-encoded, into one exact-size buffer. The batches
 * field (5) follows the partition's other fields; protobuf readers accept fields in any order.
 */
export function encodeShareFetchResponse(topics: readonly ShareFetchTopicWire[]): Buffer {
  return encodeTopicsWithBatches(topics, 42, (p) => ShareFetchPartitionResponse.encode({ ...p, batches: [] }).finish()); // batches = 5
}

/**
 * The shape Fetch and ShareFetch answers share: repeated topics (1) of { topic name (1), repeated
 * partitions (2) }, each partition its small fields (`head`) then its batches as field `batchTag`.
 */
function encodeTopicsWithBatches<P extends { batches: readonly Uint8Array[] }>(
  topics: ReadonlyArray<{ topic: string; partitions: readonly P[] }>,
  batchTag: number,
  head: (p: P) => Uint8Array,
): Buffer {
  const plans = topics.map((t) => {
    const name = t.topic === "" ? empty : new BinaryWriter().uint32(10).string(t.topic).finish();
    const partitions = t.partitions.map((p) => part(head(p), batchTag, p.batches));
    return { head: name, partitions, bytes: name.length + partitions.reduce((n, p) => n + fieldBytes(p.bytes), 0) };
  });
  const out = new ExactWriter(plans.reduce((n, t) => n + fieldBytes(t.bytes), 0));
  for (const t of plans) {
    out.field(10, t.bytes); // topics = 1
    out.raw(t.head);
    for (const p of t.partitions) {
      out.field(18, p.bytes); // partitions = 2
      out.part(p);
    }
  }
  return out.done();
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

/** Encodes a ReplicaFetchResponse (runnel.v1.ReplicaFetchResponse) whose batches are pre-encoded, into one exact-size buffer. */
export function encodeReplicaFetchResponse(partitions: readonly ReplicaFetchPartitionWire[]): Buffer {
  const plans = partitions.map((p) => {
    const w = new BinaryWriter();
    if (p.topic !== "") w.uint32(10).string(p.topic);
    if (p.partition !== 0) w.uint32(16).int32(p.partition);
    if (p.errorCode !== 0) w.uint32(24).int32(p.errorCode);
    if (p.errorMessage !== "") w.uint32(34).string(p.errorMessage);
    if (p.highWatermark !== 0n) w.uint32(40).int64(p.highWatermark);
    if (p.logStartOffset !== 0n) w.uint32(48).int64(p.logStartOffset);
    if (p.logEndOffset !== 0n) w.uint32(56).int64(p.logEndOffset);
    if (p.divergingEpoch !== undefined) EpochEndOffsetCodec.encode(p.divergingEpoch, w.uint32(66).fork()).join();
    return part(w.finish(), 74, p.batches); // batches = 9
  });
  const out = new ExactWriter(plans.reduce((n, p) => n + fieldBytes(p.bytes), 0));
  for (const p of plans) {
    out.field(10, p.bytes); // partitions = 1
    out.part(p);
  }
  return out.done();
}

const empty = new Uint8Array(0);

/** A partition message: its small fields already encoded, then its batches as one repeated bytes field. */
interface PartPlan {
  head: Uint8Array;
  /** The batches field's tag byte (field number << 3 | length-delimited). */
  batchTag: number;
  batches: readonly Uint8Array[];
  /** Encoded length of the whole partition message. */
  bytes: number;
}

function part(head: Uint8Array, batchTag: number, batches: readonly Uint8Array[]): PartPlan {
  let bytes = head.length;
  for (const b of batches) bytes += 1 + varintBytes(b.length) + b.length;
  return { head, batchTag, batches, bytes };
}

/** Bytes of an unsigned varint of a length (lengths stay far below 2^32). */
function varintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x20_0000 ? 3 : n < 0x1000_0000 ? 4 : 5;
}

/** Bytes of a length-delimited field with a one-byte tag and `length` bytes of content. */
function fieldBytes(length: number): number {
  return 1 + varintBytes(length) + length;
}

/** Writes into a buffer allocated once at the response's exact size; done() checks the size was right. */
class ExactWriter {
  readonly #buf: Buffer;
  #pos = 0;

  constructor(size: number) {
    this.#buf = Buffer.allocUnsafe(size);
  }

  /** A one-byte tag and a length prefix; the content follows. */
  field(tag: number, length: number): void {
    this.#buf[this.#pos++] = tag;
    let n = length;
    while (n >= 0x80) {
      this.#buf[this.#pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.#buf[this.#pos++] = n;
  }

  raw(bytes: Uint8Array): void {
    this.#buf.set(bytes, this.#pos);
    this.#pos += bytes.length;
  }

  part(p: PartPlan): void {
    this.raw(p.head);
    for (const b of p.batches) {
      this.field(p.batchTag, b.length);
      this.raw(b);
    }
  }

  done(): Buffer {
    if (this.#pos !== this.#buf.length) throw new Error(`response encoder wrote ${this.#pos} bytes into a buffer sized ${this.#buf.length}`);
    return this.#buf;
  }
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
