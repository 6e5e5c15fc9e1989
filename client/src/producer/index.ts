// Producer: records in, acknowledged offsets out. Records are admitted in call order (waiting for
// topic metadata and for buffer space, so memory stays bounded by bufferMaxBytes), gathered into one
// open batch per partition (sealed when lingerMs passes or batchMaxBytes is reached) and sent to the
// partition leader with at most maxInFlightPerPartition batches per partition and
// maxInFlightPerBroker requests per broker in flight.
//
// Idempotence (on by default) follows Kafka: InitProducerId at the controller gives a producer id and
// epoch; a batch takes its partition's next sequence when first sent and keeps it on every retry, so
// a leader that already appended it answers DUPLICATE_SEQUENCE with the original offset (a success).
// Order within a partition survives retries: after a retriable failure no batch of that partition
// is resent until every batch in flight has answered, then the unacknowledged ones go again in
// sequence order (a later batch's OUT_OF_ORDER_SEQUENCE while an earlier one is unacknowledged just
// means "resend after it"). When a batch that took a sequence fails for good, the partition's
// sequence space may have a gap, so the producer bumps its epoch (which restarts every sequence at 0)
// once nothing is unacknowledged.
import { ErrorCode, Acks as AcksProto, buildBatch, type ProducerRecord, type RecordBatch, type RecordHeader, type PartitionProduceResponse } from "@runnel/proto";
import { invariant } from "@runnel/common";
import {
  ClientUsageError, InvalidProducerEpochError, UnknownProducerIdError, OutOfOrderSequenceError, RecordTooLargeError,
  RunnelError, UnknownServerError, UnknownTopicError, errorFromCode, errorFromGrpc, needsMetadataRefresh,
} from "../errors/index.js";
import type { ChannelPool } from "../network/index.js";
import type { ClusterMetadata, TopicInfo } from "../metadata/index.js";
import { decideRetry, retryPolicy, withRetry, type RetryOptions, type RetryPolicy } from "../retry/index.js";
import { StickyPartitioner, partitionForKey } from "./partitioner.js";

export { murmur2, toPositive, partitionForKey, StickyPartitioner } from "./partitioner.js";

export type Acks = "all" | "leader" | "none";

export const defaultLingerMs = 5;
export const defaultBatchMaxBytes = 256 * 1024;
export const defaultBufferMaxBytes = 32 * 1024 * 1024;
/** Like Kafka's max.in.flight.requests.per.connection with idempotence: at most 5 batches per partition. */
export const defaultMaxInFlightPerPartition = 5;
export const maxInFlightPerPartitionLimit = 5;
export const defaultMaxInFlightPerBroker = 32;
/** The broker allows at most this ack timeout (ProduceRequest.timeout_ms). */
export const maxAckTimeoutMs = 300_000;
/** Per-record and per-batch encoding overhead counted against batchMaxBytes and bufferMaxBytes. */
const recordOverheadBytes = 24;
const batchOverheadBytes = 64;

export interface ProducerOptions {
  /** "all" (default): every in-sync replica has the batch; "leader": the leader appended it; "none": no acknowledgement, no offsets. */
  acks?: Acks;
  /** Idempotent delivery (no duplicates from retries); default true unless acks is "none". */
  idempotent?: boolean;
  /** How long an open batch waits for more records, in milliseconds. */
  lingerMs?: number;
  /** A batch is sealed once it reaches this many bytes. */
  batchMaxBytes?: number;
  /** Records buffered but not yet acknowledged, in bytes; send() waits while this is full. */
  bufferMaxBytes?: number;
  /** Batches in flight per partition (1..5). */
  maxInFlightPerPartition?: number;
  /** Produce requests in flight per broker. */
  maxInFlightPerBroker?: number;
  /** Retry policy for failed batches (defaults to the client's). */
  retry?: RetryOptions;
  /** Random source for sticky partitioning and jitter (tests inject a seeded one). */
  random?: () => number;
}

export type BytesInput = string | Uint8Array;

