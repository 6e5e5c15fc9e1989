// One partition replica on this broker: its log, its role in the current leader epoch (leader,
// follower or offline), idempotent-producer state, pending acks=all produces and parked long-poll
// fetches. The durability order is written here once:
//   append -> (flushed, for fsync topics) -> counts toward the high watermark -> respond.
// The replication rules (ISR, high watermark, divergence) are the pure LeaderState/FollowerState in
// ../replication/state; this class feeds them what happened and carries out what they decide.
import { ErrorCode, type PartitionState, type RecordBatch, type RecordBatchHeader, type TopicConfig } from "@runnel/proto";
import type { Logger } from "@runnel/common";
import type { LogConfig, PartitionLog, ReadResult } from "../log/index.js";
import { type AckResult, type LeaderDecision, LeaderState, FollowerState } from "../replication/state/index.js";
import { batchProblem } from "./validate.js";
import { ProducerStateTable, type SequenceCheck } from "./producer-state.js";
import { Waiters } from "./waiters.js";

export type Role = "leader" | "follower" | "offline";

export interface ProduceOutcome {
  errorCode: ErrorCode;
  errorMessage: string;
  baseOffset: bigint;
  logAppendTime: bigint;
}

export type AcksMode = "none" | "leader" | "all";

/**
 * How long an idempotent batch that arrives ahead of its predecessors waits for them. A client keeps up
 * to five batches per partition in flight as separate gRPC calls, and HTTP/2 may deliver those out of
 * order; refusing them at once would turn every reordering into a retry round trip.
 */
export const maxSequenceGapWaitMs = 2_000;
/** Batches that may wait for a sequence gap at once on one partition; more are refused at once. */
export const maxBatchesWaitingForSequencePerPartition = 1_000;

/** What a partition needs from the broker around it. */
export interface PartitionHooks {
  nowMs(): number;
  /** Asks the group-commit flusher for a flush covering everything this partition appended so far. */
  requestFlush(partition: Partition): void;
  /** Sends an ISR change to the controller (compare-and-set); the answer comes back via isrChanged/isrProposalFailed. */
  proposeIsr(partition: Partition, proposal: NonNullable<LeaderDecision["isrProposal"]>): void;
  logger: Logger;
}

export function logConfigOf(config: TopicConfig): LogConfig {
  return { retentionMs: config.retentionMs, retentionBytes: config.retentionBytes, maxMessageBytes: config.maxMessageBytes };
}

export class Partition {
  role: Role = "offline";
  leaderEpoch = -1;
  /** The controller's view: replicas, ISR, leader, partition epoch. */
  state: PartitionState | undefined;
  leader: LeaderState | undefined;
  follower: FollowerState | undefined;
  readonly producers = new ProducerStateTable();
  /** Woken when the high watermark moves (consumers wait on it). */
  readonly hwWaiters = new Waiters();
  /** Woken when the log end offset moves (followers wait on it). */
  readonly leoWaiters = new Waiters();
  private readonly pendingAcks = new Map<number, (code: ErrorCode) => void>();
  /** Batches waiting for an earlier sequence of the same producer to be appended, by producer id. */
  private readonly waitingForSequence = new Map<bigint, Set<() => void>>();
  private waitingForSequenceCount = 0;
  private nextAckId = 1;

  constructor(
    readonly log: PartitionLog,
    readonly brokerId: number,
    public config: TopicConfig,
    private readonly hooks: PartitionHooks,
  ) {
    this.rebuildProducerState();
  }

  get topic(): string {
    return this.log.topicName;
  }

  get index(): number {
    return this.log.partition;
  }

  get name(): string {
    return `${this.log.topicName}-${this.log.partition}`;
  }

  get highWatermark(): bigint {
    return this.log.highWatermark;
  }

  setConfig(config: TopicConfig): void {
    this.config = config;
    this.log.setConfig(logConfigOf(config));
  }

  /** Rebuilds idempotent-producer state from the batch headers in the log (open, truncation). */
  rebuildProducerState(): void {
    this.producers.clear();
    this.log.forEachBatchHeader((header) => this.producers.record(header, header.baseOffset));
  }

  // ---------------------------------------------------------------------------------------------
  // Role changes

  /** Becomes leader in `state.leaderEpoch`. The log must be flushed up to its high watermark first. */
  becomeLeader(state: PartitionState, replicaLagTimeMaxMs: number): void {
    this.stopLeading(ErrorCode.NOT_LEADER);
    this.follower = undefined;
    this.log.assignEpochStart(state.leaderEpoch, this.log.logEndOffset);
    this.leader = new LeaderState({
      topic: this.topic,
      partition: this.index,
      localReplicaId: this.brokerId,
      leaderEpoch: state.leaderEpoch,
      partitionEpoch: state.partitionEpoch,
      replicas: state.replicas,
      isr: state.isr,
      epochEntries: this.log.epochEntries(),
      logEndOffset: this.log.logEndOffset,
      flushedOffset: this.log.flushedOffset,
      highWatermark: this.log.highWatermark,
      durability: this.config.durability,
      minInsyncReplicas: this.config.minInsyncReplicas,
      replicaLagTimeMaxMs,
      nowMs: this.hooks.nowMs(),
    });
    this.state = state;
    this.leaderEpoch = state.leaderEpoch;
    this.role = "leader";
    // A single-replica ISR may be able to commit at once.
    this.apply(this.leader.localFlushed(this.log.flushedOffset));
    this.hwWaiters.wakeAll();
    this.leoWaiters.wakeAll();
  }

