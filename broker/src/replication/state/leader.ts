// The leader side of one partition's replication: follower progress, the high watermark, ISR
// shrink/expand proposals and acks=all completion. Pure and deterministic: the adapter feeds it
// fetches, local appends/flushes, controller answers and the time, and acts on what it returns.
//
// Durability order, written once: a batch is appended (localAppend), then flushed (localFlushed /
// follower flushedOffset) and only then counts toward the high watermark; acks=all answers follow the
// high watermark. Under "memory" durability the append alone counts (Kafka's trade).
import { ErrorCode, type Durability, type EpochEndOffset } from "@runnel/proto";
import { assignEpoch, checkEpochEntries, divergence, endOffsetForEpoch, type EpochEntries, type EpochEntry } from "./epochs.js";
import { invariant, maxBigint, minBigint, partitionName, PartitionInvariantError } from "./errors.js";

/** Pending acks=all produce requests one partition may hold; beyond it admission answers THROTTLED. */
export const maxPendingAcksPerPartition = 10_000;
/** Kafka's replica.lag.time.max.ms default. */
export const defaultReplicaLagTimeMaxMs = 30_000;

export interface LeaderStateInit {
  topic: string;
  partition: number;
  /** This broker's id; it must be in isr. */
  localReplicaId: number;
  leaderEpoch: number;
  partitionEpoch: number;
  /** Every assigned replica, leader included. */
  replicas: readonly number[];
  isr: readonly number[];
  /** The local epoch cache; the current leader epoch is assigned at logEndOffset here. */
  epochEntries: EpochEntries;
  logEndOffset: bigint;
  flushedOffset: bigint;
  /** The high watermark this replica knew as a follower (or from its checkpoint). */
  highWatermark: bigint;
  durability: Durability;
  minInsyncReplicas: number;
  replicaLagTimeMaxMs: number;
  nowMs: number;
}

export interface FollowerFetch {
  replicaId: number;
  /** The leader epoch the follower believes current (KIP-320 fencing). */
  currentLeaderEpoch: number;
  /** The follower's log end offset. */
  fetchOffset: bigint;
  /** Every offset below this is fsynced on the follower. */
  flushedOffset: bigint;
  /** Epoch of the follower's last batch, -1 when its log is empty. */
  lastFetchedEpoch: number;
  nowMs: number;
}

/** An AlterPartition to send to the controller: compare-and-set on leaderEpoch and partitionEpoch. */
export interface IsrProposal {
  kind: "expand" | "shrink";
  /** The replicas added or removed. */
  replicaIds: number[];
  newIsr: number[];
  leaderEpoch: number;
  partitionEpoch: number;
}

/** The answer for one pending acks=all request: ERROR_CODE_NONE means committed. */
export interface AckResult {
  id: number;
  errorCode: ErrorCode;
}

export interface LeaderDecision {
  highWatermark: bigint;
  hwChanged: boolean;
  /** Set when an ISR change should be sent to the controller now. */
  isrProposal?: IsrProposal;
  /** acks=all requests answered by this step, in arrival order. */
  acks: AckResult[];
}

export interface FollowerFetchDecision extends LeaderDecision {
  /** NONE, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, OFFSET_OUT_OF_RANGE or INVALID_REQUEST. */
  errorCode: ErrorCode;
  errorMessage?: string;
  /** The follower must truncate (FollowerState.decideTruncation) before fetching on; send no batches. */
  divergingEpoch?: EpochEndOffset;
}

export interface OffsetForLeaderEpochAnswer {
  errorCode: ErrorCode;
  epochEndOffset: EpochEndOffset;
}

interface FollowerProgress {
  /** -1 until the follower fetches from this leader. */
  logEndOffset: bigint;
  flushedOffset: bigint;
  lastCaughtUpTimeMs: number;
  lastFetchLeaderLogEndOffset: bigint;
  lastFetchTimeMs: number;
}

interface PendingAck {
  lastOffset: bigint;
  deadlineMs: number;
}

const unknownOffset = -1n;

export class LeaderState {
  readonly topic: string;
  readonly partition: number;
  readonly localReplicaId: number;
  readonly leaderEpoch: number;
  /** Offset where this leadership began: a follower below it has not seen the current epoch. */
  readonly leaderEpochStartOffset: bigint;
  readonly replicas: readonly number[];
  readonly durability: Durability;
  readonly minInsyncReplicas: number;
  readonly replicaLagTimeMaxMs: number;
  private readonly name: string;
  private isrNow: number[];
  private partitionEpochNow: number;
  private inFlight: IsrProposal | undefined;
  private entries: EpochEntry[];
  private logEnd: bigint;
  private flushed: bigint;
  private hw: bigint;
  private nowMs: number;
  private resigned = false;
  private readonly progress = new Map<number, FollowerProgress>();
  private readonly pending = new Map<number, PendingAck>();