export interface ProducerRecordInput {
  topic: string;
  key?: BytesInput | null | undefined;
  value: BytesInput | null;
  headers?: Record<string, BytesInput> | Array<{ key: string; value: BytesInput }> | undefined;
  /** Explicit partition; otherwise chosen from the key (murmur2) or sticky for keyless records. */
  partition?: number | undefined;
  /** Milliseconds since the Unix epoch (or a Date); default: now. */
  timestamp?: number | Date | undefined;
}

export interface RecordMetadata {
  topic: string;
  partition: number;
  /** The record's offset; -1n with acks "none". */
  offset: bigint;
}

export interface ProducerContext {
  pool: ChannelPool;
  metadata: ClusterMetadata;
  retry: RetryOptions;
  requestTimeoutMs: number;
}

interface Admission {
  topic: string;
  partition: number | undefined;
  record: ProducerRecord;
  bytes: number;
  resolve: (m: RecordMetadata) => void;
  reject: (e: unknown) => void;
}

interface PendingRecord {
  record: ProducerRecord;
  bytes: number;
  resolve: (m: RecordMetadata) => void;
  reject: (e: unknown) => void;
}

interface Batch {
  records: PendingRecord[];
  bytes: number;
  createdMs: number;
  encoded: RecordBatch | undefined;
  /** Base sequence, assigned at the first send (idempotent producers only). */
  sequence: number | undefined;
  attempts: number;
  firstSendMs: number | undefined;
  inFlight: boolean;
  lastError: unknown;
}

interface PartitionState {
  topic: string;
  partition: number;
  open: Batch | undefined;
  lingerTimer: NodeJS.Timeout | undefined;
  /** Sealed, never sent. */
  ready: Batch[];
  /** Sent at least once and not yet resolved, in sequence order. */
  unacked: Batch[];
  inFlight: number;
  nextSequence: number;
  retryAtMs: number;
  retryTimer: NodeJS.Timeout | undefined;
}

const encoder = new TextEncoder();

function toBytes(v: BytesInput): Uint8Array {
  return typeof v === "string" ? encoder.encode(v) : v;
}

function toHeaders(h: ProducerRecordInput["headers"]): RecordHeader[] {
  if (h === undefined) return [];
  const list = Array.isArray(h) ? h : Object.entries(h).map(([key, value]) => ({ key, value }));
  return list.map(({ key, value }) => ({ key, value: toBytes(value) }));
}

export class Producer {
  readonly acks: Acks;
  readonly idempotent: boolean;
  private readonly lingerMs: number;
  private readonly batchMaxBytes: number;
  private readonly bufferMaxBytes: number;
  private readonly maxInFlightPerPartition: number;
  private readonly maxInFlightPerBroker: number;
  private readonly policy: RetryPolicy;
  private readonly random: () => number;
  private readonly sticky: StickyPartitioner;
  private readonly partitions = new Map<string, PartitionState>();
  private readonly brokerInFlight = new Map<string, number>();
  private readonly admission: Admission[] = [];
  private admitting = false;
  private bufferedBytes = 0;
  private bufferWaiters: Array<() => void> = [];
  private idleWaiters: Array<() => void> = [];
  private pendingRecords = 0;
  private producerId: bigint | undefined;
  private producerEpoch = 0;
  private initializing = false;
  private reinitPending = false;
  private fatal: RunnelError | undefined;
  private closed = false;
  /** While > 0, records are sent as soon as they are admitted (flush() in progress). */
  private flushing = 0;