  becomeFollower(state: PartitionState): void {
    this.stopLeading(ErrorCode.NOT_LEADER);
    this.state = state;
    this.leaderEpoch = state.leaderEpoch;
    this.follower = new FollowerState({
      topic: this.topic,
      partition: this.index,
      replicaId: this.brokerId,
      leaderEpoch: state.leaderEpoch,
      durability: this.config.durability,
      epochEntries: this.log.epochEntries(),
      logEndOffset: this.log.logEndOffset,
      flushedOffset: this.log.flushedOffset,
      highWatermark: this.log.highWatermark,
      allowTruncationBelowHighWatermark: this.config.uncleanLeaderElectionEnable,
    });
    this.role = state.leaderId >= 0 ? "follower" : "offline";
    this.hwWaiters.wakeAll();
    this.leoWaiters.wakeAll();
  }

  /** The partition's metadata changed without a new leader epoch (ISR or partition epoch). */
  metadataChanged(state: PartitionState): void {
    this.state = state;
    if (this.leader !== undefined && state.leaderEpoch === this.leaderEpoch) {
      this.apply(this.leader.isrChanged(state.isr, state.partitionEpoch));
    }
  }

  /** Stops every role (partition deleted or broker stopping). */
  close(code: ErrorCode): void {
    this.stopLeading(code);
    this.follower = undefined;
    this.role = "offline";
    this.hwWaiters.wakeAll();
    this.leoWaiters.wakeAll();
  }

  private stopLeading(code: ErrorCode): void {
    for (const producerId of [...this.waitingForSequence.keys()]) this.wakeSequenceWaiters(producerId);
    if (this.leader === undefined) return;
    const acks = this.leader.resign(code);
    this.leader = undefined;
    this.answerAcks(acks);
  }

  // ---------------------------------------------------------------------------------------------
  // Leader side

  /** The epoch check every leader-side request makes (KIP-320). Undefined when this replica may serve. */
  leaderProblem(currentLeaderEpoch: number | undefined): { code: ErrorCode; message: string } | undefined {
    if (this.role !== "leader") {
      const leaderId = this.state?.leaderId ?? -1;
      if (leaderId < 0) return { code: ErrorCode.LEADER_NOT_AVAILABLE, message: `${this.name} has no leader right now` };
      return { code: ErrorCode.NOT_LEADER, message: `broker ${this.brokerId} is not the leader of ${this.name} (broker ${leaderId} is, in epoch ${this.state?.leaderEpoch ?? -1})` };
    }
    if (currentLeaderEpoch !== undefined) {
      if (currentLeaderEpoch < this.leaderEpoch) {
        return { code: ErrorCode.FENCED_LEADER_EPOCH, message: `${this.name}: leader epoch ${currentLeaderEpoch} is older than the current ${this.leaderEpoch}; refresh metadata` };
      }
      if (currentLeaderEpoch > this.leaderEpoch) {
        return { code: ErrorCode.UNKNOWN_LEADER_EPOCH, message: `${this.name}: leader epoch ${currentLeaderEpoch} is newer than this broker knows (${this.leaderEpoch}); retry` };
      }
    }
    return undefined;
  }