  constructor(init: LeaderStateInit) {
    this.topic = init.topic;
    this.partition = init.partition;
    this.name = partitionName(init.topic, init.partition);
    this.localReplicaId = init.localReplicaId;
    this.leaderEpoch = init.leaderEpoch;
    this.replicas = [...init.replicas];
    this.durability = init.durability;
    this.minInsyncReplicas = init.minInsyncReplicas;
    this.replicaLagTimeMaxMs = init.replicaLagTimeMaxMs;
    this.partitionEpochNow = init.partitionEpoch;
    this.logEnd = init.logEndOffset;
    this.flushed = init.flushedOffset;
    this.hw = init.highWatermark;
    this.nowMs = init.nowMs;
    this.checkIsr(init.isr);
    this.isrNow = [...init.isr];
    invariant(init.flushedOffset >= 0n && init.flushedOffset <= init.logEndOffset, this.name, () =>
      `flushed offset ${init.flushedOffset} outside [0, log end offset ${init.logEndOffset}]`);
    invariant(init.highWatermark >= 0n && init.highWatermark <= this.localCommittableOffset(), this.name, () =>
      `new leader's high watermark ${init.highWatermark} is above its ${this.durability === "fsync" ? "flushed" : "log end"} offset ${this.localCommittableOffset()}`);
    checkEpochEntries(init.epochEntries, this.name);
    const previous = init.epochEntries[init.epochEntries.length - 1];
    invariant(previous === undefined || previous.epoch <= init.leaderEpoch, this.name, () =>
      `leader epoch ${init.leaderEpoch} is older than epoch ${previous!.epoch} already in the log`);
    this.entries = assignEpoch(init.epochEntries, init.leaderEpoch, init.logEndOffset, this.name);
    this.leaderEpochStartOffset = init.logEndOffset;
    for (const id of this.replicas) {
      if (id === this.localReplicaId) continue;
      // Kafka's resetReplicaState: ISR members get a fresh lag allowance; the others have none.
      this.progress.set(id, {
        logEndOffset: unknownOffset,
        flushedOffset: unknownOffset,
        lastCaughtUpTimeMs: this.isrNow.includes(id) ? init.nowMs : Number.NEGATIVE_INFINITY,
        lastFetchLeaderLogEndOffset: unknownOffset,
        lastFetchTimeMs: Number.NEGATIVE_INFINITY,
      });
    }
  }

  get highWatermark(): bigint {
    return this.hw;
  }
  get logEndOffset(): bigint {
    return this.logEnd;
  }
  get flushedOffset(): bigint {
    return this.flushed;
  }
  get partitionEpoch(): number {
    return this.partitionEpochNow;
  }
  /** The ISR the controller has committed. */
  get isr(): readonly number[] {
    return this.isrNow;
  }
  /** The ISR plus a replica whose addition is in flight: the set the high watermark waits for. */
  get maximalIsr(): readonly number[] {
    return this.inFlight?.kind === "expand" ? this.inFlight.newIsr : this.isrNow;
  }
  get isrChangeInFlight(): IsrProposal | undefined {
    return this.inFlight;
  }
  /** The epoch cache including this leadership's entry; the adapter persists it. */
  get epochEntries(): EpochEntries {
    return this.entries;
  }
  get pendingAckCount(): number {
    return this.pending.size;
  }
  /** The earliest acks=all deadline, for the adapter's timer; undefined when none is pending. */
  nextDeadlineMs(): number | undefined {
    let next: number | undefined;
    for (const p of this.pending.values()) if (next === undefined || p.deadlineMs < next) next = p.deadlineMs;
    return next;
  }

  /** Whether an acks=all produce may be appended now: NONE, NOT_ENOUGH_REPLICAS or THROTTLED. */
  acksAllAdmission(): ErrorCode {
    this.checkActive();
    if (this.isrNow.length < this.minInsyncReplicas) return ErrorCode.NOT_ENOUGH_REPLICAS;
    if (this.pending.size >= maxPendingAcksPerPartition) return ErrorCode.THROTTLED;
    return ErrorCode.ERROR_CODE_NONE;
  }

  /** acksAllAdmission() === NONE. */
  canAcceptAcksAll(): boolean {
    return this.acksAllAdmission() === ErrorCode.ERROR_CODE_NONE;
  }

