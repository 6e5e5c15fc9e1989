// Follower side of replication: one fetcher per leader broker pulls every partition this broker
// follows from that leader in one long-poll ReplicaFetch, appends the leader's batches byte for byte,
// truncates where the leader reports a diverging epoch, and (for fsync topics) flushes before the next
// fetch so that fetch reports a flushed offset the leader can count toward the high watermark.
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, type ReplicaFetchRequest, ReplicationServiceService } from "@runnel/proto";
import { channelOptions, deadlineIn, isUnavailable, type Logger } from "@runnel/common";
import { decodeStoredHeader } from "../log/index.js";
import type { Partition } from "../partition/partition.js";
import type { FollowerState } from "./state/index.js";
import { decodeReplicaFetchResponse, type ReplicaFetchPartitionWire } from "../server/wire.js";

/** How long the leader may hold a replica fetch open when it has nothing new. */
export const replicaFetchMaxWaitMs = 500;
/** Bytes asked for per partition and per response. */
export const replicaFetchPartitionMaxBytes = 8 * 1024 * 1024;
export const replicaFetchMaxBytes = 32 * 1024 * 1024;
/** Extra time beyond the long-poll wait before a replica fetch call is abandoned. */
export const replicaFetchDeadlineSlackMs = 5_000;
/** Backoff after a failed fetch or a partition error. */
export const replicaFetchBackoffMs = 100;

type Decoded = ReplicaFetchPartitionWire[];

export interface FetcherHost {
  brokerId: number;
  brokerEpoch(): bigint;
  logger: Logger;
  /** Partitions currently following this fetcher's leader. */
  partitionsFollowing(leaderId: number): Partition[];
  /** Resolves once each partition has flushed everything it had appended at the call. */
  awaitFlushed(partitions: readonly Partition[]): Promise<void>;
  /** An impossible state was found: stop the process loudly. */
  fatal(err: unknown): void;
  /** Batch bytes appended from this leader (metrics). */
  appendedBytes(leaderId: number, bytes: number): void;
}