  async produce(batch: RecordBatch | undefined, acks: AcksMode, timeoutMs: number): Promise<ProduceOutcome> {
    const fail = (code: ErrorCode, message: string): ProduceOutcome => ({ errorCode: code, errorMessage: message, baseOffset: -1n, logAppendTime: -1n });
    const notLeader = this.leaderProblem(undefined);
    if (notLeader !== undefined) return fail(notLeader.code, notLeader.message);
    const problem = batchProblem(batch, this.config, this.name);
    if (problem !== undefined) return fail(problem.code, problem.message);
    const header = batch!.header!;
    let sequence = this.producers.check(header);
    if (sequence.kind === "reject" && sequence.ahead) {
      sequence = await this.waitForSequenceGap(header, Math.min(timeoutMs, maxSequenceGapWaitMs));
      const stillLeader = this.leaderProblem(undefined);
      if (stillLeader !== undefined) return fail(stillLeader.code, stillLeader.message);
    }
    if (sequence.kind === "reject") return fail(sequence.code, `${this.name}: ${sequence.message}`);
    const leader = this.leader!;
    if (sequence.kind === "duplicate") {
      // Already appended: answer as the original append would have been answered, once committed.
      if (acks === "all" && sequence.baseOffset >= 0n) {
        const code = await this.waitForCommit(leader, sequence.baseOffset + BigInt(header.recordCount - 1), timeoutMs);
        if (code !== ErrorCode.ERROR_CODE_NONE) return fail(code, `${this.name}: duplicate batch not yet committed: ${ErrorCode[code]}`);
      }
      return { errorCode: ErrorCode.DUPLICATE_SEQUENCE, errorMessage: "", baseOffset: sequence.baseOffset, logAppendTime: -1n };
    }
    if (acks === "all") {
      const admission = leader.acksAllAdmission();
      if (admission !== ErrorCode.ERROR_CODE_NONE) {
        return fail(admission, `${this.name}: ISR [${leader.isr.join(",")}] is smaller than min.insync.replicas ${this.config.minInsyncReplicas}`);
      }
    }
    const appendTime = this.config.timestampType === "LogAppendTime" ? BigInt(Date.now()) : undefined;
    const baseOffset = this.log.logEndOffset;
    const appended = this.log.appendAsLeader(batch!, this.leaderEpoch, appendTime);
    this.producers.record(header, baseOffset);
    this.wakeSequenceWaiters(header.producerId);
    const info = await appended;
    if (this.leader === leader) {
      this.apply(leader.localAppend({ logEndOffset: info.logEndOffset > leader.logEndOffset ? info.logEndOffset : leader.logEndOffset }));
      this.leoWaiters.wakeAll();
      if (this.config.durability === "fsync") this.hooks.requestFlush(this);
    }
    const ok: ProduceOutcome = { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", baseOffset: info.baseOffset, logAppendTime: appendTime ?? -1n };
    if (acks !== "all") return ok;
    const code = await this.waitForCommit(leader, info.lastOffset, timeoutMs);
    if (code === ErrorCode.ERROR_CODE_NONE) return ok;
    return fail(code, `${this.name}: batch at offset ${info.baseOffset} appended but not acknowledged: ${ErrorCode[code]}`);
  }

  /** Waits until the producer's state accepts (or definitely refuses) the batch, or `waitMs` passes. */
  private async waitForSequenceGap(header: RecordBatchHeader, waitMs: number): Promise<SequenceCheck> {
    const deadline = this.hooks.nowMs() + waitMs;
    let sequence = this.producers.check(header);
    while (sequence.kind === "reject" && sequence.ahead && this.role === "leader" && this.waitingForSequenceCount < maxBatchesWaitingForSequencePerPartition) {
      const remaining = deadline - this.hooks.nowMs();
      if (remaining <= 0) break;
      let waiters = this.waitingForSequence.get(header.producerId);
      if (waiters === undefined) {
        waiters = new Set();
        this.waitingForSequence.set(header.producerId, waiters);
      }
      const set = waiters;
      this.waitingForSequenceCount++;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          set.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, remaining);
        set.add(wake);
      });
      this.waitingForSequenceCount--;
      if (set.size === 0 && this.waitingForSequence.get(header.producerId) === set) this.waitingForSequence.delete(header.producerId);
      sequence = this.producers.check(header);
    }
    return sequence;
  }

  private wakeSequenceWaiters(producerId: bigint): void {
    if (producerId === 0n) return;
    const waiters = this.waitingForSequence.get(producerId);
    if (waiters === undefined) return;
    for (const wake of [...waiters]) wake();
  }

  private waitForCommit(leader: LeaderState, lastOffset: bigint, timeoutMs: number): Promise<ErrorCode> {
    if (this.leader !== leader) return Promise.resolve(ErrorCode.NOT_LEADER);
    const id = this.nextAckId++;
    return new Promise<ErrorCode>((resolve) => {
      this.pendingAcks.set(id, resolve);
      this.apply(leader.addPendingAck({ id, lastOffset, deadlineMs: this.hooks.nowMs() + timeoutMs }));
    });
  }

  /** Carries out a leader decision: moves the high watermark, answers acks, sends ISR proposals. */
  apply(decision: LeaderDecision): void {
    if (decision.hwChanged && decision.highWatermark > this.log.highWatermark) {
      this.log.setHighWatermark(decision.highWatermark);
      this.hwWaiters.wakeAll();
    }
    this.answerAcks(decision.acks);
    if (decision.isrProposal !== undefined) this.hooks.proposeIsr(this, decision.isrProposal);
  }

  private answerAcks(acks: readonly AckResult[]): void {
    for (const ack of acks) {
      const resolve = this.pendingAcks.get(ack.id);
      if (resolve === undefined) continue;
      this.pendingAcks.delete(ack.id);
      resolve(ack.errorCode);
    }
  }

  /** The group-commit flusher finished a flush: leader-side progress. */
  flushed(): void {
    if (this.leader !== undefined && this.log.flushedOffset > this.leader.flushedOffset) {
      this.apply(this.leader.localFlushed(this.log.flushedOffset < this.leader.logEndOffset ? this.log.flushedOffset : this.leader.logEndOffset));
    }
  }

  tick(nowMs: number): void {
    if (this.leader !== undefined) this.apply(this.leader.tick(nowMs));
  }

  /** Reads whole batches below the high watermark for a consumer. */
  readCommitted(fromOffset: bigint, maxBytes: number): ReadResult {
    return this.log.read(fromOffset, maxBytes, this.log.highWatermark);
  }
}