  /** A follower's fetch: fencing, the divergence check, then progress, ISR expansion and the HW. */
  followerFetch(fetch: FollowerFetch): FollowerFetchDecision {
    this.checkActive();
    this.advanceClock(fetch.nowMs);
    const problem = this.fetchProblem(fetch);
    if (problem !== undefined) return { ...this.decision(false, []), ...problem };
    const diverging = divergence(this.entries, this.logEnd, fetch.fetchOffset, fetch.lastFetchedEpoch);
    // A diverging follower's offsets describe records we do not have: they must not count for anything.
    if (diverging !== undefined) return { ...this.decision(false, []), errorCode: ErrorCode.ERROR_CODE_NONE, divergingEpoch: diverging };
    if (fetch.fetchOffset > this.logEnd) {
      return {
        ...this.decision(false, []),
        errorCode: ErrorCode.OFFSET_OUT_OF_RANGE,
        errorMessage: `fetch offset ${fetch.fetchOffset} is beyond the leader's log end offset ${this.logEnd}`,
      };
    }
    const p = this.progress.get(fetch.replicaId)!;
    p.logEndOffset = fetch.fetchOffset;
    p.flushedOffset = fetch.flushedOffset;
    // Kafka's Replica.updateFetchState: caught up now if it reached our end, or as of its previous
    // fetch if it reached what our end was then (so a steady stream of appends does not look like lag).
    const reached = this.committableOffsetOf(p);
    if (reached >= this.logEnd) p.lastCaughtUpTimeMs = Math.max(p.lastCaughtUpTimeMs, fetch.nowMs);
    else if (reached >= p.lastFetchLeaderLogEndOffset && p.lastFetchLeaderLogEndOffset !== unknownOffset) {
      p.lastCaughtUpTimeMs = Math.max(p.lastCaughtUpTimeMs, p.lastFetchTimeMs);
    }
    p.lastFetchLeaderLogEndOffset = this.logEnd;
    p.lastFetchTimeMs = fetch.nowMs;

    let isrProposal: IsrProposal | undefined;
    if (this.inFlight === undefined && !this.isrNow.includes(fetch.replicaId) && this.isInSync(fetch.replicaId, fetch)) {
      isrProposal = this.propose("expand", [fetch.replicaId], this.replicas.filter((id) => id === fetch.replicaId || this.isrNow.includes(id)));
    }
    const acks: AckResult[] = [];
    const hwChanged = this.maybeIncrementHighWatermark(acks);
    return { ...this.decision(hwChanged, acks), errorCode: ErrorCode.ERROR_CODE_NONE, ...(isrProposal ? { isrProposal } : {}) };
  }

  /** The local log grew (a produce was appended). */
  localAppend(append: { logEndOffset: bigint }): LeaderDecision {
    this.checkActive();
    invariant(append.logEndOffset >= this.logEnd, this.name, () =>
      `leader log end offset moved back from ${this.logEnd} to ${append.logEndOffset}`);
    this.logEnd = append.logEndOffset;
    const acks: AckResult[] = [];
    return this.decision(this.maybeIncrementHighWatermark(acks), acks);
  }

  /** Everything below flushedOffset is fsynced on the leader. */
  localFlushed(flushedOffset: bigint): LeaderDecision {
    this.checkActive();
    invariant(flushedOffset >= this.flushed && flushedOffset <= this.logEnd, this.name, () =>
      `leader flushed offset ${flushedOffset} must be in [${this.flushed}, log end offset ${this.logEnd}]`);
    this.flushed = flushedOffset;
    const acks: AckResult[] = [];
    return this.decision(this.maybeIncrementHighWatermark(acks), acks);
  }

  /** Time passes: acks=all deadlines expire and lagging ISR members are proposed for removal. */
  tick(nowMs: number): LeaderDecision {
    this.checkActive();
    this.advanceClock(nowMs);
    const acks: AckResult[] = [];
    for (const [id, p] of this.pending) {
      if (p.deadlineMs <= nowMs) {
        this.pending.delete(id);
        acks.push({ id, errorCode: ErrorCode.REQUEST_TIMED_OUT });
      }
    }
    let isrProposal: IsrProposal | undefined;
    if (this.inFlight === undefined) {
      const outOfSync = this.isrNow.filter((id) => id !== this.localReplicaId && !this.isCaughtUp(id, nowMs));
      if (outOfSync.length > 0) {
        isrProposal = this.propose("shrink", outOfSync, this.isrNow.filter((id) => !outOfSync.includes(id)));
      }
    }
    return { ...this.decision(false, acks), ...(isrProposal ? { isrProposal } : {}) };
  }

