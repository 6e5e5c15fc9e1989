// The leader side of replication as a thin gRPC adapter: a follower's ReplicaFetch feeds the pure
// LeaderState (progress, divergence, high watermark, ISR expansion) and is answered with the stored
// batch bytes as they are; it long-polls on the log end offset when there is nothing new.
import * as grpc from "@grpc/grpc-js";
import {
  ErrorCode,
  type OffsetForLeaderEpochRequest,
  type OffsetForLeaderEpochResponse,
  type ReplicaFetchRequest,
  ReplicationServiceService,
} from "@runnel/proto";
import { InvalidRequest, type Logger, unary } from "@runnel/common";
import { OffsetOutOfRangeError } from "../log/index.js";
import type { MetadataCache } from "../metadata/cache.js";
import { monotonicNowMs, type ReplicaManager } from "../partition/replica-manager.js";
import { abortOnCancel, waitForAny, type Waiters } from "../partition/waiters.js";
import type { BrokerMetrics } from "../metrics/broker-metrics.js";
import { maxFetchBytes, maxFetchWaitMs, maxPartitionsPerRequest } from "./limits.js";
import { encodeReplicaFetchResponse, type ReplicaFetchPartitionWire } from "./wire.js";

export const replicationServiceDefinition = {
  ...ReplicationServiceService,
  replicaFetch: {
    ...ReplicationServiceService.replicaFetch,
    responseSerialize: (value: ReplicaFetchPartitionWire[]): Buffer => encodeReplicaFetchResponse(value),
  },
};

export interface ReplicationServiceDeps {
  brokerId: number;
  metadata: MetadataCache;
  replicas: ReplicaManager;
  logger: Logger;
  /** Traffic counters; omitted in tests that do not look at them. */
  metrics?: BrokerMetrics;
}

export class ReplicationServiceHandlers {
  constructor(private readonly deps: ReplicationServiceDeps) {}

  implementation(): grpc.UntypedServiceImplementation {
    const onUnexpected = (err: unknown, method: string) => this.deps.logger.error({ err, method }, "unexpected error serving a replication request");
    return {
      replicaFetch: unary((req: ReplicaFetchRequest, call) => this.replicaFetch(req, call), onUnexpected),
      offsetForLeaderEpoch: unary((req: OffsetForLeaderEpochRequest) => this.offsetForLeaderEpoch(req), onUnexpected),
    };
  }

  async replicaFetch(req: ReplicaFetchRequest, call: grpc.ServerUnaryCall<ReplicaFetchRequest, unknown>): Promise<ReplicaFetchPartitionWire[]> {
    if (!Number.isInteger(req.maxWaitMs) || req.maxWaitMs < 0 || req.maxWaitMs > maxFetchWaitMs) throw new InvalidRequest(`max_wait_ms ${req.maxWaitMs} is outside 0..${maxFetchWaitMs}`);
    if (req.maxBytes < 1 || req.maxBytes > maxFetchBytes) throw new InvalidRequest(`max_bytes ${req.maxBytes} is outside 1..${maxFetchBytes}`);
    if (req.partitions.length > maxPartitionsPerRequest) throw new InvalidRequest(`at most ${maxPartitionsPerRequest} partitions per ReplicaFetch`);
    const known = this.deps.metadata.broker(req.replicaId);
    if (known !== undefined && req.brokerEpoch < known.brokerEpoch) {
      return req.partitions.map((p) => this.errorFor(p.topic, p.partition, ErrorCode.STALE_BROKER_EPOCH, `broker ${req.replicaId} epoch ${req.brokerEpoch} is older than its registration ${known.brokerEpoch}`));
    }
    const first = this.serve(req, true);
    if (first.bytes > 0 || first.anyError || req.maxWaitMs === 0) {
      this.deps.metrics?.replicatedBytes(req.replicaId, first.bytes);
      return first.partitions;
    }
    const cancel = abortOnCancel(call);
    await waitForAny(first.waiters, req.maxWaitMs, cancel.signal);
    cancel.release();
    const second = this.serve(req, false);
    this.deps.metrics?.replicatedBytes(req.replicaId, second.bytes);
    return second.partitions;
  }

