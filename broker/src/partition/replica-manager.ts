// Every partition replica on this broker and the machinery they share: turning metadata changes into
// role changes (leader, follower, deleted), the group-commit flusher (one fsync covers every partition
// written since the last), the leader tick (acks=all deadlines, ISR shrink), ISR proposals to the
// controller, follower fetchers per leader, and retention.
//
// Flushing is on the acks=all path of every fsync topic (leader and each follower), so it waits for as
// little as it can: lmdb-js resolves a write at about the time its sync completes, and the store's
// background flush marks it flushed within the next event-loop turn. Waiting one turn usually shows
// the batch durable; only when it does not is a store flush forced (which also writes the high
// watermark checkpoints: one more synced transaction). Checkpoints are otherwise written every
// highWatermarkCheckpointIntervalMs, as Kafka does; a stale one only makes a restarted replica start
// from a lower high watermark, never hold one above its flushed log.
import { ErrorCode, type PartitionState, resolveTopicConfig, type TopicConfig } from "@runnel/proto";
import type { Logger } from "@runnel/common";
import type { LogStore } from "../log/index.js";
import type { MetadataCache, MetadataChange, TopicEntry } from "../metadata/cache.js";
import { ReplicaFetcher } from "../replication/fetcher.js";
import type { IsrProposal } from "../replication/state/index.js";
import { logConfigOf, Partition } from "./partition.js";

/** How often leaders check acks=all deadlines and follower lag. */
export const leaderTickIntervalMs = 100;
/** How often retention runs over every partition. */
export const retentionCheckIntervalMs = 30_000;
/** How often high watermark checkpoints are written when no forced flush wrote them (Kafka's default). */
export const highWatermarkCheckpointIntervalMs = 5_000;

export interface ReplicaManagerOptions {
  brokerId: number;
  store: LogStore;
  metadata: MetadataCache;
  logger: Logger;
  replicaLagTimeMaxMs: number;
  retentionCheckIntervalMs?: number;
  brokerEpoch(): bigint;
  /** Sends an AlterPartition; resolves with the accepted state, or undefined when refused or unreachable. */
  alterPartition(partition: Partition, proposal: IsrProposal): Promise<PartitionState | undefined>;
  /** An impossible internal state: stop the process. */
  fatal(err: unknown): void;
  /** Batch bytes appended as a follower, by leader (metrics). */
  followerAppendedBytes?(leaderId: number, bytes: number): void;
}

