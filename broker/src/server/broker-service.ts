// The client-facing BrokerService (Metadata, Produce, Fetch, ListOffsets; ShareFetch and
// ShareAcknowledge through ../share/service.ts) as a thin gRPC adapter over the replica manager and
// the metadata cache: validate the request's shape (INVALID_ARGUMENT), answer per-partition errors
// with codes, and encode fetch responses without decoding batches.
import * as grpc from "@grpc/grpc-js";
import {
  Acks,
  BrokerServiceService,
  ErrorCode,
  type FetchRequest,
  type LeaderHint,
  type ListOffsetsPartitionResponse,
  type ListOffsetsRequest,
  type ListOffsetsResponse,
  type MetadataRequest,
  type MetadataResponse,
  OffsetSpec,
  type PartitionProduceResponse,
  type ProduceRequest,
  type ProduceResponse,
  type ShareAcknowledgeRequest,
  type ShareFetchRequest,
  topicNameProblem,
} from "@runnel/proto";
import { InvalidRequest, StatusError, type HostPort, type Logger, unary } from "@runnel/common";
import { OffsetOutOfRangeError, StorageCorruptionError } from "../log/index.js";
import type { MetadataCache } from "../metadata/cache.js";
import type { AcksMode, Partition } from "../partition/partition.js";
import type { ReplicaManager } from "../partition/replica-manager.js";
import { abortOnCancel, waitForAny, type Waiters } from "../partition/waiters.js";
import {
  defaultFetchMaxBytes,
  defaultProduceTimeoutMs,
  maxFetchBytes,
  maxFetchWaitMs,
  maxInFlightClientRequests,
  maxInFlightProduceBytes,
  maxMetadataTopicsPerRequest,
  maxPartitionsPerRequest,
  maxProduceTimeoutMs,
  countPartitions,
} from "./limits.js";
import type { BrokerMetrics } from "../metrics/broker-metrics.js";
import { encodeFetchResponse, encodeShareFetchResponse, type FetchPartitionWire, type FetchTopicWire, type ShareFetchTopicWire } from "./wire.js";
import type { ShareManager } from "../share/manager.js";
import { type PartitionLookup, ShareService } from "../share/service.js";

export interface BrokerServiceDeps {
  brokerId: number;
  metadata: MetadataCache;
  replicas: ReplicaManager;
  controller: HostPort | undefined;
  logger: Logger;
  /** Traffic counters; omitted in tests that do not look at them. */
  metrics?: BrokerMetrics;
  /** Share groups; omitted: ShareFetch and ShareAcknowledge answer UNIMPLEMENTED. */
  share?: ShareManager;
}

/** BrokerService with Fetch's response serializer replaced by the pre-encoded-batch encoder. */
export const brokerServiceDefinition = {
  ...BrokerServiceService,
  fetch: {
    ...BrokerServiceService.fetch,
    responseSerialize: (value: FetchTopicWire[]): Buffer => encodeFetchResponse(value),
  },
  shareFetch: {
    ...BrokerServiceService.shareFetch,
    responseSerialize: (value: ShareFetchTopicWire[]): Buffer => encodeShareFetchResponse(value),
  },
};

function acksMode(acks: Acks): AcksMode {
  switch (acks) {
    case Acks.ACKS_NONE:
      return "none";
    case Acks.ACKS_LEADER:
      return "leader";
    case Acks.ACKS_ALL:
    case Acks.ACKS_UNSPECIFIED:
      return "all";
    default:
      throw new InvalidRequest(`acks ${String(acks)} is not one of ACKS_NONE, ACKS_LEADER, ACKS_ALL`);
  }
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidRequest(`${name} ${value} is outside ${min}..${max}`);
}

export class BrokerServiceHandlers implements PartitionLookup {
  private inFlightRequests = 0;
  private inFlightProduceBytes = 0;
  private readonly share: ShareService | undefined;

  constructor(private readonly deps: BrokerServiceDeps) {
    this.share =
      deps.share === undefined
        ? undefined
        : new ShareService({ manager: deps.share, partitions: this, logger: deps.logger, ...(deps.metrics === undefined ? {} : { metrics: deps.metrics.share }) });
  }

  implementation(): grpc.UntypedServiceImplementation {
    const onUnexpected = (err: unknown, method: string) => this.deps.logger.error({ err, method }, "unexpected error serving a request");
    return {
      metadata: unary((req: MetadataRequest) => this.metadata(req), onUnexpected),
      produce: unary((req: ProduceRequest, call) => this.bounded(() => this.produce(req, call)), onUnexpected),
      fetch: unary((req: FetchRequest, call) => this.bounded(() => this.fetch(req, call)), onUnexpected),
      listOffsets: unary((req: ListOffsetsRequest) => this.bounded(() => this.listOffsets(req)), onUnexpected),
      ...(this.share === undefined
        ? {}
        : {
            shareFetch: unary((req: ShareFetchRequest, call) => this.bounded(() => this.share!.fetch(req, call)), onUnexpected),
            shareAcknowledge: unary((req: ShareAcknowledgeRequest) => this.bounded(() => this.share!.acknowledge(req)), onUnexpected),
          }),
    };
  }