  /**
   * The controller committed a new ISR (our proposal or its own change, e.g. a fenced broker removed).
   * Stale or repeated notices (partition epoch not newer) are ignored.
   */
  isrChanged(newIsr: readonly number[], partitionEpoch: number): LeaderDecision {
    this.checkActive();
    if (partitionEpoch <= this.partitionEpochNow) return this.decision(false, []);
    this.checkIsr(newIsr);
    for (const id of newIsr) {
      const p = this.progress.get(id);
      // Added by the controller without our fetch evidence: give it a full lag allowance from now.
      if (p !== undefined && !this.isrNow.includes(id)) p.lastCaughtUpTimeMs = Math.max(p.lastCaughtUpTimeMs, this.nowMs);
    }
    this.isrNow = [...newIsr];
    this.partitionEpochNow = partitionEpoch;
    this.inFlight = undefined;
    const acks: AckResult[] = [];
    if (this.isrNow.length < this.minInsyncReplicas) this.failAllPending(ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, acks);
    return this.decision(this.maybeIncrementHighWatermark(acks), acks);
  }

  /** The controller refused the in-flight proposal (stale partition epoch) or it could not be sent. */
  isrProposalFailed(): LeaderDecision {
    this.checkActive();
    this.inFlight = undefined;
    const acks: AckResult[] = [];
    return this.decision(this.maybeIncrementHighWatermark(acks), acks);
  }

  /**
   * Starts waiting for an acks=all batch appended (localAppend) with last offset lastOffset. Call
   * acksAllAdmission before appending; the ISR may still shrink while the append is in progress.
   */
  addPendingAck(ack: { id: number; lastOffset: bigint; deadlineMs: number }): LeaderDecision {
    this.checkActive();
    invariant(ack.lastOffset < this.logEnd, this.name, () =>
      `acks=all request ${ack.id} waits for offset ${ack.lastOffset}, not yet appended (log end offset ${this.logEnd})`);
    invariant(!this.pending.has(ack.id), this.name, () => `acks=all request id ${ack.id} is already pending`);
    let errorCode: ErrorCode | undefined;
    if (this.isrNow.length < this.minInsyncReplicas) errorCode = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND;
    else if (this.hw > ack.lastOffset) errorCode = ErrorCode.ERROR_CODE_NONE;
    // Admission raced with other requests: the batch is in the log, so the honest answer is
    // "outcome unknown", which is what a timeout says.
    else if (this.pending.size >= maxPendingAcksPerPartition) errorCode = ErrorCode.REQUEST_TIMED_OUT;
    if (errorCode !== undefined) return this.decision(false, [{ id: ack.id, errorCode }]);
    this.pending.set(ack.id, { lastOffset: ack.lastOffset, deadlineMs: ack.deadlineMs });
    return this.decision(false, []);
  }

  /** KIP-279's OffsetForLeaderEpoch on the leader, with KIP-320 fencing. */
  offsetForLeaderEpoch(request: { leaderEpoch: number; currentLeaderEpoch: number }): OffsetForLeaderEpochAnswer {
    this.checkActive();
    const fenced = this.epochFencing(request.currentLeaderEpoch);
    if (fenced !== undefined) return { errorCode: fenced.errorCode, epochEndOffset: { leaderEpoch: -1, endOffset: -1n } };
    return { errorCode: ErrorCode.ERROR_CODE_NONE, epochEndOffset: endOffsetForEpoch(this.entries, request.leaderEpoch, this.logEnd) };
  }

  /** This replica stops leading: every pending acks=all request is answered with errorCode. */
  resign(errorCode: ErrorCode = ErrorCode.NOT_LEADER): AckResult[] {
    this.checkActive();
    this.resigned = true;
    const acks: AckResult[] = [];
    this.failAllPending(errorCode, acks);
    return acks;
  }

  private decision(hwChanged: boolean, acks: AckResult[]): LeaderDecision {
    return { highWatermark: this.hw, hwChanged, acks };
  }

  private propose(kind: IsrProposal["kind"], replicaIds: number[], newIsr: number[]): IsrProposal {
    this.inFlight = { kind, replicaIds, newIsr, leaderEpoch: this.leaderEpoch, partitionEpoch: this.partitionEpochNow };
    return this.inFlight;
  }

  private localCommittableOffset(): bigint {
    return this.durability === "fsync" ? this.flushed : this.logEnd;
  }

  /** What a replica's progress counts for toward the HW: flushed under fsync, appended under memory. */
  private committableOffsetOf(p: FollowerProgress): bigint {
    return this.durability === "fsync" ? p.flushedOffset : p.logEndOffset;
  }