  constructor(private readonly ctx: ProducerContext, options: ProducerOptions = {}) {
    this.acks = options.acks ?? "all";
    if (!["all", "leader", "none"].includes(this.acks)) throw new RangeError(`acks must be "all", "leader" or "none", got ${String(this.acks)}`);
    if (options.idempotent === true && this.acks === "none") throw new RangeError("an idempotent producer needs acknowledgements: use acks \"all\" or \"leader\"");
    this.idempotent = options.idempotent ?? this.acks !== "none";
    this.lingerMs = options.lingerMs ?? defaultLingerMs;
    this.batchMaxBytes = options.batchMaxBytes ?? defaultBatchMaxBytes;
    this.bufferMaxBytes = options.bufferMaxBytes ?? defaultBufferMaxBytes;
    this.maxInFlightPerPartition = options.maxInFlightPerPartition ?? defaultMaxInFlightPerPartition;
    this.maxInFlightPerBroker = options.maxInFlightPerBroker ?? defaultMaxInFlightPerBroker;
    if (!(this.lingerMs >= 0)) throw new RangeError(`lingerMs must be >= 0, got ${this.lingerMs}`);
    if (!(this.batchMaxBytes >= 1)) throw new RangeError(`batchMaxBytes must be >= 1, got ${this.batchMaxBytes}`);
    if (!(this.bufferMaxBytes >= this.batchMaxBytes)) throw new RangeError(`bufferMaxBytes (${this.bufferMaxBytes}) must be >= batchMaxBytes (${this.batchMaxBytes})`);
    if (!(this.maxInFlightPerPartition >= 1 && this.maxInFlightPerPartition <= maxInFlightPerPartitionLimit)) {
      throw new RangeError(`maxInFlightPerPartition must be 1..${maxInFlightPerPartitionLimit}, got ${this.maxInFlightPerPartition}`);
    }
    if (!(this.maxInFlightPerBroker >= 1)) throw new RangeError(`maxInFlightPerBroker must be >= 1, got ${this.maxInFlightPerBroker}`);
    this.policy = retryPolicy({ ...ctx.retry, ...options.retry });
    this.random = options.random ?? Math.random;
    this.sticky = new StickyPartitioner(this.random);
  }

  /** Bytes of records admitted and not yet acknowledged or failed. */
  get bufferedBytesNow(): number {
    return this.bufferedBytes;
  }

  /** Sends one record; resolves once it is acknowledged per `acks`. Waits while the buffer is full. */
  send(input: ProducerRecordInput): Promise<RecordMetadata> {
    if (this.closed) return Promise.reject(new ClientUsageError("send() after the producer was closed", { code: ErrorCode.INVALID_REQUEST, retriable: false, topic: input.topic }));
    if (this.fatal !== undefined) return Promise.reject(this.fatal);
    const key = input.key === undefined || input.key === null ? undefined : toBytes(input.key);
    const value = input.value === null ? undefined : toBytes(input.value);
    const headers = toHeaders(input.headers);
    const timestamp = input.timestamp === undefined ? Date.now() : input.timestamp instanceof Date ? input.timestamp.getTime() : input.timestamp;
    const bytes = recordOverheadBytes + (key?.length ?? 0) + (value?.length ?? 0) + headers.reduce((n, h) => n + h.key.length + h.value.length + 8, 0);
    if (bytes + batchOverheadBytes > this.bufferMaxBytes) {
      return Promise.reject(new RecordTooLargeError(`record of ${bytes} bytes is larger than the producer buffer (bufferMaxBytes ${this.bufferMaxBytes})`, {
        code: ErrorCode.RECORD_TOO_LARGE, retriable: false, topic: input.topic, partition: input.partition,
      }));
    }
    return new Promise((resolve, reject) => {
      this.admission.push({ topic: input.topic, partition: input.partition, record: { key, value, headers, timestamp }, bytes, resolve, reject });
      this.pendingRecords += 1;
      void this.admit();
    });
  }

  /** Seals every open batch and resolves once every record sent so far is acknowledged or failed. */
  async flush(): Promise<void> {
    this.flushing += 1;
    try {
      while (this.pendingRecords > 0) {
        this.sealAll();
        await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      }
    } finally {
      this.flushing -= 1;
    }
  }

  private sealAll(): void {
    for (const ps of this.partitions.values()) if (ps.open !== undefined) this.seal(ps);
  }