  /** Reads for every partition; only the first pass reports the follower's progress to the leader state. */
  private serve(req: ReplicaFetchRequest, recordProgress: boolean): { partitions: ReplicaFetchPartitionWire[]; bytes: number; waiters: Waiters[]; anyError: boolean } {
    let budget = req.maxBytes;
    let total = 0;
    let anyError = false;
    const waiters: Waiters[] = [];
    const now = monotonicNowMs();
    const partitions = req.partitions.map((rp): ReplicaFetchPartitionWire => {
      const p = this.deps.replicas.partition(rp.topic, rp.partition);
      if (p === undefined) {
        anyError = true;
        return this.errorFor(rp.topic, rp.partition, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `broker ${this.deps.brokerId} has no replica of ${rp.topic}-${rp.partition}`);
      }
      const leader = p.leader;
      if (leader === undefined) {
        anyError = true;
        return this.errorFor(rp.topic, rp.partition, ErrorCode.NOT_LEADER, `broker ${this.deps.brokerId} is not the leader of ${p.name}`);
      }
      const offsets = { highWatermark: p.log.highWatermark, logStartOffset: p.log.logStartOffset, logEndOffset: p.log.logEndOffset };
      if (recordProgress) {
        if (rp.fetchOffset < p.log.logStartOffset && rp.fetchOffset < p.log.logEndOffset) {
          anyError = true;
          return { ...this.errorFor(rp.topic, rp.partition, ErrorCode.OFFSET_OUT_OF_RANGE, `${p.name}: offset ${rp.fetchOffset} is below the log start offset ${p.log.logStartOffset}`), ...offsets };
        }
        const decision = leader.followerFetch({
          replicaId: req.replicaId,
          currentLeaderEpoch: rp.currentLeaderEpoch,
          fetchOffset: rp.fetchOffset,
          flushedOffset: rp.flushedOffset,
          lastFetchedEpoch: rp.lastFetchedEpoch,
          nowMs: now,
        });
        p.apply(decision);
        if (decision.errorCode !== ErrorCode.ERROR_CODE_NONE) {
          anyError = true;
          return { ...this.errorFor(rp.topic, rp.partition, decision.errorCode, decision.errorMessage ?? ""), ...offsets, highWatermark: p.log.highWatermark };
        }
        if (decision.divergingEpoch !== undefined) {
          anyError = true;
          return { ...this.errorFor(rp.topic, rp.partition, ErrorCode.ERROR_CODE_NONE, ""), ...offsets, highWatermark: p.log.highWatermark, divergingEpoch: decision.divergingEpoch };
        }
      } else if (p.leaderEpoch !== rp.currentLeaderEpoch) {
        anyError = true;
        return this.errorFor(rp.topic, rp.partition, ErrorCode.FENCED_LEADER_EPOCH, `${p.name}: leadership changed while the fetch waited`);
      }
      let batches: Uint8Array[] = [];
      let bytes = 0;
      if (budget > 0 || total === 0) {
        try {
          const read = p.log.read(rp.fetchOffset, Math.max(1, Math.min(budget, rp.partitionMaxBytes || budget)), p.log.logEndOffset);
          batches = read.batches;
          bytes = read.bytes;
        } catch (err) {
          if (!(err instanceof OffsetOutOfRangeError)) throw err;
          anyError = true;
          return { ...this.errorFor(rp.topic, rp.partition, ErrorCode.OFFSET_OUT_OF_RANGE, err.message), ...offsets };
        }
      }
      budget -= bytes;
      total += bytes;
      if (bytes === 0) waiters.push(p.leoWaiters, p.hwWaiters);
      return { ...this.errorFor(rp.topic, rp.partition, ErrorCode.ERROR_CODE_NONE, ""), ...offsets, highWatermark: p.log.highWatermark, batches };
    });
    return { partitions, bytes: total, waiters, anyError };
  }

  private errorFor(topic: string, partition: number, code: ErrorCode, message: string): ReplicaFetchPartitionWire {
    return { topic, partition, errorCode: code, errorMessage: message, highWatermark: -1n, logStartOffset: -1n, logEndOffset: -1n, divergingEpoch: undefined, batches: [] };
  }

  async offsetForLeaderEpoch(req: OffsetForLeaderEpochRequest): Promise<OffsetForLeaderEpochResponse> {
    if (req.partitions.length > maxPartitionsPerRequest) throw new InvalidRequest(`at most ${maxPartitionsPerRequest} partitions per OffsetForLeaderEpoch`);
    return {
      partitions: req.partitions.map((rp) => {
        const base = { topic: rp.topic, partition: rp.partition, epochEndOffset: { leaderEpoch: -1, endOffset: -1n } };
        const p = this.deps.replicas.partition(rp.topic, rp.partition);
        if (p?.leader === undefined) {
          return { ...base, errorCode: p === undefined ? ErrorCode.UNKNOWN_TOPIC_OR_PARTITION : ErrorCode.NOT_LEADER, errorMessage: `broker ${this.deps.brokerId} does not lead ${rp.topic}-${rp.partition}` };
        }
        const answer = p.leader.offsetForLeaderEpoch({ leaderEpoch: rp.leaderEpoch, currentLeaderEpoch: rp.currentLeaderEpoch });
        return { ...base, errorCode: answer.errorCode, errorMessage: answer.errorCode === ErrorCode.ERROR_CODE_NONE ? "" : ErrorCode[answer.errorCode], epochEndOffset: answer.epochEndOffset };
      }),
    };
  }
}