function key(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

const monotonicOrigin = Date.now() - performance.now();
/** Milliseconds since the epoch, from a clock that never goes back. */
export function monotonicNowMs(): number {
  return Math.floor(monotonicOrigin + performance.now());
}

export class ReplicaManager {
  private readonly partitionsByKey = new Map<string, Partition>();
  private readonly fetchers = new Map<number, ReplicaFetcher>();
  private changes: Promise<void> = Promise.resolve();
  /** Leader partitions waiting for a flush, each up to the log end offset it had when it asked. */
  private readonly flushTargets = new Map<Partition, bigint>();
  private checkpointWanted = false;
  private flushing: Promise<void> | undefined;
  private readonly tickTimer: NodeJS.Timeout;
  private readonly checkpointTimer: NodeJS.Timeout;
  private readonly retentionTimer: NodeJS.Timeout;
  private retentionRunning = false;
  private stopped = false;

  constructor(private readonly options: ReplicaManagerOptions) {
    this.tickTimer = setInterval(() => this.tick(), leaderTickIntervalMs);
    this.retentionTimer = setInterval(() => void this.applyRetention(), options.retentionCheckIntervalMs ?? retentionCheckIntervalMs);
    this.checkpointTimer = setInterval(() => {
      this.checkpointWanted = true;
      this.flushing ??= this.flushLoop();
    }, highWatermarkCheckpointIntervalMs);
  }

  get brokerId(): number {
    return this.options.brokerId;
  }

  partition(topic: string, partition: number): Partition | undefined {
    return this.partitionsByKey.get(key(topic, partition));
  }

  partitions(): Partition[] {
    return [...this.partitionsByKey.values()];
  }

  leaderCount(): number {
    let n = 0;
    for (const p of this.partitionsByKey.values()) if (p.role === "leader") n++;
    return n;
  }

  /** Applies a metadata change; changes are applied one at a time, in order. */
  onMetadataChange(change: MetadataChange): Promise<void> {
    this.changes = this.changes.then(() => this.applyChange(change)).catch((err: unknown) => this.options.fatal(err));
    return this.changes;
  }

  /** Resolves when every metadata change handed over so far has been applied. */
  settled(): Promise<void> {
    return this.changes;
  }

  private async applyChange(change: MetadataChange): Promise<void> {
    if (this.stopped) return;
    const metadata = this.options.metadata;
    for (const t of change.deletedTopics) await this.dropTopic(t);
    if (change.snapshot) {
      // A snapshot replaces everything: partitions of topics that no longer exist are dropped.
      for (const p of this.partitions()) {
        const t = metadata.topic(p.topic);
        if (t === undefined || t.topicId !== p.log.topicId) await this.dropPartition(p);
      }
    }
    for (const t of change.createdOrChangedTopics) {
      const config = topicConfig(t, this.options.logger);
      for (const p of this.partitions()) if (p.topic === t.name && p.log.topicId === t.topicId) p.setConfig(config);
    }
    for (const state of change.changedPartitions) {
      const topic = metadata.topic(state.topic);
      if (topic === undefined) continue;
      await this.applyPartitionState(topic, state);
    }
    this.refreshFetchers();
  }

  private async applyPartitionState(topic: TopicEntry, state: PartitionState): Promise<void> {
    const me = this.options.brokerId;
    let p = this.partitionsByKey.get(key(state.topic, state.partition));
    if (p !== undefined && p.log.topicId !== topic.topicId) {
      await this.dropPartition(p);
      p = undefined;
    }
    if (!state.replicas.includes(me)) {
      if (p !== undefined) await this.dropPartition(p);
      return;
    }
    if (p === undefined) {
      const config = topicConfig(topic, this.options.logger);
      const log = this.options.store.openPartition(topic.topicId, topic.name, state.partition, logConfigOf(config));
      p = new Partition(log, me, config, {
        nowMs: monotonicNowMs,
        requestFlush: (part) => this.requestFlush(part),
        proposeIsr: (part, proposal) => void this.proposeIsr(part, proposal),
        logger: this.options.logger,
      });
      this.partitionsByKey.set(key(state.topic, state.partition), p);
    }
    if (state.leaderId === me) {
      if (p.role === "leader" && p.leaderEpoch === state.leaderEpoch) {
        p.metadataChanged(state);
        return;
      }
      // A new leader's high watermark must be on disk before it counts (fsync durability).
      if (p.log.flushedOffset < p.log.highWatermark) await this.options.store.flush();
      p.becomeLeader(state, this.options.replicaLagTimeMaxMs);
      this.options.logger.info({ partition: p.name, leaderEpoch: state.leaderEpoch, isr: state.isr, logEnd: String(p.log.logEndOffset), hw: String(p.log.highWatermark) }, "became leader");
      return;
    }
    if (p.role !== "leader" && p.leaderEpoch === state.leaderEpoch && p.state?.leaderId === state.leaderId) {
      p.metadataChanged(state);
      return;
    }
    p.becomeFollower(state);
    this.options.logger.info({ partition: p.name, leader: state.leaderId, leaderEpoch: state.leaderEpoch }, state.leaderId >= 0 ? "became follower" : "partition offline");
  }

  private async dropTopic(t: TopicEntry): Promise<void> {
    for (const p of this.partitions()) if (p.log.topicId === t.topicId) await this.dropPartition(p);
  }

  private async dropPartition(p: Partition): Promise<void> {
    p.close(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    this.partitionsByKey.delete(key(p.topic, p.index));
    this.flushTargets.delete(p);
    await this.options.store.deletePartition(p.log.topicId, p.index);
    this.options.logger.info({ partition: p.name, topicId: p.log.topicId }, "deleted partition data");
  }

  /** Partitions this broker follows from `leaderId`. */
  partitionsFollowing(leaderId: number): Partition[] {
    return this.partitions().filter((p) => p.role === "follower" && p.follower !== undefined && p.state?.leaderId === leaderId);
  }

  private refreshFetchers(): void {
    const leaders = new Set<number>();
    for (const p of this.partitionsByKey.values()) if (p.role === "follower" && p.state !== undefined) leaders.add(p.state.leaderId);
    for (const [id, f] of this.fetchers) {
      const b = this.options.metadata.broker(id);
      if (!leaders.has(id) || b === undefined || f.address !== `${b.host}:${b.port}`) {
        this.fetchers.delete(id);
        void f.stop();
      }
    }
    for (const id of leaders) {
      const b = this.options.metadata.broker(id);
      if (b === undefined) continue;
      let f = this.fetchers.get(id);
      if (f === undefined) {
        f = new ReplicaFetcher(id, `${b.host}:${b.port}`, {
          brokerId: this.options.brokerId,
          brokerEpoch: () => this.options.brokerEpoch(),
          logger: this.options.logger,
          partitionsFollowing: (leaderId) => this.partitionsFollowing(leaderId),
          awaitFlushed: (partitions) => this.awaitFlushed(partitions),
          fatal: (err) => this.options.fatal(err),
          appendedBytes: (leaderId, bytes) => this.options.followerAppendedBytes?.(leaderId, bytes),
        });
        this.fetchers.set(id, f);
        f.start();
      } else {
        f.poke();
      }
    }
  }

  private async proposeIsr(p: Partition, proposal: IsrProposal): Promise<void> {
    this.options.logger.info({ partition: p.name, kind: proposal.kind, replicas: proposal.replicaIds, newIsr: proposal.newIsr }, "proposing ISR change");
    const accepted = await this.options.alterPartition(p, proposal).catch(() => undefined);
    const leader = p.leader;
    if (leader === undefined || leader.leaderEpoch !== proposal.leaderEpoch) return;
    if (accepted !== undefined && accepted.leaderEpoch === proposal.leaderEpoch) {
      p.state = accepted;
      p.apply(leader.isrChanged(accepted.isr, accepted.partitionEpoch));
    } else {
      p.apply(leader.isrProposalFailed());
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Group commit

  /**
   * Asks for `p` (a leader) to be flushed up to its current log end offset and its leader state told;
   * flush rounds run back to back, never in parallel.
   */
  requestFlush(p: Partition): void {
    const target = p.log.logEndOffset;
    const previous = this.flushTargets.get(p);
    if (previous === undefined || target > previous) this.flushTargets.set(p, target);
    this.flushing ??= this.flushLoop();
  }

  /**
   * Resolves once each of `partitions` has flushed everything it had appended at the call (a
   * follower's fsync before it reports its flushed offset); leader states hear of it too.
   */
  async awaitFlushed(partitions: readonly Partition[]): Promise<void> {
    const targets = partitions.map((p) => [p, p.log.logEndOffset] as const);
    const covered = () => targets.every(([p, target]) => p.log.flushedOffset >= target);
    if (!covered()) await nextEventLoopTurn();
    if (!covered()) await this.options.store.flush();
    this.noteFlushed();
  }

  /** Flushes now (joining a flush in progress, then one more) and resolves when it is done. */
  async flushNow(): Promise<void> {
    await this.options.store.flush();
    this.noteFlushed();
  }

  /** Leader states learn what the store has flushed, whoever asked for it. */
  private noteFlushed(): void {
    for (const p of this.partitionsByKey.values()) p.flushed();
  }

  private async flushLoop(): Promise<void> {
    try {
      while ((this.flushTargets.size > 0 || this.checkpointWanted) && !this.stopped) {
        const targets = [...this.flushTargets];
        this.flushTargets.clear();
        const checkpoint = this.checkpointWanted;
        this.checkpointWanted = false;
        if (!checkpoint) await nextEventLoopTurn();
        if (checkpoint || targets.some(([p, target]) => p.log.flushedOffset < target)) await this.flushNow();
        else this.noteFlushed();
      }
    } catch (err) {
      this.options.fatal(err);
    } finally {
      this.flushing = undefined;
    }
  }

  private tick(): void {
    const now = monotonicNowMs();
    try {
      for (const p of this.partitionsByKey.values()) p.tick(now);
    } catch (err) {
      this.options.fatal(err);
    }
  }

  private async applyRetention(): Promise<void> {
    if (this.retentionRunning) return;
    this.retentionRunning = true;
    try {
      for (const p of this.partitions()) {
        if (this.stopped) return;
        const { deletedBatches, newLogStartOffset } = await p.log.applyRetention(Date.now());
        if (deletedBatches > 0) this.options.logger.info({ partition: p.name, deletedBatches, logStart: String(newLogStartOffset) }, "retention deleted batches");
      }
    } catch (err) {
      this.options.logger.error({ err: (err as Error).message }, "retention failed");
    } finally {
      this.retentionRunning = false;
    }
  }

  /** Runs retention once now (tests and operators). */
  runRetention(): Promise<void> {
    return this.applyRetention();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.tickTimer);
    clearInterval(this.retentionTimer);
    clearInterval(this.checkpointTimer);
    await Promise.all([...this.fetchers.values()].map((f) => f.stop()));
    this.fetchers.clear();
    await this.changes;
    for (const p of this.partitionsByKey.values()) p.close(ErrorCode.NOT_LEADER);
    await this.flushing;
  }
}

/** Lets callbacks already queued (the store's background flush completing) run first. */
function nextEventLoopTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function topicConfig(t: TopicEntry, logger: Logger): TopicConfig {
  try {
    return resolveTopicConfig(t.configs);
  } catch (err) {
    // The controller validates configuration; one it accepted that we cannot read is a version skew.
    logger.error({ topic: t.name, err: (err as Error).message }, "invalid topic configuration from the controller; using defaults for the bad keys");
    const valid = Object.fromEntries(Object.entries(t.configs).filter(([k, v]) => {
      try {
        resolveTopicConfig({ [k]: v });
        return true;
      } catch {
        return false;
      }
    }));
    return resolveTopicConfig(valid);
  }
}