  /** Kafka's isFollowerInSync, measured in committable offsets and requiring the current epoch. */
  private isInSync(replicaId: number, fetch: FollowerFetch): boolean {
    const p = this.progress.get(replicaId)!;
    return fetch.currentLeaderEpoch === this.leaderEpoch && this.committableOffsetOf(p) >= this.hw && p.logEndOffset >= this.leaderEpochStartOffset;
  }

  /** Kafka's isCaughtUp: at our log end, or caught up within the lag allowance. */
  private isCaughtUp(replicaId: number, nowMs: number): boolean {
    const p = this.progress.get(replicaId);
    if (p === undefined) return false;
    return this.committableOffsetOf(p) >= this.logEnd || nowMs - p.lastCaughtUpTimeMs <= this.replicaLagTimeMaxMs;
  }

  /** HW = min over the maximal ISR of committable offsets; never decreases. Completes acks. */
  private maybeIncrementHighWatermark(acks: AckResult[]): boolean {
    let candidate = this.localCommittableOffset();
    for (const id of this.maximalIsr) {
      if (id === this.localReplicaId) continue;
      const p = this.progress.get(id);
      candidate = minBigint(candidate, p === undefined ? unknownOffset : this.committableOffsetOf(p));
    }
    const previous = this.hw;
    this.hw = maxBigint(this.hw, candidate);
    invariant(this.hw <= this.localCommittableOffset() && this.hw <= this.logEnd, this.name, () =>
      `high watermark ${this.hw} is above the leader's log end offset ${this.logEnd} or flushed offset ${this.flushed}`);
    for (const [id, p] of this.pending) {
      if (p.lastOffset < this.hw) {
        this.pending.delete(id);
        acks.push({ id, errorCode: ErrorCode.ERROR_CODE_NONE });
      }
    }
    return this.hw !== previous;
  }

  private failAllPending(errorCode: ErrorCode, acks: AckResult[]): void {
    for (const id of this.pending.keys()) acks.push({ id, errorCode });
    this.pending.clear();
  }

  private epochFencing(currentLeaderEpoch: number): { errorCode: ErrorCode; errorMessage: string } | undefined {
    if (currentLeaderEpoch < this.leaderEpoch) {
      return { errorCode: ErrorCode.FENCED_LEADER_EPOCH, errorMessage: `leader epoch ${currentLeaderEpoch} is older than the current ${this.leaderEpoch}` };
    }
    if (currentLeaderEpoch > this.leaderEpoch) {
      return { errorCode: ErrorCode.UNKNOWN_LEADER_EPOCH, errorMessage: `leader epoch ${currentLeaderEpoch} is newer than this leader's ${this.leaderEpoch}` };
    }
    return undefined;
  }

  private fetchProblem(f: FollowerFetch): { errorCode: ErrorCode; errorMessage: string } | undefined {
    if (f.replicaId === this.localReplicaId || !this.replicas.includes(f.replicaId)) {
      return { errorCode: ErrorCode.INVALID_REQUEST, errorMessage: `broker ${f.replicaId} is not a follower of ${this.name}` };
    }
    const fenced = this.epochFencing(f.currentLeaderEpoch);
    if (fenced !== undefined) return fenced;
    if (f.fetchOffset < 0n || f.flushedOffset < 0n || f.flushedOffset > f.fetchOffset || f.lastFetchedEpoch < -1) {
      return {
        errorCode: ErrorCode.INVALID_REQUEST,
        errorMessage: `fetch offset ${f.fetchOffset}, flushed offset ${f.flushedOffset}, last fetched epoch ${f.lastFetchedEpoch}: need 0 <= flushed <= fetch offset and epoch >= -1`,
      };
    }
    return undefined;
  }

  private checkIsr(isr: readonly number[]): void {
    invariant(isr.includes(this.localReplicaId), this.name, () => `ISR [${isr.join(",")}] does not contain the leader ${this.localReplicaId}`);
    invariant(isr.every((id) => this.replicas.includes(id)) && new Set(isr).size === isr.length, this.name, () =>
      `ISR [${isr.join(",")}] is not a set of assigned replicas [${this.replicas.join(",")}]`);
  }

  private advanceClock(nowMs: number): void {
    invariant(nowMs >= this.nowMs, this.name, () => `clock went back from ${this.nowMs} ms to ${nowMs} ms (use a monotonic clock)`);
    this.nowMs = nowMs;
  }

  private checkActive(): void {
    if (this.resigned) throw new PartitionInvariantError(this.name, `leader state for epoch ${this.leaderEpoch} used after it resigned`);
  }
}