  /** Refuses work beyond maxInFlightClientRequests with RESOURCE_EXHAUSTED rather than queueing it. */
  private async bounded<T>(work: () => Promise<T>): Promise<T> {
    if (this.inFlightRequests >= maxInFlightClientRequests) {
      throw new StatusError(grpc.status.RESOURCE_EXHAUSTED, `broker ${this.deps.brokerId} is serving ${this.inFlightRequests} requests; retry later`);
    }
    this.inFlightRequests++;
    try {
      return await work();
    } finally {
      this.inFlightRequests--;
    }
  }

  leaderHint(p: Partition | undefined, topic: string, partition: number): LeaderHint {
    const state = p?.state ?? this.deps.metadata.partition(topic, partition);
    return { leaderId: state?.leaderId ?? -1, leaderEpoch: state?.leaderEpoch ?? -1 };
  }

  /** The partition if it exists here, or the error to answer. */
  lookup(topic: string, partition: number): { p: Partition } | { code: ErrorCode; message: string } {
    const p = this.deps.replicas.partition(topic, partition);
    if (p !== undefined) return { p };
    const nameProblem = topicNameProblem(topic);
    if (nameProblem !== undefined) return { code: ErrorCode.INVALID_TOPIC_NAME, message: nameProblem };
    const t = this.deps.metadata.topic(topic);
    if (t === undefined) return { code: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message: `topic "${topic}" does not exist` };
    const state = t.partitions[partition];
    if (state === undefined) return { code: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, message: `topic "${topic}" has no partition ${partition} (it has ${t.partitions.length})` };
    if (state.leaderId < 0) return { code: ErrorCode.LEADER_NOT_AVAILABLE, message: `${topic}-${partition} has no leader right now` };
    return { code: ErrorCode.NOT_LEADER, message: `broker ${this.deps.brokerId} is not the leader of ${topic}-${partition} (broker ${state.leaderId} is)` };
  }

  async metadata(req: MetadataRequest): Promise<MetadataResponse> {
    if (req.topics.length > maxMetadataTopicsPerRequest) throw new InvalidRequest(`at most ${maxMetadataTopicsPerRequest} topics per Metadata request`);
    const m = this.deps.metadata;
    const names = req.topics.length === 0 ? m.topics().map((t) => t.name) : req.topics;
    const alive = new Set(m.brokers().filter((b) => b.alive).map((b) => b.brokerId));
    return {
      metadataVersion: m.metadataVersion,
      clusterId: m.clusterId,
      controller: { brokerId: -1, host: this.deps.controller?.host ?? "", port: this.deps.controller?.port ?? 0, rack: "" },
      brokers: m.brokers().filter((b) => b.alive).map((b) => ({ brokerId: b.brokerId, host: b.host, port: b.port, rack: b.rack })),
      topics: names.map((name) => {
        const problem = topicNameProblem(name);
        if (problem !== undefined) return { name, errorCode: ErrorCode.INVALID_TOPIC_NAME, errorMessage: problem, topicId: "", partitions: [], configs: {} };
        const t = m.topic(name);
        if (t === undefined) return { name, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, errorMessage: `topic "${name}" does not exist`, topicId: "", partitions: [], configs: {} };
        return {
          name,
          errorCode: ErrorCode.ERROR_CODE_NONE,
          errorMessage: "",
          topicId: t.topicId,
          configs: t.configs,
          partitions: t.partitions.map((p) => ({
            partition: p.partition,
            errorCode: p.leaderId < 0 ? ErrorCode.LEADER_NOT_AVAILABLE : ErrorCode.ERROR_CODE_NONE,
            leaderId: p.leaderId,
            leaderEpoch: p.leaderEpoch,
            replicas: p.replicas,
            isr: p.isr,
            offlineReplicas: p.replicas.filter((id) => !alive.has(id)),
          })),
        };
      }),
    };
  }

