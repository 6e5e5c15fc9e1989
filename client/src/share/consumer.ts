// ShareConsumer: a member of a share group (task-queue consumption, KIP-932 style). It joins with
// ShareGroupHeartbeat and keeps heartbeating; poll() sends ShareFetch to every leader broker of the
// subscribed topics' partitions (one outstanding request per broker, in parallel) and returns the
// records the leaders handed to this member under an acquisition lock. The application settles each
// record with accept/release/reject; those acknowledgements are coalesced into runs and ride the next
// ShareFetch to that broker, or go in a ShareAcknowledge after ackLingerMs (or at flush()).
// Bounded: at most maxInFlightRecords acquired-but-unacknowledged records; poll asks for no more.
// Leader changes: refresh metadata and retry; the share state lives on at the new leader and this
// member's locks stay valid there. An acknowledgement of a record whose lock expired comes back as
// INVALID_RECORD_STATE in the flush()/acknowledge() result (the record went back to the group); poll
// never throws for it.
import { ErrorCode, type ShareAcknowledgeResult, type ShareAcknowledgeTopic, type ShareFetchPartitionResponse, type ShareFetchRequest } from "@runnel/proto";
import { ClientUsageError, CorruptBatchError, RunnelError, errorFromCode, needsMetadataRefresh } from "../errors/index.js";
import type { ConsumerContext, ConsumerRecord } from "../consumer/index.js";
import { backoffMs, retryPolicy, withRetry, type RetryOptions, type RetryPolicy } from "../retry/index.js";
import { acquiredFromBatches, coalesceAcks, maxReleaseDelayMs, splitRecordBudget, truncateReason, type AckType, type PendingAck } from "./acks.js";

export const defaultMaxInFlightRecords = 500;
export const defaultLockDurationMs = 30_000;
/** Longest a ShareFetch waits at the broker for records, in milliseconds. */
export const defaultShareMaxWaitMs = 1_000;
/** The broker allows long polls up to this long. */
export const maxShareFetchWaitMs = 60_000;
/** Lock durations the broker accepts, in milliseconds. */
export const minLockDurationMs = 1_000;
export const maxLockDurationMs = 3_600_000;
/** Longest poll() waits for records when not told, in milliseconds. */
export const defaultPollTimeoutMs = 5_000;
/** How long an acknowledgement waits for a ShareFetch to ride on before it goes alone, in milliseconds. */
export const ackLingerMs = 5;
/** Most records one ShareFetch may ask for (ShareFetchRequest.max_records). */
export const maxRecordsPerShareFetch = 10_000;
/** Used until the controller says how often to heartbeat. */
export const initialShareHeartbeatIntervalMs = 1_000;
/** Deadline of each heartbeat, in milliseconds. */
export const shareHeartbeatTimeoutMs = 5_000;
/** Acknowledgement outcomes kept for the next flush(); the oldest are dropped beyond this. */
export const maxUnreportedAckResults = 10_000;

export interface ShareConsumerOptions {
  groupId: string;
  topics: string[];
  /** Most records acquired and not yet acknowledged (default 500). */
  maxInFlightRecords?: number;
  /** How long acquired records stay locked to this member, in milliseconds (default 30000). */
  lockDurationMs?: number;
  /** Longest a ShareFetch waits at the broker, in milliseconds (default 1000). */
  maxWaitMs?: number;
  clientId?: string;
  retry?: RetryOptions;
}

/** A record handed to this member: a ConsumerRecord plus its delivery count and lock deadline. */
export interface ShareRecord extends ConsumerRecord {
  /** Deliveries of this record so far, this one included (1 the first time). */
  deliveryCount: number;
  /** When this member's lock expires (milliseconds since the Unix epoch); renew() moves it. */
  lockDeadlineMs: number;
}

/** The outcome of one acknowledged run of offsets. */
export interface AckResult {
  topic: string;
  partition: number;
  firstOffset: bigint;
  lastOffset: bigint;
  type: AckType;
  /** Set when the run failed: InvalidRecordStateError (lock expired; the record went back), or why it could not be sent. */
  error: RunnelError | undefined;
  /** With renew: the new lock deadline. */
  lockDeadlineMs?: number;
}