  /** Flushes, then refuses further sends. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    for (const ps of this.partitions.values()) {
      if (ps.lingerTimer !== undefined) clearTimeout(ps.lingerTimer);
      if (ps.retryTimer !== undefined) clearTimeout(ps.retryTimer);
    }
  }

  // --- admission: strictly in call order -------------------------------------------------------

  private async admit(): Promise<void> {
    if (this.admitting) return;
    this.admitting = true;
    try {
      while (this.admission.length > 0) {
        const a = this.admission[0]!;
        let info = this.ctx.metadata.topic(a.topic);
        if (info === undefined) {
          try {
            info = await withRetry(this.policy, () => this.ctx.metadata.ensureTopic(a.topic));
          } catch (err) {
            this.admission.shift();
            this.recordDone(a.bytes, false);
            a.reject(err);
            continue;
          }
        }
        while (this.bufferedBytes > 0 && this.bufferedBytes + a.bytes > this.bufferMaxBytes) {
          await new Promise<void>((resolve) => this.bufferWaiters.push(resolve));
        }
        this.admission.shift();
        this.append(a, info);
        if (this.flushing > 0 && this.admission.length === 0) this.sealAll();
      }
    } finally {
      this.admitting = false;
    }
  }

  private append(a: Admission, info: TopicInfo): void {
    const n = info.partitions.length;
    let partition: number;
    if (a.partition !== undefined) {
      if (!Number.isInteger(a.partition) || a.partition < 0 || a.partition >= n) {
        this.recordDone(0, false);
        a.reject(new UnknownTopicError(`topic "${a.topic}" has ${n} partitions; partition ${a.partition} does not exist`, {
          code: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, retriable: false, topic: a.topic, partition: a.partition,
        }));
        return;
      }
      partition = a.partition;
    } else if (a.record.key !== undefined) {
      partition = partitionForKey(a.record.key, n);
    } else {
      partition = this.sticky.partition(a.topic, n);
    }
    const ps = this.partitionState(a.topic, partition);
    if (ps.open !== undefined && ps.open.bytes + a.bytes > this.batchMaxBytes) this.seal(ps);
    if (ps.open === undefined) {
      ps.open = { records: [], bytes: batchOverheadBytes, createdMs: Date.now(), encoded: undefined, sequence: undefined, attempts: 0, firstSendMs: undefined, inFlight: false, lastError: undefined };
      ps.lingerTimer = setTimeout(() => this.seal(ps), this.lingerMs);
    }
    ps.open.records.push({ record: a.record, bytes: a.bytes, resolve: a.resolve, reject: a.reject });
    ps.open.bytes += a.bytes;
    this.bufferedBytes += a.bytes;
    if (ps.open.bytes >= this.batchMaxBytes) this.seal(ps);
  }

  private partitionState(topic: string, partition: number): PartitionState {
    const key = `${topic}\u0000${partition}`;
    let ps = this.partitions.get(key);
    if (ps === undefined) {
      ps = { topic, partition, open: undefined, lingerTimer: undefined, ready: [], unacked: [], inFlight: 0, nextSequence: 0, retryAtMs: 0, retryTimer: undefined };
      this.partitions.set(key, ps);
    }
    return ps;
  }

  private seal(ps: PartitionState): void {
    if (ps.lingerTimer !== undefined) clearTimeout(ps.lingerTimer);
    ps.lingerTimer = undefined;
    const batch = ps.open;
    if (batch === undefined) return;
    ps.open = undefined;
    ps.ready.push(batch);
    const n = this.ctx.metadata.topic(ps.topic)?.partitions.length ?? 1;
    this.sticky.onBatchSealed(ps.topic, ps.partition, n);
    this.pump();
  }

  // --- sending -----------------------------------------------------------------------------------

  private pump(): void {
    if (this.fatal !== undefined) return;
    if (this.idempotent && this.producerId === undefined) {
      this.initProducerId();
      return;
    }
    if (this.reinitPending) this.maybeReinit();
    for (const ps of this.partitions.values()) this.drain(ps);
  }

  private drain(ps: PartitionState): void {
    const now = Date.now();
    this.expire(ps, now);
    const waiting = ps.unacked.filter((b) => !b.inFlight);
    if (waiting.length > 0) {
      // Resend in sequence order only once everything in flight has answered.
      if (this.idempotent && ps.inFlight > 0) return;
      if (now < ps.retryAtMs) return this.scheduleRetry(ps, ps.retryAtMs - now);
      for (const b of waiting) if (!this.trySend(ps, b)) return;
    }
    if (this.reinitPending || this.initializing) return;
    while (ps.ready.length > 0) {
      const b = ps.ready[0]!;
      if (!this.canSend(ps)) return;
      ps.ready.shift();
      this.encode(ps, b);
      ps.unacked.push(b);
      if (!this.trySend(ps, b)) return;
    }
  }

  /** Fails batches that waited longer than the retry budget without an answer that settles them. */
  private expire(ps: PartitionState, now: number): void {
    while (ps.ready.length > 0 && now - ps.ready[0]!.createdMs > this.policy.maxTotalMs) {
      const b = ps.ready.shift()!;
      this.failBatch(ps, b, b.lastError ?? new RunnelError(`no leader reachable for topic "${ps.topic}" partition ${ps.partition} within ${this.policy.maxTotalMs} ms`, {
        code: ErrorCode.LEADER_NOT_AVAILABLE, retriable: true, topic: ps.topic, partition: ps.partition,
      }));
    }
  }