  async produce(req: ProduceRequest, call: grpc.ServerUnaryCall<ProduceRequest, ProduceResponse>): Promise<ProduceResponse> {
    const acks = acksMode(req.acks);
    checkRange("timeout_ms", req.timeoutMs, 0, maxProduceTimeoutMs);
    const timeoutMs = req.timeoutMs === 0 ? defaultProduceTimeoutMs : req.timeoutMs;
    if (countPartitions(req.topics) > maxPartitionsPerRequest) throw new InvalidRequest(`at most ${maxPartitionsPerRequest} partitions per Produce request`);
    let bytes = 0;
    for (const t of req.topics) {
      const seen = new Set<number>();
      for (const p of t.partitions) {
        if (seen.has(p.partition)) throw new InvalidRequest(`partition ${t.topic}-${p.partition} appears twice in one Produce request`);
        seen.add(p.partition);
        bytes += p.batch?.records.length ?? 0;
      }
    }
    if (this.inFlightProduceBytes + bytes > maxInFlightProduceBytes && this.inFlightProduceBytes > 0) {
      return this.produceRefusal(req, ErrorCode.THROTTLED, `broker ${this.deps.brokerId} has ${this.inFlightProduceBytes} bytes of produce requests in flight; retry later`);
    }
    this.deps.metrics?.producedBytes(bytes);
    this.inFlightProduceBytes += bytes;
    try {
      const topics = await Promise.all(
        req.topics.map(async (t) => ({
          topic: t.topic,
          partitions: await Promise.all(
            t.partitions.map(async (pd): Promise<PartitionProduceResponse> => {
              const found = this.lookup(t.topic, pd.partition);
              if (!("p" in found)) return this.produceError(pd.partition, found.code, found.message, this.leaderHint(undefined, t.topic, pd.partition));
              const out = await found.p.produce(pd.batch, acks, timeoutMs).catch((err: unknown) => {
                if (err instanceof StorageCorruptionError) return { errorCode: ErrorCode.STORAGE_ERROR, errorMessage: err.message, baseOffset: -1n, logAppendTime: -1n };
                throw err;
              });
              const hint = out.errorCode === ErrorCode.NOT_LEADER || out.errorCode === ErrorCode.FENCED_LEADER_EPOCH ? this.leaderHint(found.p, t.topic, pd.partition) : undefined;
              return {
                partition: pd.partition,
                errorCode: out.errorCode,
                errorMessage: out.errorMessage,
                baseOffset: acks === "none" ? -1n : out.baseOffset,
                logAppendTime: out.logAppendTime,
                logStartOffset: found.p.log.logStartOffset,
                currentLeader: hint,
              };
            }),
          ),
        })),
      );
      if (call.cancelled) this.deps.logger.debug("produce answered after the client went away");
      return { topics };
    } finally {
      this.inFlightProduceBytes -= bytes;
    }
  }

  private produceError(partition: number, code: ErrorCode, message: string, hint?: LeaderHint): PartitionProduceResponse {
    return { partition, errorCode: code, errorMessage: message, baseOffset: -1n, logAppendTime: -1n, logStartOffset: -1n, currentLeader: hint };
  }