export class ReplicaFetcher {
  private readonly client: grpc.Client;
  private stopped = false;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(
    readonly leaderId: number,
    readonly address: string,
    private readonly host: FetcherHost,
  ) {
    // A plain client: call() passes its own deserializer, which keeps batches as raw bytes.
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), channelOptions);
  }

  start(): void {
    this.running ??= this.run().catch((err: unknown) => this.host.fatal(err));
  }

  /** Partitions changed: fetch again now instead of after the current backoff/idle wait. */
  poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.poke();
    this.client.close();
    await this.running;
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const partitions = this.host.partitionsFollowing(this.leaderId);
      if (partitions.length === 0) {
        await this.pause(1_000);
        continue;
      }
      // Flushes the fetcher did not wait for (the store's first fsync after opening, background
      // flushes) count too: without this an idle follower restarted before that fsync would report a
      // stale flushed offset forever and never rejoin the ISR of an fsync topic.
      for (const p of partitions) syncFlushed(p);
      const byKey = new Map(partitions.map((p) => [`${p.topic}\u0000${p.index}`, p]));
      const request: ReplicaFetchRequest = {
        replicaId: this.host.brokerId,
        brokerEpoch: this.host.brokerEpoch(),
        maxWaitMs: replicaFetchMaxWaitMs,
        minBytes: 1,
        maxBytes: replicaFetchMaxBytes,
        partitions: partitions.map((p) => ({ topic: p.topic, partition: p.index, partitionMaxBytes: replicaFetchPartitionMaxBytes, ...p.follower!.fetchRequest() })),
      };
      let response: Decoded;
      try {
        response = await this.call(request);
      } catch (err) {
        if (!isUnavailable(err)) this.host.logger.warn({ leader: this.leaderId, err: (err as Error).message }, "replica fetch failed");
        await this.pause(replicaFetchBackoffMs);
        continue;
      }
      if (this.stopped) return;
      let backoff = false;
      const appended: Partition[] = [];
      for (const pr of response) {
        const p = byKey.get(`${pr.topic}\u0000${pr.partition}`);
        // Metadata may have moved on while the fetch was in flight: only act for the same epoch.
        if (p === undefined || p.follower === undefined || p.state?.leaderId !== this.leaderId || p.leaderEpoch !== request.partitions.find((x) => x.topic === pr.topic && x.partition === pr.partition)?.currentLeaderEpoch) continue;
        const outcome = await this.handle(p, pr);
        if (outcome === "appended") appended.push(p);
        if (outcome === "backoff") backoff = true;
      }
      if (appended.length > 0) {
        const durable = appended.filter((p) => p.config.durability === "fsync");
        if (durable.length > 0) await this.host.awaitFlushed(durable);
        for (const p of appended) syncFlushed(p);
      }
      for (const pr of response) {
        const p = byKey.get(`${pr.topic}\u0000${pr.partition}`);
        if (p?.follower === undefined || pr.errorCode !== ErrorCode.ERROR_CODE_NONE) continue;
        const hw = p.follower.leaderHighWatermark(pr.highWatermark);
        if (hw.highWatermark > p.log.highWatermark) {
          p.log.setHighWatermark(hw.highWatermark);
          p.hwWaiters.wakeAll();
        }
      }
      if (backoff) await this.pause(replicaFetchBackoffMs);
    }
  }

  private call(request: ReplicaFetchRequest): Promise<Decoded> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<ReplicaFetchRequest, Decoded>(
        ReplicationServiceService.replicaFetch.path,
        ReplicationServiceService.replicaFetch.requestSerialize,
        (buf: Buffer) => decodeReplicaFetchResponse(buf),
        request,
        new grpc.Metadata(),
        { deadline: deadlineIn(request.maxWaitMs + replicaFetchDeadlineSlackMs) },
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
  }

  private async handle(p: Partition, pr: ReplicaFetchPartitionWire): Promise<"appended" | "idle" | "backoff"> {
    const follower = p.follower!;
    if (pr.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      if (pr.errorCode === ErrorCode.OFFSET_OUT_OF_RANGE && follower.logEndOffset < pr.logStartOffset) {
        // We are behind the leader's retention: nothing we hold is still in its log.
        this.host.logger.warn({ partition: p.name, logEnd: String(follower.logEndOffset), leaderLogStart: String(pr.logStartOffset) }, "follower behind the leader's log start; restarting the log there");
        await p.log.truncateFullyAndStartAt(pr.logStartOffset);
        p.rebuildProducerState();
        p.becomeFollower(p.state!);
        return "idle";
      }
      this.host.logger.debug({ partition: p.name, error: ErrorCode[pr.errorCode], message: pr.errorMessage }, "replica fetch partition error");
      return "backoff";
    }
    if (pr.divergingEpoch !== undefined) {
      const decision = follower.decideTruncation(pr.divergingEpoch);
      this.host.logger.info(
        { partition: p.name, truncateTo: String(decision.truncateTo), logEnd: String(follower.logEndOffset), leaderEpoch: pr.divergingEpoch.leaderEpoch, leaderEndOffset: String(pr.divergingEpoch.endOffset) },
        "follower log diverges from the leader; truncating",
      );
      await p.log.truncateTo(decision.truncateTo, { allowBelowHighWatermark: p.config.uncleanLeaderElectionEnable });
      follower.truncated(decision.truncateTo);
      p.rebuildProducerState();
      return "idle";
    }
    if (pr.batches.length === 0) return "idle";
    const appended = await appendFetchedBatches(p, follower, pr.batches);
    this.host.appendedBytes(this.leaderId, pr.batches.reduce((n, b) => n + b.length, 0));
    return appended ? "appended" : "idle";
  }
}

/**
 * Appends a leader's batches to a follower's log. The producer state learns them as soon as the log
 * has taken them (its end offset moved), before the write commits, as on the leader path: if this
 * replica becomes leader meanwhile (a controlled shutdown moves leadership while followers fetch), it
 * leads with these batches in its log and must know them, or it accepts a producer's retry of one as
 * new and stores the record twice. Returns false when the follower state changed during the write
 * (its new state starts from the log, which already counts the batches).
 */
export async function appendFetchedBatches(p: Partition, follower: FollowerState, batches: readonly Uint8Array[]): Promise<boolean> {
  const headers = batches.map((b) => decodeStoredHeader(b));
  const written = p.log.appendStored(batches);
  for (const h of headers) p.producers.record(h, h.baseOffset);
  await written;
  if (p.follower !== follower) return false;
  for (const h of headers) {
    follower.appended({ baseOffset: h.baseOffset, lastOffset: h.baseOffset + BigInt(h.recordCount - 1), leaderEpoch: h.leaderEpoch });
  }
  return true;
}

/** Moves the follower state's flushed offset up to what the log has flushed (never past its log end). */
function syncFlushed(p: Partition): void {
  const follower = p.follower;
  if (follower === undefined) return;
  const flushed = p.log.flushedOffset < follower.logEndOffset ? p.log.flushedOffset : follower.logEndOffset;
  if (flushed > follower.flushedOffset) follower.flushed(flushed);
}