  private encode(ps: PartitionState, b: Batch): void {
    const options = this.idempotent
      ? { producerId: this.producerId!, producerEpoch: this.producerEpoch, baseSequence: ps.nextSequence }
      : {};
    if (this.idempotent) {
      invariant(ps.nextSequence + b.records.length <= 0x7fffffff, () => `sequence overflow for topic "${ps.topic}" partition ${ps.partition} at ${ps.nextSequence}`);
      b.sequence = ps.nextSequence;
      ps.nextSequence += b.records.length;
    }
    b.encoded = buildBatch(b.records.map((r) => r.record), options);
  }

  private canSend(ps: PartitionState): boolean {
    if (ps.inFlight >= this.maxInFlightPerPartition) return false;
    let leader: string;
    try {
      leader = this.ctx.metadata.leaderFor(ps.topic, ps.partition).address;
    } catch {
      return true; // trySend handles the missing leader (refresh and back off)
    }
    return (this.brokerInFlight.get(leader) ?? 0) < this.maxInFlightPerBroker;
  }

  /** Sends `b` if the limits allow; false when it must wait. */
  private trySend(ps: PartitionState, b: Batch): boolean {
    if (ps.inFlight >= this.maxInFlightPerPartition) return false;
    let address: string;
    try {
      address = this.ctx.metadata.leaderFor(ps.topic, ps.partition).address;
    } catch (err) {
      b.lastError = err;
      this.backOff(ps, b, err, false);
      return false;
    }
    const inFlightHere = this.brokerInFlight.get(address) ?? 0;
    if (inFlightHere >= this.maxInFlightPerBroker) return false;
    this.brokerInFlight.set(address, inFlightHere + 1);
    b.inFlight = true;
    ps.inFlight += 1;
    b.attempts += 1;
    b.firstSendMs ??= Date.now();
    const ackTimeoutMs = Math.min(maxAckTimeoutMs, Math.max(1, Math.floor(this.ctx.requestTimeoutMs * 0.8)));
    const request = {
      acks: this.acks === "all" ? AcksProto.ACKS_ALL : this.acks === "leader" ? AcksProto.ACKS_LEADER : AcksProto.ACKS_NONE,
      timeoutMs: ackTimeoutMs,
      topics: [{ topic: ps.topic, partitions: [{ partition: ps.partition, batch: b.encoded }] }],
    };
    this.ctx.pool
      .broker(address, "produce", request)
      .then(
        (res) => {
          const p = res.topics.find((t) => t.topic === ps.topic)?.partitions.find((x) => x.partition === ps.partition);
          return p ?? new UnknownServerError(`produce response from ${address} has no entry for topic "${ps.topic}" partition ${ps.partition}`, {
            code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true, outcomeUnknown: true, topic: ps.topic, partition: ps.partition, address,
          });
        },
        (err: unknown) => errorFromGrpc(err, address, "produce"),
      )
      .then((outcome) => {
        b.inFlight = false;
        ps.inFlight -= 1;
        this.brokerInFlight.set(address, (this.brokerInFlight.get(address) ?? 1) - 1);
        this.onOutcome(ps, b, outcome, address);
        this.pump();
      })
      .catch((err: unknown) => {
        // Only a bug in onOutcome lands here; fail loudly rather than leave send() hanging.
        this.fatal = err instanceof RunnelError ? err : new UnknownServerError(String(err), { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: false });
        setImmediate(() => { throw err; });
      });
    return true;
  }