  private produceRefusal(req: ProduceRequest, code: ErrorCode, message: string): ProduceResponse {
    return { topics: req.topics.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => this.produceError(p.partition, code, message)) })) };
  }

  async fetch(req: FetchRequest, call: grpc.ServerUnaryCall<FetchRequest, unknown>): Promise<FetchTopicWire[]> {
    checkRange("max_wait_ms", req.maxWaitMs, 0, maxFetchWaitMs);
    checkRange("max_bytes", req.maxBytes, 0, maxFetchBytes);
    const maxBytes = req.maxBytes === 0 ? defaultFetchMaxBytes : req.maxBytes;
    checkRange("min_bytes", req.minBytes, 0, maxBytes);
    if (countPartitions(req.topics) > maxPartitionsPerRequest) throw new InvalidRequest(`at most ${maxPartitionsPerRequest} partitions per Fetch request`);
    for (const t of req.topics) {
      for (const p of t.partitions) {
        if (p.fetchOffset < 0n) throw new InvalidRequest(`fetch_offset ${p.fetchOffset} for ${t.topic}-${p.partition} is negative`);
        checkRange(`partition_max_bytes for ${t.topic}-${p.partition}`, p.partitionMaxBytes, 0, maxFetchBytes);
      }
    }
    const cancel = abortOnCancel(call);
    const deadline = Date.now() + req.maxWaitMs;
    for (;;) {
      const { topics, bytes, waiters, anyError } = this.readAll(req, maxBytes);
      const remaining = deadline - Date.now();
      if (bytes >= req.minBytes || bytes > 0 && req.minBytes === 0 || anyError || remaining <= 0 || cancel.signal.aborted) {
        cancel.release();
        this.deps.metrics?.fetchedBytes(bytes);
        return topics;
      }
      await waitForAny(waiters, remaining, cancel.signal);
      if (Date.now() >= deadline || cancel.signal.aborted) {
        cancel.release();
        const last = this.readAll(req, maxBytes);
        this.deps.metrics?.fetchedBytes(last.bytes);
        return last.topics;
      }
    }
  }

  private readAll(req: FetchRequest, maxBytes: number): { topics: FetchTopicWire[]; bytes: number; waiters: Waiters[]; anyError: boolean } {
    let budget = maxBytes;
    let total = 0;
    let anyError = false;
    const waiters: Waiters[] = [];
    const topics = req.topics.map((t) => ({
      topic: t.topic,
      partitions: t.partitions.map((fp): FetchPartitionWire => {
        const base = { partition: fp.partition, highWatermark: -1n, logStartOffset: -1n, logEndOffset: -1n, currentLeader: undefined, batches: [] as Uint8Array[] };
        const found = this.lookup(t.topic, fp.partition);
        if (!("p" in found)) {
          anyError = true;
          return { ...base, errorCode: found.code, errorMessage: found.message, currentLeader: this.leaderHint(undefined, t.topic, fp.partition) };
        }
        const p = found.p;
        const problem = p.leaderProblem(fp.currentLeaderEpoch);
        if (problem !== undefined) {
          anyError = true;
          return { ...base, errorCode: problem.code, errorMessage: problem.message, currentLeader: this.leaderHint(p, t.topic, fp.partition) };
        }
        const offsets = { highWatermark: p.log.highWatermark, logStartOffset: p.log.logStartOffset, logEndOffset: p.log.logEndOffset };
        if (fp.fetchOffset < offsets.logStartOffset || fp.fetchOffset > offsets.logEndOffset) {
          anyError = true;
          return {
            ...base,
            ...offsets,
            errorCode: ErrorCode.OFFSET_OUT_OF_RANGE,
            errorMessage: `${p.name}: offset ${fp.fetchOffset} is outside the log [${offsets.logStartOffset}, ${offsets.logEndOffset}] (log start offset ${offsets.logStartOffset}, log end offset ${offsets.logEndOffset})`,
          };
        }
        const partitionMax = Math.min(fp.partitionMaxBytes === 0 ? maxBytes : fp.partitionMaxBytes, budget);
        let batches: Uint8Array[] = [];
        let bytes = 0;
        if (partitionMax > 0 || total === 0) {
          try {
            const read = p.readCommitted(fp.fetchOffset, Math.max(partitionMax, 1));
            batches = read.batches;
            bytes = read.bytes;
          } catch (err) {
            anyError = true;
            if (err instanceof OffsetOutOfRangeError) {
              return { ...base, ...offsets, errorCode: ErrorCode.OFFSET_OUT_OF_RANGE, errorMessage: `${p.name}: ${err.message}` };
            }
            if (err instanceof StorageCorruptionError) return { ...base, ...offsets, errorCode: ErrorCode.STORAGE_ERROR, errorMessage: err.message };
            throw err;
          }
        }
        budget -= bytes;
        total += bytes;
        waiters.push(p.hwWaiters);
        return { ...base, ...offsets, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", batches };
      }),
    }));
    return { topics, bytes: total, waiters, anyError };
  }

  async listOffsets(req: ListOffsetsRequest): Promise<ListOffsetsResponse> {
    if (countPartitions(req.topics) > maxPartitionsPerRequest) throw new InvalidRequest(`at most ${maxPartitionsPerRequest} partitions per ListOffsets request`);
    return {
      topics: req.topics.map((t) => ({
        topic: t.topic,
        partitions: t.partitions.map((lp): ListOffsetsPartitionResponse => {
          const base = { partition: lp.partition, offset: -1n, timestamp: -1n, leaderEpoch: -1, currentLeader: undefined };
          const found = this.lookup(t.topic, lp.partition);
          if (!("p" in found)) return { ...base, errorCode: found.code, errorMessage: found.message, currentLeader: this.leaderHint(undefined, t.topic, lp.partition) };
          const p = found.p;
          const problem = p.leaderProblem(lp.currentLeaderEpoch);
          if (problem !== undefined) return { ...base, errorCode: problem.code, errorMessage: problem.message, currentLeader: this.leaderHint(p, t.topic, lp.partition) };
          const ok = { ...base, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", leaderEpoch: p.leaderEpoch };
          switch (lp.spec) {
            case OffsetSpec.OFFSET_SPEC_EARLIEST:
              return { ...ok, offset: p.log.logStartOffset };
            case OffsetSpec.OFFSET_SPEC_LATEST:
              return { ...ok, offset: p.log.highWatermark };
            case OffsetSpec.OFFSET_SPEC_TIMESTAMP: {
              const found = p.log.offsetForTimestamp(lp.timestamp);
              return found === undefined ? { ...ok, offset: p.log.highWatermark } : { ...ok, offset: found.offset, timestamp: found.timestamp };
            }
            default:
              throw new InvalidRequest(`offset spec ${String(lp.spec)} is not EARLIEST, LATEST or TIMESTAMP`);
          }
        }),
      })),
    };
  }
}

