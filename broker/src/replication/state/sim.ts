// A deterministic in-memory simulator of one partition replicated on N brokers, driving LeaderState
// and FollowerState the way the broker's adapters do, with a controller that elects from the ISR and
// scripted faults (crash with or without losing unflushed data, restart, time passing). Tests use it
// to replay KIP scenarios and seeded random fault schedules while checking replication invariants.
import { ErrorCode, type Durability } from "@runnel/proto";
import { latestEpoch, truncateEpochsFromEnd, type EpochEntry } from "./epochs.js";
import { FollowerState } from "./follower.js";
import { LeaderState, type AckResult, type IsrProposal, type LeaderDecision } from "./leader.js";

/** One record per batch keeps offsets and batches the same thing in the simulation. */
export interface SimRecord {
  readonly epoch: number;
  readonly value: string;
}

export interface SimReplica {
  readonly id: number;
  alive: boolean;
  log: SimRecord[];
  /** Records below this survive a power loss. */
  flushed: number;
  /** Kept across restarts (the HW checkpoint); the live value is in leader/follower while alive. */
  hwCheckpoint: bigint;
  epochsCheckpoint: EpochEntry[];
  leader: LeaderState | undefined;
  follower: FollowerState | undefined;
}

export interface SimOptions {
  replicaIds?: number[];
  durability?: Durability;
  minInsyncReplicas?: number;
  replicaLagTimeMaxMs?: number;
  /**
   * "immediate" (default): the controller answers an ISR proposal within the same step. "queued": it
   * waits for deliverIsrChanges(), so proposals stay in flight while other things happen.
   */
  isrChangeDelivery?: "immediate" | "queued";
}

/** A broken simulation invariant; the message carries the recent event trace. */
export class SimInvariantError extends Error {
  override readonly name = "SimInvariantError";
}

export interface ProduceResult {
  /** Set when the produce was refused before appending. */
  errorCode?: ErrorCode;
  /** The acks=all request id (answers land in ackResults). */
  id?: number;
  offset?: number;
}

const topic = "sim";
const traceLength = 40;