interface AckEntry {
  ack: PendingAck;
  topic: string;
  partition: number;
  memberId: string;
  firstQueuedMs: number;
  attempts: number;
  resolve: (r: AckResult) => void;
}

interface PartitionState {
  topic: string;
  partition: number;
  failures: number;
  backoffUntilMs: number;
}

type ShareFetchTopicPart = ShareFetchRequest["topics"][number];

function buf(u: Uint8Array | undefined): Buffer | null {
  return u === undefined ? null : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

function recordKey(topic: string, partition: number, offset: bigint): string {
  return `${topic}\u0000${partition}\u0000${offset}`;
}

export class ShareConsumer {
  readonly groupId: string;
  readonly topics: readonly string[];
  private readonly maxInFlightRecords: number;
  /** Moves which leaders get the record budget's remainder, round by round (see splitRecordBudget). */
  private budgetRound = 0;
  private readonly lockDurationMs: number;
  private readonly maxWaitMs: number;
  private readonly clientId: string;
  private readonly policy: RetryPolicy;
  private memberIdValue = "";
  private memberEpoch = 0;
  private heartbeatIntervalMs = initialShareHeartbeatIntervalMs;
  private heartbeatLoopRunning: Promise<void> | undefined;
  private wakeHeartbeat: (() => void) | undefined;
  private heartbeatSoon = false;
  /** Acquired and not yet acknowledged (buffered or handed out), with the member id that holds the lock. */
  private readonly held = new Map<string, { record: ShareRecord; memberId: string }>();
  /** Acquired, not yet returned by poll. */
  private buffer: ShareRecord[] = [];
  private readonly partitions = new Map<string, PartitionState>();
  /** Leader address -> records asked for by its outstanding ShareFetch. */
  private readonly fetching = new Map<string, number>();
  private pending: AckEntry[] = [];
  private readonly sending = new Set<Promise<void>>();
  private lingerTimer: NodeJS.Timeout | undefined;
  private results: AckResult[] = [];
  private errors: RunnelError[] = [];
  private fatal: RunnelError | undefined;
  private waiters: Array<() => void> = [];
  private topicsChecked = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly ctx: ConsumerContext, options: ShareConsumerOptions) {
    if (typeof options.groupId !== "string" || options.groupId.length < 1 || options.groupId.length > 255) throw new RangeError("groupId must be 1 to 255 characters");
    if (!Array.isArray(options.topics) || options.topics.length === 0) throw new RangeError("a share consumer needs at least one topic");
    this.groupId = options.groupId;
    this.topics = [...new Set(options.topics)];
    this.maxInFlightRecords = options.maxInFlightRecords ?? defaultMaxInFlightRecords;
    this.lockDurationMs = options.lockDurationMs ?? defaultLockDurationMs;
    this.maxWaitMs = options.maxWaitMs ?? defaultShareMaxWaitMs;
    this.clientId = options.clientId ?? "runnel-client";
    if (!(Number.isInteger(this.maxInFlightRecords) && this.maxInFlightRecords >= 1)) throw new RangeError(`maxInFlightRecords must be an integer >= 1, got ${this.maxInFlightRecords}`);
    if (!(this.lockDurationMs >= minLockDurationMs && this.lockDurationMs <= maxLockDurationMs)) throw new RangeError(`lockDurationMs must be ${minLockDurationMs}..${maxLockDurationMs}, got ${this.lockDurationMs}`);
    if (!(this.maxWaitMs >= 0 && this.maxWaitMs <= maxShareFetchWaitMs)) throw new RangeError(`maxWaitMs must be 0..${maxShareFetchWaitMs}, got ${this.maxWaitMs}`);
    this.policy = retryPolicy({ ...ctx.retry, ...options.retry });
  }

  /** The member id the controller gave ("" until joined). */
  get memberId(): string {
    return this.memberIdValue;
  }

  /** Records acquired by this member and not yet acknowledged (returned by poll or still buffered). */
  get inFlightRecords(): number {
    return this.held.size;
  }

  /** The lock duration asked for at fetch, in milliseconds. */
  get lockDuration(): number {
    return this.lockDurationMs;
  }

  /** Joins the group and starts heartbeating (the first poll does this when not called). */
  start(): void {
    this.assertOpen();
    this.heartbeatLoopRunning ??= this.heartbeatLoop();
  }

  /**
   * Records acquired for this member: at most maxRecords, and never more than maxInFlightRecords held
   * at once. Waits up to timeoutMs (default 5000) for at least one; [] when none came.
   */
  async poll(options: { maxRecords?: number; timeoutMs?: number } = {}): Promise<ShareRecord[]> {
    this.assertOpen();
    const maxRecords = options.maxRecords ?? this.maxInFlightRecords;
    const timeoutMs = options.timeoutMs ?? defaultPollTimeoutMs;
    if (!(Number.isInteger(maxRecords) && maxRecords >= 1)) throw new RangeError(`maxRecords must be an integer >= 1, got ${maxRecords}`);
    if (!(timeoutMs >= 0)) throw new RangeError(`timeoutMs must be >= 0, got ${timeoutMs}`);
    this.start();
    const deadline = Date.now() + timeoutMs;
    if (!this.topicsChecked) {
      for (const t of this.topics) await this.ctx.metadata.ensureTopic(t); // UnknownTopicError for a typo
      this.topicsChecked = true;
    }
    for (;;) {
      this.throwPending();
      if (this.closed) return [];
      if (this.buffer.length > 0) return this.buffer.splice(0, maxRecords);
      const remaining = deadline - Date.now();
      if (remaining <= 0) return [];
      let nextWakeMs = Infinity;
      if (this.memberIdValue !== "") nextWakeMs = this.startFetches(maxRecords, Math.min(remaining, this.maxWaitMs));
      await this.waitForChange(Math.max(1, Math.min(remaining, nextWakeMs - Date.now())));
    }
  }

  /** Ends a poll that is waiting (it returns what it has, possibly nothing). */
  wakeup(): void {
    this.notify();
  }

  /** Done: the record is settled and never delivered again. */
  accept(record: ShareRecord): void {
    void this.acknowledge(record, "accept");
  }

  /** Give it back for another delivery, optionally not before delayMs; dead-lettered instead when out of attempts. */
  release(record: ShareRecord, options: { delayMs?: number; reason?: string } = {}): void {
    void this.acknowledge(record, "release", options);
  }

  /** Poison: dead-letter it now with `reason`. */
  reject(record: ShareRecord, reason: string): void {
    void this.acknowledge(record, "reject", { reason });
  }

  /**
   * Queues an acknowledgement of one record and resolves with the outcome of the run it was sent in
   * (never rejects: a failure is in AckResult.error). accept/release/reject are this without the wait.
   */
  acknowledge(record: ShareRecord, type: "accept" | "release" | "reject", options: { delayMs?: number; reason?: string } = {}): Promise<AckResult> {
    const k = recordKey(record.topic, record.partition, record.offset);
    const held = this.held.get(k);
    if (held === undefined) {
      throw new ClientUsageError(`topic "${record.topic}" partition ${record.partition} offset ${record.offset} is not held by this share consumer (already acknowledged, or acquired by another consumer)`, {
        code: ErrorCode.INVALID_REQUEST, retriable: false, topic: record.topic, partition: record.partition, offset: record.offset,
      });
    }
    const delayMs = Math.round(options.delayMs ?? 0);
    if (!(delayMs >= 0 && delayMs <= maxReleaseDelayMs)) throw new RangeError(`release delayMs must be 0..${maxReleaseDelayMs}, got ${options.delayMs}`);
    this.held.delete(k);
    this.buffer = this.buffer.filter((r) => r !== held.record);
    const promise = new Promise<AckResult>((resolve) => {
      this.pending.push({
        ack: { offset: record.offset, type, releaseDelayMs: type === "release" ? delayMs : 0, reason: truncateReason(options.reason ?? "") },
        topic: record.topic, partition: record.partition, memberId: held.memberId, firstQueuedMs: Date.now(), attempts: 0,
        resolve: (r) => {
          this.keepResult(r);
          resolve(r);
        },
      });
    });
    this.scheduleAckSend(ackLingerMs);
    this.notify(); // room for another record may have opened
    return promise;
  }

  /** Extends the record's lock by the lock duration from now (sent at once); updates record.lockDeadlineMs. */
  async renew(record: ShareRecord): Promise<void> {
    const held = this.held.get(recordKey(record.topic, record.partition, record.offset));
    if (held === undefined) {
      throw new ClientUsageError(`topic "${record.topic}" partition ${record.partition} offset ${record.offset} is not held by this share consumer`, {
        code: ErrorCode.INVALID_REQUEST, retriable: false, topic: record.topic, partition: record.partition, offset: record.offset,
      });
    }
    const result = await withRetry(this.policy, async () => {
      const leader = this.ctx.metadata.leaderFor(record.topic, record.partition);
      const res = await this.ctx.pool.broker(leader.address, "shareAcknowledge", {
        groupId: this.groupId, memberId: held.memberId,
        topics: [{ topic: record.topic, partitions: [{ partition: record.partition, currentLeaderEpoch: leader.leaderEpoch, acknowledgements: [{ ...coalesceAcks([{ offset: record.offset, type: "renew", releaseDelayMs: 0, reason: "" }])[0]!, lockDurationMs: this.lockDurationMs }] }] }],
      });
      const p = res.topics.find((t) => t.topic === record.topic)?.partitions.find((x) => x.partition === record.partition);
      if (p === undefined) throw new RunnelError(`broker ${leader.address} did not answer for topic "${record.topic}" partition ${record.partition}`, { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true, topic: record.topic, partition: record.partition });
      if (p.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(p.errorCode, { topic: record.topic, partition: record.partition, address: leader.address, detail: p.errorMessage, leaderHint: p.currentLeader });
      return p.results[0];
    }, { beforeRetry: (err) => (needsMetadataRefresh(err) ? this.ctx.metadata.refresh([record.topic]).catch(() => undefined) : undefined) });
    if (result !== undefined && result.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      throw errorFromCode(result.errorCode, { topic: record.topic, partition: record.partition, offset: record.offset, detail: result.errorMessage });
    }
    if (result !== undefined && result.lockDeadlineMs > 0n) record.lockDeadlineMs = Number(result.lockDeadlineMs);
  }

  /**
   * Sends every pending acknowledgement now, waits for every one in flight, and returns the outcomes
   * of all acknowledgements since the last flush() (failed runs have `error` set).
   */
  async flush(): Promise<AckResult[]> {
    for (;;) {
      if (this.pending.length > 0) this.sendAcks(true);
      if (this.sending.size === 0 && this.pending.length === 0) break;
      await Promise.race([...this.sending, new Promise((r) => setTimeout(r, ackLingerMs))]);
    }
    const out = this.results.length > maxUnreportedAckResults ? this.results.slice(-maxUnreportedAckResults) : this.results;
    this.results = [];
    return out;
  }

  /** Releases every record not yet acknowledged, flushes, and leaves the group. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.notify();
      // Answers still on the way hold records locked to us: wait for them so they can be released now.
      while (this.fetching.size > 0) await this.waitForChange(ackLingerMs * 10);
      for (const { record } of [...this.held.values()]) void this.acknowledge(record, "release", { reason: "share consumer closed" });
      await this.flush();
      if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
      this.wakeHeartbeat?.();
      await this.heartbeatLoopRunning;
      if (this.memberIdValue !== "") await this.sendHeartbeat(-1).catch(() => undefined);
    })();
    return this.closing;
  }

  // --- fetching ----------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new ClientUsageError("the share consumer is closed", { code: ErrorCode.INVALID_REQUEST, retriable: false });
  }

  private throwPending(): void {
    if (this.fatal !== undefined) throw this.fatal;
    const err = this.errors.shift();
    if (err !== undefined) throw err;
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  private partitionState(topic: string, partition: number): PartitionState {
    const k = tpKey(topic, partition);
    let ps = this.partitions.get(k);
    if (ps === undefined) {
      ps = { topic, partition, failures: 0, backoffUntilMs: 0 };
      this.partitions.set(k, ps);
    }
    return ps;
  }

  /** Starts a ShareFetch at every leader without one outstanding; returns when a backed-off partition may be tried again. */
  private startFetches(maxRecords: number, maxWaitMs: number): number {
    const now = Date.now();
    let nextWakeMs = Infinity;
    const byLeader = new Map<string, Map<string, Array<{ partition: number; currentLeaderEpoch: number }>>>();
    for (const topic of this.topics) {
      const info = this.ctx.metadata.topic(topic);
      if (info === undefined) {
        this.ctx.metadata.refresh([topic]).then(() => this.notify(), () => undefined);
        nextWakeMs = Math.min(nextWakeMs, now + this.policy.initialBackoffMs);
        continue;
      }
      for (const p of info.partitions) {
        const ps = this.partitionState(topic, p.partition);
        if (ps.backoffUntilMs > now) {
          nextWakeMs = Math.min(nextWakeMs, ps.backoffUntilMs);
          continue;
        }
        let leader;
        try {
          leader = this.ctx.metadata.leaderFor(topic, p.partition);
        } catch (err) {
          this.onPartitionError(ps, err);
          nextWakeMs = Math.min(nextWakeMs, ps.backoffUntilMs);
          continue;
        }
        if (this.fetching.has(leader.address)) continue;
        const topics = byLeader.get(leader.address) ?? new Map();
        byLeader.set(leader.address, topics);
        topics.set(topic, [...(topics.get(topic) ?? []), { partition: p.partition, currentLeaderEpoch: leader.leaderEpoch }]);
      }
    }
    const outstanding = [...this.fetching.values()].reduce((a, b) => a + b, 0);
    const room = Math.min(maxRecords, this.maxInFlightRecords - this.held.size - outstanding);
    const leaders = [...byLeader.keys()];
    const budgets = splitRecordBudget(Math.max(0, room), leaders.length, this.budgetRound++);
    leaders.forEach((address, i) => {
      const budget = Math.min(budgets[i] ?? 0, maxRecordsPerShareFetch);
      if (budget <= 0) return;
      void this.fetch(address, byLeader.get(address)!, budget, maxWaitMs);
    });
    return nextWakeMs;
  }

  private async fetch(address: string, topics: Map<string, Array<{ partition: number; currentLeaderEpoch: number }>>, maxRecords: number, maxWaitMs: number): Promise<void> {
    this.fetching.set(address, maxRecords);
    const memberId = this.memberIdValue;
    const leaders = new Map<string, string | undefined>();
    const piggybacked = this.takePending((e) => {
      if (e.memberId !== memberId) return false;
      const k = tpKey(e.topic, e.partition);
      if (!leaders.has(k)) leaders.set(k, this.leaderAddress(e.topic, e.partition));
      return leaders.get(k) === address;
    });
    const request: ShareFetchRequest = {
      groupId: this.groupId, memberId, maxRecords, maxWaitMs: Math.round(maxWaitMs), lockDurationMs: this.lockDurationMs,
      topics: [...topics].map(([topic, partitions]): ShareFetchTopicPart => ({ topic, partitions })),
      acknowledgements: this.ackTopics(piggybacked),
      // Only the acquired records' bytes: a member often takes a few records of a large batch.
      acquiredRecordsOnly: true,
    };
    try {
      const res = await this.ctx.pool.broker(address, "shareFetch", request, this.ctx.requestTimeoutMs + maxWaitMs);
      const answered = new Set<AckEntry>();
      for (const t of res.topics) {
        for (const p of t.partitions) {
          const forPartition = piggybacked.filter((e) => e.topic === t.topic && e.partition === p.partition);
          this.onAckResults(t.topic, p.partition, forPartition, p.errorCode, p.errorMessage, p.acknowledgeResults, address, p.currentLeader);
          for (const e of forPartition) answered.add(e);
          if (topics.get(t.topic)?.some((x) => x.partition === p.partition)) this.onFetchedPartition(t.topic, p, memberId, address);
        }
      }
      const unanswered = piggybacked.filter((e) => !answered.has(e));
      if (unanswered.length > 0) this.requeue(unanswered, new RunnelError(`broker ${address} did not answer for some acknowledged partitions`, { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true, address }));
    } catch (err) {
      this.requeue(piggybacked, err);
      for (const [topic, list] of topics) for (const p of list) this.onPartitionError(this.partitionState(topic, p.partition), err);
    } finally {
      this.fetching.delete(address);
      this.notify();
    }
  }

  private leaderAddress(topic: string, partition: number): string | undefined {
    try {
      return this.ctx.metadata.leaderFor(topic, partition).address;
    } catch {
      return undefined;
    }
  }

  private onFetchedPartition(topic: string, p: ShareFetchPartitionResponse, memberId: string, address: string): void {
    const ps = this.partitionState(topic, p.partition);
    if (p.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      this.onPartitionError(ps, errorFromCode(p.errorCode, { topic, partition: p.partition, address, detail: p.errorMessage, leaderHint: p.currentLeader }));
      return;
    }
    ps.failures = 0;
    if (p.acquired.length === 0) return;
    const { records, missing, batchError } = acquiredFromBatches(p.batches, p.acquired);
    const lockDeadlineMs = Number(p.lockDeadlineMs);
    for (const r of records) {
      const record: ShareRecord = {
        topic, partition: p.partition, offset: r.offset, key: buf(r.key), value: buf(r.value),
        headers: r.headers.map((h) => ({ key: h.key, value: buf(h.value)! })),
        timestamp: Number(r.timestamp), leaderEpoch: r.leaderEpoch, deliveryCount: r.deliveryCount, lockDeadlineMs,
      };
      const k = recordKey(topic, p.partition, r.offset);
      if (this.held.has(k)) continue; // a duplicate answer must not hand a record out twice
      this.held.set(k, { record, memberId });
      this.buffer.push(record);
    }
    if (missing.length > 0) {
      // Records this member holds but cannot read: give them back rather than let their locks run out.
      const reason = batchError !== undefined ? `corrupt batch: ${batchError}` : "record missing from the share fetch answer";
      for (const offset of missing) {
        this.pending.push({
          ack: { offset, type: "release", releaseDelayMs: 0, reason }, topic, partition: p.partition, memberId,
          firstQueuedMs: Date.now(), attempts: 0, resolve: (r) => this.keepResult(r),
        });
      }
      this.scheduleAckSend(ackLingerMs);
      if (batchError !== undefined) {
        this.errors.push(new CorruptBatchError(`corrupt batch from ${address} in topic "${topic}" partition ${p.partition}: ${batchError}`, {
          code: ErrorCode.CORRUPT_BATCH, retriable: false, topic, partition: p.partition, address,
        }));
      }
    }
  }

  private onPartitionError(ps: PartitionState, err: unknown): void {
    const e = err instanceof RunnelError ? err : new RunnelError(String(err), { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true });
    if (!e.retriable && !needsMetadataRefresh(e)) {
      // Retrying cannot help (the broker does not serve share groups, the request is invalid): tell poll's caller.
      ps.backoffUntilMs = Date.now() + this.policy.maxBackoffMs;
      if (!this.errors.some((x) => x.message === e.message)) this.errors.push(e);
      return;
    }
    ps.failures += 1;
    ps.backoffUntilMs = Date.now() + backoffMs(this.policy, ps.failures, Math.random());
    if (needsMetadataRefresh(e)) this.ctx.metadata.refresh([ps.topic]).then(() => this.notify(), () => undefined);
  }

  // --- acknowledgements --------------------------------------------------------------------------

  private keepResult(r: AckResult): void {
    this.results.push(r);
    // Trimmed in steps (to the newest maxUnreportedAckResults once twice that many are kept): trimming
    // on every push moved the whole array once per acknowledgement.
    if (this.results.length >= 2 * maxUnreportedAckResults) this.results = this.results.slice(-maxUnreportedAckResults);
  }

  private takePending(filter: (e: AckEntry) => boolean): AckEntry[] {
    const taken: AckEntry[] = [];
    const kept: AckEntry[] = [];
    for (const e of this.pending) (filter(e) ? taken : kept).push(e);
    this.pending = kept;
    return taken;
  }

  /** Acknowledgements grouped by topic and partition, coalesced into runs. */
  private ackTopics(entries: readonly AckEntry[]): ShareAcknowledgeTopic[] {
    const byTopic = new Map<string, Map<number, AckEntry[]>>();
    for (const e of entries) {
      const parts = byTopic.get(e.topic) ?? new Map<number, AckEntry[]>();
      byTopic.set(e.topic, parts);
      const list = parts.get(e.partition);
      if (list === undefined) parts.set(e.partition, [e]);
      else list.push(e);
    }
    return [...byTopic].map(([topic, parts]) => ({
      topic,
      partitions: [...parts].map(([partition, list]) => ({
        partition,
        currentLeaderEpoch: this.ctx.metadata.topic(topic)?.partitions[partition]?.leaderEpoch,
        acknowledgements: coalesceAcks(list.map((e) => e.ack)),
      })),
    }));
  }

  private scheduleAckSend(delayMs: number): void {
    if (this.lingerTimer !== undefined) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      this.sendAcks(false);
    }, delayMs);
  }

  /** Sends pending acknowledgements in ShareAcknowledge requests, one per (leader, member id). */
  private sendAcks(force: boolean): void {
    const now = Date.now();
    const groups = new Map<string, { address: string; memberId: string; entries: AckEntry[] }>();
    let waitingForLeader = false;
    for (const e of this.takePending(() => true)) {
      const address = this.leaderAddress(e.topic, e.partition);
      const ps = this.partitionState(e.topic, e.partition);
      if (address === undefined && now - e.firstQueuedMs > this.policy.maxTotalMs) {
        e.resolve({
          topic: e.topic, partition: e.partition, firstOffset: e.ack.offset, lastOffset: e.ack.offset, type: e.ack.type,
          error: new RunnelError(`no known leader for topic "${e.topic}" partition ${e.partition} to acknowledge offset ${e.ack.offset}`, { code: ErrorCode.LEADER_NOT_AVAILABLE, retriable: true, topic: e.topic, partition: e.partition, offset: e.ack.offset }),
        });
        continue;
      }
      if (address === undefined || (!force && ps.backoffUntilMs > now && e.attempts > 0)) {
        this.pending.push(e);
        waitingForLeader = true;
        if (address === undefined) this.ctx.metadata.refresh([e.topic]).catch(() => undefined);
        continue;
      }
      const k = `${address}\u0000${e.memberId}`;
      const g = groups.get(k) ?? { address, memberId: e.memberId, entries: [] };
      groups.set(k, g);
      g.entries.push(e);
    }
    for (const g of groups.values()) {
      const p = this.sendAckRequest(g.address, g.memberId, g.entries).finally(() => this.sending.delete(p));
      this.sending.add(p);
    }
    if (waitingForLeader) this.scheduleAckSend(this.policy.initialBackoffMs);
  }

  private async sendAckRequest(address: string, memberId: string, entries: AckEntry[]): Promise<void> {
    for (const e of entries) e.attempts += 1;
    const topics = this.ackTopics(entries);
    try {
      const res = await this.ctx.pool.broker(address, "shareAcknowledge", { groupId: this.groupId, memberId, topics });
      const answered = new Set<AckEntry>();
      for (const t of res.topics) {
        for (const p of t.partitions) {
          const forPartition = entries.filter((e) => e.topic === t.topic && e.partition === p.partition);
          this.onAckResults(t.topic, p.partition, forPartition, p.errorCode, p.errorMessage, p.results, address, p.currentLeader);
          for (const e of forPartition) answered.add(e);
        }
      }
      const unanswered = entries.filter((e) => !answered.has(e));
      if (unanswered.length > 0) this.requeue(unanswered, new RunnelError(`broker ${address} did not answer for some acknowledged partitions`, { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true, address }));
    } catch (err) {
      this.requeue(entries, err);
    }
  }

  /** Applies a partition's acknowledgement outcomes: resolves each entry with its run's result. */
  private onAckResults(
    topic: string, partition: number, entries: AckEntry[], errorCode: ErrorCode, errorMessage: string,
    results: readonly ShareAcknowledgeResult[], address: string, leaderHint: { leaderId: number; leaderEpoch: number } | undefined,
  ): void {
    if (entries.length === 0) return;
    if (errorCode !== ErrorCode.ERROR_CODE_NONE) {
      const err = errorFromCode(errorCode, { topic, partition, address, detail: errorMessage, leaderHint });
      if (needsMetadataRefresh(err)) this.onPartitionError(this.partitionState(topic, partition), err);
      this.requeue(entries, err);
      return;
    }
    let run: ShareAcknowledgeResult | undefined;
    for (const e of entries) {
      // Entries usually come in offset order, so the run of the one before usually holds this one too.
      if (run === undefined || e.ack.offset < run.firstOffset || e.ack.offset > run.lastOffset) {
        run = results.find((r) => e.ack.offset >= r.firstOffset && e.ack.offset <= r.lastOffset);
      }
      const error = run === undefined
        ? new RunnelError(`broker ${address} gave no outcome for offset ${e.ack.offset} of topic "${topic}" partition ${partition}`, { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: false, topic, partition, offset: e.ack.offset, address })
        : run.errorCode === ErrorCode.ERROR_CODE_NONE ? undefined
        : errorFromCode(run.errorCode, { topic, partition, offset: e.ack.offset, address, detail: run.errorMessage });
      e.resolve({
        topic, partition, firstOffset: run?.firstOffset ?? e.ack.offset, lastOffset: run?.lastOffset ?? e.ack.offset, type: e.ack.type, error,
        ...(run !== undefined && run.lockDeadlineMs > 0n ? { lockDeadlineMs: Number(run.lockDeadlineMs) } : {}),
      });
    }
  }

  /** Puts entries back for another try after a leader change or a lost answer, or resolves them failed once retrying cannot help. */
  private requeue(entries: AckEntry[], err: unknown): void {
    if (entries.length === 0) return;
    const e0 = err instanceof RunnelError ? err : new RunnelError(String(err), { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true, outcomeUnknown: true });
    const now = Date.now();
    for (const e of entries) {
      const give = (!e0.retriable && !needsMetadataRefresh(e0)) || now - e.firstQueuedMs > this.policy.maxTotalMs;
      if (give) {
        e.resolve({ topic: e.topic, partition: e.partition, firstOffset: e.ack.offset, lastOffset: e.ack.offset, type: e.ack.type, error: e0 });
      } else {
        this.pending.push(e);
        if (needsMetadataRefresh(e0)) this.ctx.metadata.refresh([e.topic]).catch(() => undefined);
      }
    }
    if (this.pending.length > 0) this.scheduleAckSend(backoffMs(this.policy, Math.max(1, ...entries.map((e) => e.attempts)), Math.random()));
  }

  // --- membership --------------------------------------------------------------------------------

  private async heartbeatLoop(): Promise<void> {
    while (!this.closed) {
      try {
        const res = await this.sendHeartbeat(this.memberEpoch);
        if (res.errorCode === ErrorCode.UNKNOWN_MEMBER_ID || res.errorCode === ErrorCode.FENCED_MEMBER_EPOCH) {
          // Records acquired under the old id keep it for their acknowledgements (the locks are held by it).
          this.memberIdValue = "";
          this.memberEpoch = 0;
          this.heartbeatSoon = true;
        } else if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) {
          const err = errorFromCode(res.errorCode, { detail: res.errorMessage });
          if (!err.retriable) {
            this.fatal = err;
            this.notify();
          }
        } else {
          const joined = this.memberIdValue === "";
          this.memberIdValue = res.memberId;
          this.memberEpoch = res.memberEpoch;
          if (res.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = res.heartbeatIntervalMs;
          if (joined) this.notify();
        }
      } catch (err) {
        if (err instanceof RunnelError && !err.retriable && !needsMetadataRefresh(err)) {
          this.fatal = err;
          this.notify();
        }
        // Controller unreachable or moving: keep working with the locks we hold and try again.
        await this.ctx.metadata.refresh().catch(() => undefined);
      }
      if (this.closed || this.fatal !== undefined) break;
      const waitMs = this.heartbeatSoon ? 0 : this.heartbeatIntervalMs;
      this.heartbeatSoon = false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        timer.unref?.();
        this.wakeHeartbeat = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeHeartbeat = undefined;
    }
  }

  private async sendHeartbeat(memberEpoch: number) {
    const address = await this.ctx.metadata.controllerAddress();
    return this.ctx.pool.controller(address, "shareGroupHeartbeat", {
      groupId: this.groupId, memberId: this.memberIdValue, memberEpoch,
      subscribedTopicNames: memberEpoch === 0 ? [...this.topics] : [], clientId: this.clientId,
    }, shareHeartbeatTimeoutMs);
  }
}