  private onOutcome(ps: PartitionState, b: Batch, outcome: PartitionProduceResponse | RunnelError, address: string): void {
    const success = !(outcome instanceof RunnelError) && (outcome.errorCode === ErrorCode.ERROR_CODE_NONE || outcome.errorCode === ErrorCode.DUPLICATE_SEQUENCE);
    if (this.fatal !== undefined && !success) {
      this.failBatch(ps, b, this.fatal);
      return;
    }
    if (!(outcome instanceof RunnelError)) {
      if (outcome.errorCode === ErrorCode.ERROR_CODE_NONE || outcome.errorCode === ErrorCode.DUPLICATE_SEQUENCE) {
        this.succeed(ps, b, this.acks === "none" ? -1n : outcome.baseOffset);
        return;
      }
      outcome = errorFromCode(outcome.errorCode, {
        topic: ps.topic, partition: ps.partition, address, detail: outcome.errorMessage, leaderHint: outcome.currentLeader,
      });
    }
    const err = outcome;
    b.lastError = err;
    if (err instanceof InvalidProducerEpochError) {
      // Another producer instance took over this producer id: nothing this one sends can succeed.
      this.fatal = err;
      this.failEverything(err);
      return;
    }
    const isHead = ps.unacked[0] === b;
    // A later batch is out of order (or its producer unknown, when the first batch never landed) only
    // because an earlier one is unacknowledged: resend it after that one.
    const sequenceWaitsForEarlier = (err instanceof OutOfOrderSequenceError || err instanceof UnknownProducerIdError) && !isHead;
    const retriable = err.retriable || sequenceWaitsForEarlier || err instanceof UnknownTopicError;
    this.backOff(ps, b, err, retriable);
  }

  private backOff(ps: PartitionState, b: Batch, err: unknown, retriable: boolean): void {
    const now = Date.now();
    const asRetriable = retriable && err instanceof RunnelError && !err.retriable
      ? new RunnelError(err.message, { code: err.code, retriable: true, topic: ps.topic, partition: ps.partition })
      : err;
    const decision = b.sequence === undefined && b.attempts === 0
      ? { retry: true as const, delayMs: Math.min(this.policy.maxBackoffMs, this.policy.initialBackoffMs) }
      : decideRetry(this.policy, asRetriable, Math.max(1, b.attempts), now - (b.firstSendMs ?? b.createdMs), this.random());
    if (!decision.retry || this.reinitPending && b.sequence !== undefined && this.fatalGap(ps)) {
      const unacked = ps.unacked.includes(b);
      this.failBatch(ps, b, err);
      if (unacked && this.idempotent) this.onSequenceGap(ps, err);
      return;
    }
    ps.retryAtMs = Math.max(ps.retryAtMs, now + decision.delayMs);
    if (needsMetadataRefresh(err)) {
      this.ctx.metadata.refresh([ps.topic]).then(() => this.pump(), () => undefined);
    }
    this.scheduleRetry(ps, ps.retryAtMs - now);
  }

  /** Whether this partition already lost a batch for good in the current epoch (later ones cannot succeed). */
  private fatalGap(ps: PartitionState): boolean {
    return this.gapPartitions.has(ps);
  }

  private readonly gapPartitions = new Set<PartitionState>();