/** mulberry32: a tiny seeded PRNG so every failing schedule replays from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class ReplicationSim {
  readonly durability: Durability;
  readonly minInsyncReplicas: number;
  readonly replicaLagTimeMaxMs: number;
  readonly replicaIds: readonly number[];
  readonly replicas = new Map<number, SimReplica>();
  nowMs = 0;
  /** The controller's view. */
  readonly controller: { leaderId: number; leaderEpoch: number; partitionEpoch: number; isr: number[] };
  /** Answers to acks=all produces by request id. */
  readonly ackResults = new Map<number, ErrorCode>();
  /** acks=all produces answered with success: they must never be lost. */
  readonly acknowledged: { offset: number; value: string }[] = [];
  /** committed[o]: the record any leader ever had below its high watermark at offset o. */
  readonly committed: string[] = [];
  private readonly pendingAckOffsets = new Map<number, { offset: number; value: string }>();
  private readonly highestHwSeen = new Map<number, bigint>();
  private readonly trace: string[] = [];
  private readonly isrChangeDelivery: "immediate" | "queued";
  private readonly queuedProposals: { from: LeaderState; proposal: IsrProposal }[] = [];
  private nextAckId = 1;

  constructor(options: SimOptions = {}) {
    this.replicaIds = options.replicaIds ?? [1, 2, 3];
    this.durability = options.durability ?? "fsync";
    this.minInsyncReplicas = options.minInsyncReplicas ?? 1;
    this.replicaLagTimeMaxMs = options.replicaLagTimeMaxMs ?? 10_000;
    this.isrChangeDelivery = options.isrChangeDelivery ?? "immediate";
    for (const id of this.replicaIds) {
      this.replicas.set(id, { id, alive: true, log: [], flushed: 0, hwCheckpoint: 0n, epochsCheckpoint: [], leader: undefined, follower: undefined });
    }
    this.controller = { leaderId: -1, leaderEpoch: -1, partitionEpoch: 0, isr: [...this.replicaIds] };
    this.elect(this.replicaIds[0]);
  }

  replica(id: number): SimReplica {
    const r = this.replicas.get(id);
    if (r === undefined) throw new Error(`no replica ${id}`);
    return r;
  }

  get leader(): SimReplica | undefined {
    return this.controller.leaderId < 0 ? undefined : this.replica(this.controller.leaderId);
  }

  highWatermarkOf(id: number): bigint {
    const r = this.replica(id);
    return r.leader?.highWatermark ?? r.follower?.highWatermark ?? r.hwCheckpoint;
  }

  epochsOf(id: number): readonly EpochEntry[] {
    const r = this.replica(id);
    return r.leader?.epochEntries ?? r.follower?.epochEntries ?? r.epochsCheckpoint;
  }

  values(id: number): string[] {
    return this.replica(id).log.map((r) => r.value);
  }

  recentTrace(): string {
    return this.trace.join("\n");
  }

  /** Appends one record on the leader; acks "all" waits for the HW, "leader" answers at once. */
  produce(value: string, options: { acks?: "all" | "leader"; timeoutMs?: number } = {}): ProduceResult {
    const acks = options.acks ?? "all";
    const l = this.leader;
    if (l === undefined || !l.alive || l.leader === undefined) {
      this.note(`produce ${value}: no leader`);
      return { errorCode: ErrorCode.LEADER_NOT_AVAILABLE };
    }
    if (acks === "all") {
      const admission = l.leader.acksAllAdmission();
      if (admission !== ErrorCode.ERROR_CODE_NONE) {
        this.note(`produce ${value}: refused ${ErrorCode[admission]}`);
        return { errorCode: admission };
      }
    }
    const offset = l.log.length;
    l.log.push({ epoch: l.leader.leaderEpoch, value });
    this.note(`produce ${value} at ${offset} on ${l.id} (epoch ${l.leader.leaderEpoch}, acks ${acks})`);
    this.apply(l, l.leader.localAppend({ logEndOffset: BigInt(l.log.length) }));
    if (acks !== "all") return { offset };
    const id = this.nextAckId++;
    this.pendingAckOffsets.set(id, { offset, value });
    this.apply(l, l.leader.addPendingAck({ id, lastOffset: BigInt(offset), deadlineMs: this.nowMs + (options.timeoutMs ?? 30_000) }));
    return { id, offset };
  }

  /** One fetch round trip from a follower to the leader, carrying at most maxRecords. */
  fetch(followerId: number, maxRecords = Number.POSITIVE_INFINITY): "fetched" | "truncated" | "error" | "skipped" {
    const f = this.replica(followerId);
    const l = this.leader;
    if (!f.alive || f.follower === undefined || l === undefined || !l.alive || l.leader === undefined) return "skipped";
    const request = f.follower.fetchRequest();
    const d = l.leader.followerFetch({ replicaId: f.id, ...request, nowMs: this.nowMs });
    this.apply(l, d);
    if (d.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      this.note(`fetch ${f.id}: ${ErrorCode[d.errorCode]} ${d.errorMessage ?? ""}`);
      return "error";
    }
    if (d.divergingEpoch !== undefined) {
      const decision = f.follower.decideTruncation(d.divergingEpoch);
      this.note(`fetch ${f.id} from ${request.fetchOffset} (last epoch ${request.lastFetchedEpoch}): diverging epoch ` +
        `${d.divergingEpoch.leaderEpoch} end ${d.divergingEpoch.endOffset}, truncate to ${decision.truncateTo}${decision.complete ? "" : " (continue)"}`);
      this.truncateLog(f, Number(decision.truncateTo));
      f.follower.truncated(decision.truncateTo);
      return "truncated";
    }
    const from = Number(request.fetchOffset);
    const to = Math.min(l.log.length, from + maxRecords);
    for (let o = from; o < to; o++) {
      const record = l.log[o]!;
      f.log.push(record);
      f.follower.appended({ baseOffset: BigInt(o), lastOffset: BigInt(o), leaderEpoch: record.epoch });
    }
    f.follower.leaderHighWatermark(d.highWatermark);
    this.note(`fetch ${f.id}: got [${from}, ${to}), leader HW ${d.highWatermark}, follower HW ${f.follower.highWatermark}`);
    return "fetched";
  }

  /** The replica fsyncs everything it has. */
  flush(id: number): void {
    const r = this.replica(id);
    if (!r.alive) return;
    r.flushed = r.log.length;
    if (r.leader !== undefined) this.apply(r, r.leader.localFlushed(BigInt(r.flushed)));
    else r.follower?.flushed(BigInt(r.flushed));
    this.note(`flush ${id} to ${r.flushed}`);
  }

  advanceTime(ms: number): void {
    this.nowMs += ms;
    const l = this.leader;
    if (l?.alive && l.leader !== undefined) this.apply(l, l.leader.tick(this.nowMs));
  }

  /**
   * The broker dies. loseUnflushed models a power loss (the default under fsync durability); without
   * it a process crash keeps the page cache. With fence (the default) the controller notices at once;
   * otherwise it notices at fence() or when the broker restarts (a restart within the session timeout).
   */
  crash(id: number, options: { loseUnflushed?: boolean; nextLeader?: number; fence?: boolean } = {}): void {
    const r = this.replica(id);
    if (!r.alive) return;
    r.hwCheckpoint = this.highWatermarkOf(id);
    r.epochsCheckpoint = [...this.epochsOf(id)];
    r.leader = undefined; // its waiting producers lose their connections: no answer
    r.follower = undefined;
    r.alive = false;
    const lose = options.loseUnflushed ?? this.durability === "fsync";
    if (lose && r.flushed < r.log.length) {
      r.log.length = r.flushed;
      r.epochsCheckpoint = truncateEpochsFromEnd(r.epochsCheckpoint, BigInt(r.flushed));
      if (r.hwCheckpoint > BigInt(r.flushed)) r.hwCheckpoint = BigInt(r.flushed);
    }
    this.note(`crash ${id}${lose ? " (unflushed lost)" : ""}: log end ${r.log.length}`);
    if (options.fence ?? true) this.fence(id, options.nextLeader === undefined ? {} : { nextLeader: options.nextLeader });
  }

  /**
   * The controller fences a broker (missed heartbeats, or it re-registered after a crash): out of the
   * ISR unless it is the last member, and if it led, a new leader from the live ISR.
   */
  fence(id: number, options: { nextLeader?: number } = {}): void {
    const c = this.controller;
    const shrunk = c.isr.filter((x) => x !== id);
    const isrChanged = shrunk.length > 0 && shrunk.length < c.isr.length;
    if (isrChanged) {
      c.isr = shrunk;
      c.partitionEpoch++;
    }
    this.note(`fence ${id}: ISR [${c.isr.join(",")}]`);
    if (c.leaderId === id) this.elect(options.nextLeader);
    else if (isrChanged) this.notifyIsr();
  }

  /** The broker comes back with what survived; it leads only if the partition was offline. */
  restart(id: number): void {
    const r = this.replica(id);
    if (r.alive) return;
    r.alive = true;
    this.note(`restart ${id}: log end ${r.log.length}, HW ${r.hwCheckpoint}`);
    const c = this.controller;
    if (c.leaderId === id) this.fence(id);
    else if (c.leaderId < 0 && c.isr.includes(id)) this.elect(id);
    else this.becomeFollower(r);
  }

  /** Controller election from the live ISR; bumps the leader epoch even when none is available. */
  elect(preferred?: number): void {
    const c = this.controller;
    const candidates = c.isr.filter((id) => this.replica(id).alive);
    if (preferred !== undefined && !candidates.includes(preferred)) throw new Error(`replica ${preferred} is not a live ISR member`);
    const chosen = preferred ?? candidates[0] ?? -1;
    const previous = c.leaderId >= 0 ? this.replica(c.leaderId) : undefined;
    c.leaderId = chosen;
    c.leaderEpoch++;
    c.partitionEpoch++;
    this.note(`elect ${chosen} at epoch ${c.leaderEpoch}, ISR [${c.isr.join(",")}]`);
    if (previous?.leader !== undefined && previous.id !== chosen) this.recordAcks(previous.leader.resign());
    for (const r of this.replicas.values()) {
      if (!r.alive) continue;
      if (r.id === chosen) this.becomeLeader(r);
      else this.becomeFollower(r);
    }
  }

  /** Runs fetch/flush rounds with every broker alive until all logs match the leader's. */
  heal(maxRounds = 50): void {
    for (const id of this.replicaIds) this.restart(id);
    for (let round = 0; round < maxRounds; round++) {
      for (const id of this.replicaIds) if (id !== this.controller.leaderId) this.fetch(id);
      for (const id of this.replicaIds) this.flush(id);
      for (const id of this.replicaIds) if (id !== this.controller.leaderId) this.fetch(id);
      this.advanceTime(1);
      this.deliverIsrChanges();
      this.checkInvariants();
      const l = this.leader!;
      const settled = this.replicaIds.every((id) => this.replica(id).log.length === l.log.length && this.highWatermarkOf(id) === BigInt(l.log.length));
      if (settled && this.controller.isr.length === this.replicaIds.length) return;
    }
    this.fail(`did not converge in ${maxRounds} rounds`);
  }

  /** Throws SimInvariantError when a replication promise is broken. */
  checkInvariants(): void {
    const l = this.leader;
    if (l?.alive && l.leader !== undefined) {
      const hw = Number(l.leader.highWatermark);
      for (let o = 0; o < hw; o++) {
        const value = l.log[o]!.value;
        if (this.committed[o] === undefined) this.committed[o] = value;
        else if (this.committed[o] !== value) this.fail(`offset ${o} committed as ${this.committed[o]} but leader ${l.id} has ${value} below its HW ${hw}`);
      }
      if (l.log.length < this.committed.length) this.fail(`leader ${l.id} has ${l.log.length} records; ${this.committed.length} were committed`);
      this.committed.forEach((value, o) => {
        if (l.log[o]!.value !== value) this.fail(`leader ${l.id} lost committed ${value} at ${o} (has ${l.log[o]!.value})`);
      });
      if (l.leader.isrChangeInFlight === undefined && l.leader.isr.join() !== this.controller.isr.join()) {
        this.fail(`leader ISR [${l.leader.isr.join(",")}] differs from the controller's [${this.controller.isr.join(",")}]`);
      }
      for (const id of this.controller.isr) {
        const member = this.replica(id);
        const holds = this.durability === "fsync" ? member.flushed : member.log.length;
        if (holds < hw) this.fail(`ISR member ${id} holds ${holds}${this.durability === "fsync" ? " flushed" : ""} records, below leader HW ${hw}`);
      }
    }
    for (const r of this.replicas.values()) {
      const hw = this.highWatermarkOf(r.id);
      const seen = this.highestHwSeen.get(r.id) ?? 0n;
      if (hw < seen) this.fail(`replica ${r.id} HW went back from ${seen} to ${hw}`);
      this.highestHwSeen.set(r.id, hw);
      if (hw > BigInt(r.log.length)) this.fail(`replica ${r.id} HW ${hw} above its log end ${r.log.length}`);
      if (this.durability === "fsync" && hw > BigInt(r.flushed)) this.fail(`replica ${r.id} HW ${hw} above its flushed offset ${r.flushed}`);
      for (let o = 0; o < Number(hw); o++) {
        if (r.log[o]!.value !== this.committed[o]) this.fail(`replica ${r.id} has ${r.log[o]!.value} at ${o} below its HW ${hw}; committed is ${this.committed[o]}`);
      }
      this.checkEpochCache(r);
    }
    for (const a of this.acknowledged) {
      if (this.committed[a.offset] !== a.value) this.fail(`acknowledged ${a.value} at ${a.offset} is not the committed record (${this.committed[a.offset]})`);
    }
  }

  private checkEpochCache(r: SimReplica): void {
    const entries = this.epochsOf(r.id);
    let index = -1;
    r.log.forEach((record, o) => {
      while (index + 1 < entries.length && entries[index + 1]!.startOffset <= BigInt(o)) index++;
      const entry = entries[index];
      if (entry === undefined || entry.epoch !== record.epoch) {
        this.fail(`replica ${r.id} record at ${o} has epoch ${record.epoch} but its epoch cache says ${entry?.epoch ?? "none"}`);
      }
    });
    if (r.log.length > 0 && latestEpoch(entries) < r.log[r.log.length - 1]!.epoch) this.fail(`replica ${r.id} epoch cache misses its last epoch`);
  }

  private becomeLeader(r: SimReplica): void {
    const hw = this.highWatermarkOf(r.id);
    const epochs = this.epochsOf(r.id);
    if (r.leader !== undefined) this.recordAcks(r.leader.resign());
    r.follower = undefined;
    r.leader = new LeaderState({
      topic,
      partition: 0,
      localReplicaId: r.id,
      leaderEpoch: this.controller.leaderEpoch,
      partitionEpoch: this.controller.partitionEpoch,
      replicas: this.replicaIds,
      isr: this.controller.isr,
      epochEntries: epochs,
      logEndOffset: BigInt(r.log.length),
      flushedOffset: BigInt(r.flushed),
      highWatermark: hw,
      durability: this.durability,
      minInsyncReplicas: this.minInsyncReplicas,
      replicaLagTimeMaxMs: this.replicaLagTimeMaxMs,
      nowMs: this.nowMs,
    });
  }

  private becomeFollower(r: SimReplica): void {
    if (r.follower !== undefined) {
      r.follower.newLeaderEpoch(this.controller.leaderEpoch);
      return;
    }
    const hw = this.highWatermarkOf(r.id);
    const epochs = this.epochsOf(r.id);
    r.leader = undefined;
    r.follower = new FollowerState({
      topic,
      partition: 0,
      replicaId: r.id,
      leaderEpoch: this.controller.leaderEpoch,
      durability: this.durability,
      epochEntries: epochs,
      logEndOffset: BigInt(r.log.length),
      flushedOffset: BigInt(r.flushed),
      highWatermark: hw,
    });
  }

  private truncateLog(r: SimReplica, to: number): void {
    for (let o = to; o < r.log.length; o++) {
      if (this.committed[o] !== undefined && this.committed[o] === r.log[o]!.value) {
        this.fail(`replica ${r.id} truncates committed ${r.log[o]!.value} at ${o} (truncating to ${to})`);
      }
    }
    r.log.length = Math.min(r.log.length, to);
    r.flushed = Math.min(r.flushed, to);
  }

  private apply(l: SimReplica, d: LeaderDecision): void {
    this.recordAcks(d.acks);
    if (d.isrProposal === undefined || l.leader === undefined) return;
    this.queuedProposals.push({ from: l.leader, proposal: d.isrProposal });
    if (this.isrChangeDelivery === "immediate") this.deliverIsrChanges();
  }

  /** The controller answers queued AlterPartition requests: compare-and-set on both epochs. */
  deliverIsrChanges(): void {
    for (let next = this.queuedProposals.shift(); next !== undefined; next = this.queuedProposals.shift()) {
      const { from, proposal: p } = next;
      const c = this.controller;
      const l = this.leader;
      const current = l?.alive === true && l.leader === from;
      if (current && p.leaderEpoch === c.leaderEpoch && p.partitionEpoch === c.partitionEpoch) {
        c.isr = [...p.newIsr];
        c.partitionEpoch++;
        this.note(`ISR ${p.kind} [${p.replicaIds.join(",")}] accepted: [${c.isr.join(",")}] partition epoch ${c.partitionEpoch}`);
        this.apply(l, from.isrChanged(c.isr, c.partitionEpoch));
      } else {
        this.note(`ISR ${p.kind} [${p.replicaIds.join(",")}] rejected (stale epoch)`);
        if (current) this.apply(l, from.isrProposalFailed());
      }
    }
  }

  private notifyIsr(): void {
    const l = this.leader;
    if (l?.alive && l.leader !== undefined) this.apply(l, l.leader.isrChanged(this.controller.isr, this.controller.partitionEpoch));
  }

  private recordAcks(acks: readonly AckResult[]): void {
    for (const a of acks) {
      if (this.ackResults.has(a.id)) this.fail(`acks=all request ${a.id} answered twice`);
      this.ackResults.set(a.id, a.errorCode);
      const record = this.pendingAckOffsets.get(a.id);
      this.pendingAckOffsets.delete(a.id);
      this.note(`ack ${a.id} (${record?.value}) -> ${ErrorCode[a.errorCode]}`);
      if (a.errorCode === ErrorCode.ERROR_CODE_NONE && record !== undefined) this.acknowledged.push(record);
    }
  }

  private note(event: string): void {
    this.trace.push(`t=${this.nowMs} ${event}`);
    if (this.trace.length > traceLength) this.trace.shift();
  }

  private fail(message: string): never {
    throw new SimInvariantError(`${message}\nrecent events:\n${this.recentTrace()}`);
  }
}