  /** A batch with a sequence failed for good: the rest of this partition's epoch cannot be trusted. */
  private onSequenceGap(ps: PartitionState, err: unknown): void {
    this.gapPartitions.add(ps);
    this.reinitPending = true;
    for (const other of ps.unacked.filter((x) => !x.inFlight)) this.failBatch(ps, other, err);
  }

  private scheduleRetry(ps: PartitionState, delayMs: number): void {
    if (ps.retryTimer !== undefined) return;
    ps.retryTimer = setTimeout(() => {
      ps.retryTimer = undefined;
      this.pump();
    }, Math.max(0, delayMs));
  }

  private succeed(ps: PartitionState, b: Batch, baseOffset: bigint): void {
    this.removeUnacked(ps, b);
    b.records.forEach((r, i) => {
      r.resolve({ topic: ps.topic, partition: ps.partition, offset: baseOffset < 0n ? -1n : baseOffset + BigInt(i) });
      this.recordDone(r.bytes, true);
    });
  }

  private failBatch(ps: PartitionState, b: Batch, err: unknown): void {
    this.removeUnacked(ps, b);
    for (const r of b.records) {
      r.reject(err);
      this.recordDone(r.bytes, true);
    }
  }

  private removeUnacked(ps: PartitionState, b: Batch): void {
    const i = ps.unacked.indexOf(b);
    if (i >= 0) ps.unacked.splice(i, 1);
  }

  private failEverything(err: RunnelError): void {
    this.fatal = err;
    for (const ps of this.partitions.values()) {
      if (ps.open !== undefined) this.seal(ps);
      for (const b of [...ps.ready]) this.failBatch(ps, b, err);
      ps.ready = [];
      for (const b of ps.unacked.filter((x) => !x.inFlight)) this.failBatch(ps, b, err);
    }
  }

  private recordDone(bytes: number, buffered: boolean): void {
    if (buffered) this.bufferedBytes -= bytes;
    this.pendingRecords -= 1;
    invariant(this.bufferedBytes >= 0 && this.pendingRecords >= 0, () => `producer accounting went negative: ${this.bufferedBytes} bytes, ${this.pendingRecords} records`);
    if (buffered && this.bufferWaiters.length > 0) {
      const waiters = this.bufferWaiters;
      this.bufferWaiters = [];
      for (const w of waiters) w();
    }
    if (this.pendingRecords === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  // --- producer id -------------------------------------------------------------------------------

  private initProducerId(): void {
    if (this.initializing) return;
    this.initializing = true;
    void this.runInit(0n, 0);
  }

  /** Bumps the epoch once no partition has an unacknowledged batch, so every sequence restarts at 0. */
  private maybeReinit(): void {
    if (this.initializing) return;
    for (const ps of this.partitions.values()) if (ps.unacked.length > 0) return;
    this.initializing = true;
    void this.runInit(this.producerId ?? 0n, this.producerEpoch);
  }

  private async runInit(producerId: bigint, producerEpoch: number): Promise<void> {
    try {
      const res = await withRetry(this.policy, async () => {
        const address = await this.ctx.metadata.controllerAddress();
        const r = await this.ctx.pool.controller(address, "initProducerId", { producerId, producerEpoch });
        if (r.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(r.errorCode, { address, detail: r.errorMessage });
        return r;
      }, { beforeRetry: () => this.ctx.metadata.refresh().catch(() => undefined) });
      this.producerId = res.producerId;
      this.producerEpoch = res.producerEpoch;
      for (const ps of this.partitions.values()) ps.nextSequence = 0;
      this.gapPartitions.clear();
      this.reinitPending = false;
      this.initializing = false;
      this.pump();
    } catch (err) {
      this.initializing = false;
      this.fatal = err instanceof RunnelError ? err : new UnknownServerError(String(err), { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: false });
      this.failEverything(this.fatal);
      for (const a of this.admission.splice(0)) {
        this.recordDone(0, false);
        a.reject(this.fatal);
      }
    }
  }
}


