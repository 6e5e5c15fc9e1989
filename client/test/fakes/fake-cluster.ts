// In-process fake Runnel cluster for client tests: real grpc-js servers on 127.0.0.1 (port 0) serving
// BrokerService (one per fake broker) and ControllerService, over one shared in-memory state. It does
// what the real broker promises to clients (leader routing with NOT_LEADER hints, idempotent sequence
// checks with DUPLICATE_SEQUENCE carrying the original offset, long-poll fetch, ListOffsets), and lets
// tests inject faults: an error code, a response dropped after the append, or a delay.
import * as grpc from "@grpc/grpc-js";
import { bindServer, serverOptions } from "@runnel/common";
import {
  BrokerServiceService, ControllerServiceService, ErrorCode, OffsetSpec, checksum, decodeBatch, resolveTopicConfig,
  topicConfigProblem, topicNameProblem, buildBatch, RecordBatch,
  type ConsumedRecord, type ProducerRecord, type BrokerServiceServer, type ControllerServiceServer,
  type FetchPartitionResponse, type PartitionProduceResponse, type TopicMetadata, type ProduceRequest,
} from "@runnel/proto";
import { EventEmitter } from "node:events";

export type ProduceFault =
  | { kind: "error"; code: ErrorCode; message?: string }
  | { kind: "dropResponseAfterAppend" }
  | { kind: "dropResponse" }
  | { kind: "delay"; ms: number }
  | undefined;

export interface ProduceCall {
  brokerId: number;
  topic: string;
  partition: number;
  baseSequence: number;
  producerId: bigint;
  recordCount: number;
}

interface ProducerState {
  epoch: number;
  nextSequence: number;
  recent: Array<{ sequence: number; count: number; baseOffset: bigint }>;
}

interface FakePartition {
  leaderId: number;
  leaderEpoch: number;
  replicas: number[];
  batches: RecordBatch[];
  logStartOffset: bigint;
  nextOffset: bigint;
  producers: Map<bigint, ProducerState>;
}

interface FakeTopic {
  name: string;
  topicId: string;
  configs: Record<string, string>;
  partitions: FakePartition[];
}

export interface FakeHooks {
  produce?: (call: ProduceCall) => ProduceFault;
  fetch?: (brokerId: number, topic: string, partition: number) => { code: ErrorCode; message?: string } | undefined;
}

export class FakeCluster {
  readonly topics = new Map<string, FakeTopic>();
  readonly produceCalls: ProduceCall[] = [];
  readonly hooks: FakeHooks = {};
  private readonly events = new EventEmitter();
  private readonly servers: grpc.Server[] = [];
  private readonly brokerPorts = new Map<number, number>();
  private controllerPort = 0;
  private nextProducerId = 1n;
  private metadataVersion = 1n;
  private topicSeq = 0;
  /** Broker ids that answer Metadata as if they were down (UNAVAILABLE). */
  readonly downBrokers = new Set<number>();

  private constructor(readonly brokerIds: number[]) {
    this.events.setMaxListeners(0);
  }

  static async start(options: { brokers?: number } = {}): Promise<FakeCluster> {
    const ids = Array.from({ length: options.brokers ?? 1 }, (_, i) => i + 1);
    const cluster = new FakeCluster(ids);
    for (const id of ids) {
      const server = new grpc.Server(serverOptions);
      server.addService(BrokerServiceService, cluster.brokerService(id));
      cluster.brokerPorts.set(id, await bindServer(server, "127.0.0.1:0"));
      cluster.servers.push(server);
    }
    const controller = new grpc.Server(serverOptions);
    controller.addService(ControllerServiceService, cluster.controllerService() as ControllerServiceServer);
    cluster.controllerPort = await bindServer(controller, "127.0.0.1:0");
    cluster.servers.push(controller);
    return cluster;
  }

  /** Every broker address, comma-separated. */
  get bootstrap(): string {
    return this.brokerIds.map((id) => this.brokerAddress(id)).join(",");
  }

  brokerAddress(id: number): string {
    return `127.0.0.1:${this.brokerPorts.get(id)}`;
  }

  get controllerAddress(): string {
    return `127.0.0.1:${this.controllerPort}`;
  }

  async stop(): Promise<void> {
    for (const s of this.servers) s.forceShutdown();
    this.events.removeAllListeners();
  }

  createTopic(name: string, partitions = 1, configs: Record<string, string> = {}): FakeTopic {
    const topic: FakeTopic = {
      name,
      topicId: `topic-${++this.topicSeq}`,
      configs: { ...configs },
      partitions: Array.from({ length: partitions }, (_, p) => ({
        leaderId: this.brokerIds[p % this.brokerIds.length]!,
        leaderEpoch: 0,
        replicas: [...this.brokerIds],
        batches: [],
        logStartOffset: 0n,
        nextOffset: 0n,
        producers: new Map(),
      })),
    };
    this.topics.set(name, topic);
    this.metadataVersion += 1n;
    return topic;
  }

  /** Moves leadership (bumping the leader epoch), as the controller would after a failure. */
  setLeader(topic: string, partition: number, brokerId: number): void {
    const p = this.partition(topic, partition);
    p.leaderId = brokerId;
    p.leaderEpoch += 1;
    this.metadataVersion += 1n;
  }

  /** Appends records directly (seeding data for consumer tests). */
  append(topic: string, partition: number, records: ProducerRecord[], nowMs = 1_700_000_000_000): bigint {
    const p = this.partition(topic, partition);
    const batch = buildBatch(records, { nowMs });
    return this.appendBatch(topic, partition, p, batch);
  }

  /** Drops batches wholly below `offset` (retention). */
  truncateBefore(topic: string, partition: number, offset: bigint): void {
    const p = this.partition(topic, partition);
    p.batches = p.batches.filter((b) => b.header!.baseOffset + BigInt(b.header!.recordCount) > offset);
    p.logStartOffset = p.batches[0]?.header!.baseOffset ?? p.nextOffset;
  }

  /** Every record stored in a partition, decoded. */
  records(topic: string, partition: number): ConsumedRecord[] {
    return this.partition(topic, partition).batches.flatMap((b) => decodeBatch(b));
  }

  partition(topic: string, partition: number): FakePartition {
    const p = this.topics.get(topic)?.partitions[partition];
    if (p === undefined) throw new Error(`fake: no topic "${topic}" partition ${partition}`);
    return p;
  }

  private appendBatch(topic: string, partition: number, p: FakePartition, batch: RecordBatch): bigint {
    const base = p.nextOffset;
    const stored = RecordBatch.fromPartial({ ...batch, header: { ...batch.header!, baseOffset: base, leaderEpoch: p.leaderEpoch } });
    p.batches.push(stored);
    p.nextOffset += BigInt(batch.header!.recordCount);
    this.events.emit("append", topic, partition);
    return base;
  }

  private metadataFor(names: string[]): TopicMetadata[] {
    const wanted = names.length === 0 ? [...this.topics.keys()] : names;
    return wanted.map((name) => {
      const t = this.topics.get(name);
      if (t === undefined) {
        return { name, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, errorMessage: `topic "${name}" does not exist`, topicId: "", partitions: [], configs: {} };
      }
      return {
        name, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", topicId: t.topicId, configs: t.configs,
        partitions: t.partitions.map((p, i) => ({
          partition: i, errorCode: p.leaderId < 0 ? ErrorCode.LEADER_NOT_AVAILABLE : ErrorCode.ERROR_CODE_NONE,
          leaderId: p.leaderId, leaderEpoch: p.leaderEpoch, replicas: p.replicas, isr: p.replicas, offlineReplicas: [],
        })),
      };
    });
  }

  private produceOne(brokerId: number, topic: string, partition: number, batch: RecordBatch | undefined): PartitionProduceResponse {
    const base = { partition, errorMessage: "", baseOffset: -1n, logAppendTime: -1n, logStartOffset: -1n, currentLeader: undefined };
    const t = this.topics.get(topic);
    const p = t?.partitions[partition];
    if (t === undefined || p === undefined) return { ...base, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, errorMessage: `topic "${topic}" partition ${partition} does not exist` };
    if (p.leaderId !== brokerId) return { ...base, errorCode: ErrorCode.NOT_LEADER, currentLeader: { leaderId: p.leaderId, leaderEpoch: p.leaderEpoch } };
    if (batch?.header === undefined) return { ...base, errorCode: ErrorCode.INVALID_REQUEST, errorMessage: "no batch" };
    const h = batch.header;
    if (checksum(batch.records) !== h.crc) return { ...base, errorCode: ErrorCode.CORRUPT_BATCH, errorMessage: "CRC32C mismatch" };
    const maxBytes = resolveTopicConfig(t.configs).maxMessageBytes;
    if (RecordBatch.encode(batch).finish().length > maxBytes) return { ...base, errorCode: ErrorCode.RECORD_TOO_LARGE, errorMessage: `batch is larger than max.message.bytes ${maxBytes}` };
    if (h.producerId > 0n) {
      let s = p.producers.get(h.producerId);
      if (s === undefined || h.producerEpoch > s.epoch) {
        if (h.baseSequence !== 0) {
          return { ...base, errorCode: s === undefined ? ErrorCode.UNKNOWN_PRODUCER_ID : ErrorCode.OUT_OF_ORDER_SEQUENCE, errorMessage: `expected sequence 0, got ${h.baseSequence}` };
        }
        s = { epoch: h.producerEpoch, nextSequence: 0, recent: [] };
        p.producers.set(h.producerId, s);
      }
      if (h.producerEpoch < s.epoch) return { ...base, errorCode: ErrorCode.INVALID_PRODUCER_EPOCH, errorMessage: `epoch ${h.producerEpoch} < ${s.epoch}` };
      const dup = s.recent.find((r) => r.sequence === h.baseSequence && r.count === h.recordCount);
      if (dup !== undefined) return { ...base, errorCode: ErrorCode.DUPLICATE_SEQUENCE, baseOffset: dup.baseOffset, logStartOffset: p.logStartOffset };
      if (h.baseSequence !== s.nextSequence) {
        return { ...base, errorCode: ErrorCode.OUT_OF_ORDER_SEQUENCE, errorMessage: `expected sequence ${s.nextSequence}, got ${h.baseSequence}` };
      }
      const offset = this.appendBatch(topic, partition, p, batch);
      s.nextSequence += h.recordCount;
      s.recent.push({ sequence: h.baseSequence, count: h.recordCount, baseOffset: offset });
      if (s.recent.length > 5) s.recent.shift();
      return { ...base, errorCode: ErrorCode.ERROR_CODE_NONE, baseOffset: offset, logStartOffset: p.logStartOffset };
    }
    const offset = this.appendBatch(topic, partition, p, batch);
    return { ...base, errorCode: ErrorCode.ERROR_CODE_NONE, baseOffset: offset, logStartOffset: p.logStartOffset };
  }

  private brokerService(brokerId: number): BrokerServiceServer {
    return {
      // Share groups are exercised against real brokers (cluster-tests), not this fake.
      shareFetch: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: "the fake cluster has no share groups" }),
      shareAcknowledge: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: "the fake cluster has no share groups" }),
      metadata: (call, cb) => {
        if (this.downBrokers.has(brokerId)) return cb({ code: grpc.status.UNAVAILABLE, details: "fake broker is down" });
        cb(null, {
          metadataVersion: this.metadataVersion,
          clusterId: "fake-cluster",
          controller: { brokerId: -1, host: "127.0.0.1", port: this.controllerPort, rack: "" },
          brokers: this.brokerIds.map((id) => ({ brokerId: id, host: "127.0.0.1", port: this.brokerPorts.get(id)!, rack: "" })),
          topics: this.metadataFor(call.request.topics),
        });
      },
      produce: (call, cb) => {
        const req: ProduceRequest = call.request;
        let fault: ProduceFault;
        const responses = req.topics.map((t) => ({
          topic: t.topic,
          partitions: t.partitions.map((pd) => {
            const h = pd.batch?.header;
            const record: ProduceCall = { brokerId, topic: t.topic, partition: pd.partition, baseSequence: h?.baseSequence ?? -1, producerId: h?.producerId ?? 0n, recordCount: h?.recordCount ?? 0 };
            this.produceCalls.push(record);
            const f = this.hooks.produce?.(record);
            fault ??= f;
            if (f?.kind === "error") return { partition: pd.partition, errorCode: f.code, errorMessage: f.message ?? "injected", baseOffset: -1n, logAppendTime: -1n, logStartOffset: -1n, currentLeader: undefined };
            if (f?.kind === "dropResponse") return undefined;
            return this.produceOne(brokerId, t.topic, pd.partition, pd.batch);
          }),
        }));
        if (fault?.kind === "dropResponseAfterAppend" || fault?.kind === "dropResponse") return; // the client's deadline fires
        const answer = () => cb(null, { topics: responses.map((t) => ({ topic: t.topic, partitions: t.partitions.filter((p) => p !== undefined) })) });
        if (fault?.kind === "delay") setTimeout(answer, fault.ms);
        else answer();
      },
      fetch: (call, cb) => {
        const req = call.request;
        const build = () => {
          let total = 0;
          const topics = req.topics.map((t) => ({
            topic: t.topic,
            partitions: t.partitions.map((fp): FetchPartitionResponse => {
              const base = { partition: fp.partition, errorMessage: "", highWatermark: -1n, logStartOffset: -1n, logEndOffset: -1n, currentLeader: undefined, batches: [] as RecordBatch[] };
              const injected = this.hooks.fetch?.(brokerId, t.topic, fp.partition);
              if (injected !== undefined) return { ...base, errorCode: injected.code, errorMessage: injected.message ?? "injected" };
              const p = this.topics.get(t.topic)?.partitions[fp.partition];
              if (p === undefined) return { ...base, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION };
              if (p.leaderId !== brokerId) return { ...base, errorCode: ErrorCode.NOT_LEADER, currentLeader: { leaderId: p.leaderId, leaderEpoch: p.leaderEpoch } };
              const bounds = { highWatermark: p.nextOffset, logStartOffset: p.logStartOffset, logEndOffset: p.nextOffset };
              if (fp.fetchOffset < p.logStartOffset || fp.fetchOffset > p.nextOffset) {
                return { ...base, ...bounds, errorCode: ErrorCode.OFFSET_OUT_OF_RANGE, errorMessage: `offset ${fp.fetchOffset} is outside [${p.logStartOffset}, ${p.nextOffset}]` };
              }
              const limit = fp.partitionMaxBytes > 0 ? fp.partitionMaxBytes : req.maxBytes;
              const batches: RecordBatch[] = [];
              let bytes = 0;
              for (const b of p.batches) {
                if (b.header!.baseOffset + BigInt(b.header!.recordCount) <= fp.fetchOffset) continue;
                const size = b.records.length + 64;
                if (batches.length > 0 && bytes + size > limit) break;
                batches.push(b);
                bytes += size;
              }
              total += bytes;
              return { ...base, ...bounds, errorCode: ErrorCode.ERROR_CODE_NONE, batches };
            }),
          }));
          return { topics, total };
        };
        const first = build();
        if (first.total >= Math.max(1, req.minBytes) || req.maxWaitMs === 0) return cb(null, { topics: first.topics });
        const done = () => {
          clearTimeout(timer);
          this.events.off("append", done);
          cb(null, { topics: build().topics });
        };
        const timer = setTimeout(done, req.maxWaitMs);
        this.events.on("append", done);
      },
      listOffsets: (call, cb) => {
        cb(null, {
          topics: call.request.topics.map((t) => ({
            topic: t.topic,
            partitions: t.partitions.map((lp) => {
              const p = this.topics.get(t.topic)?.partitions[lp.partition];
              const base = { partition: lp.partition, errorMessage: "", offset: -1n, timestamp: -1n, leaderEpoch: -1, currentLeader: undefined };
              if (p === undefined) return { ...base, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION };
              if (p.leaderId !== brokerId) return { ...base, errorCode: ErrorCode.NOT_LEADER, currentLeader: { leaderId: p.leaderId, leaderEpoch: p.leaderEpoch } };
              let offset = lp.spec === OffsetSpec.OFFSET_SPEC_EARLIEST ? p.logStartOffset : p.nextOffset;
              let timestamp = -1n;
              if (lp.spec === OffsetSpec.OFFSET_SPEC_TIMESTAMP) {
                const hit = p.batches.flatMap((b) => decodeBatch(b)).find((r) => r.timestamp >= lp.timestamp);
                if (hit !== undefined) {
                  offset = hit.offset;
                  timestamp = hit.timestamp;
                }
              }
              return { ...base, errorCode: ErrorCode.ERROR_CODE_NONE, offset, timestamp, leaderEpoch: p.leaderEpoch };
            }),
          })),
        });
      },
    };
  }

  private controllerService(): Partial<ControllerServiceServer> {
    const result = (name: string, code: ErrorCode, message = "", topicId = "") => ({ name, errorCode: code, errorMessage: message, topicId });
    return {
      createTopics: (call, cb) => {
        cb(null, {
          topics: call.request.topics.map((t) => {
            const nameProblem = topicNameProblem(t.name);
            if (nameProblem !== undefined) return result(t.name, ErrorCode.INVALID_TOPIC_NAME, nameProblem);
            if (this.topics.has(t.name)) return result(t.name, ErrorCode.TOPIC_ALREADY_EXISTS, `topic "${t.name}" already exists`);
            for (const [k, v] of Object.entries(t.configs)) {
              const problem = topicConfigProblem(k, v);
              if (problem !== undefined) return result(t.name, ErrorCode.INVALID_CONFIG, problem);
            }
            if (t.partitions < 0 || t.partitions > 10_000) return result(t.name, ErrorCode.INVALID_PARTITIONS, `partitions must be 1..10000, got ${t.partitions}`);
            if (t.replicationFactor < 0 || t.replicationFactor > this.brokerIds.length) {
              return result(t.name, ErrorCode.INVALID_REPLICATION_FACTOR, `replication factor ${t.replicationFactor} is above the ${this.brokerIds.length} live brokers`);
            }
            if (call.request.validateOnly) return result(t.name, ErrorCode.ERROR_CODE_NONE);
            const created = this.createTopic(t.name, t.partitions === 0 ? 1 : t.partitions, t.configs);
            return result(t.name, ErrorCode.ERROR_CODE_NONE, "", created.topicId);
          }),
        });
      },
      deleteTopics: (call, cb) => {
        cb(null, {
          topics: call.request.names.map((n) => {
            if (!this.topics.delete(n)) return result(n, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic "${n}" does not exist`);
            this.metadataVersion += 1n;
            return result(n, ErrorCode.ERROR_CODE_NONE);
          }),
        });
      },
      alterTopicConfigs: (call, cb) => {
        cb(null, {
          topics: call.request.topics.map((a) => {
            const t = this.topics.get(a.name);
            if (t === undefined) return result(a.name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic "${a.name}" does not exist`);
            for (const [k, v] of Object.entries(a.set)) {
              const problem = topicConfigProblem(k, v);
              if (problem !== undefined) return result(a.name, ErrorCode.INVALID_CONFIG, problem);
            }
            Object.assign(t.configs, a.set);
            for (const k of a.remove) delete t.configs[k];
            this.metadataVersion += 1n;
            return result(a.name, ErrorCode.ERROR_CODE_NONE);
          }),
        });
      },
      describeCluster: (_call, cb) => {
        const parts = [...this.topics.values()].flatMap((t) => t.partitions);
        cb(null, {
          clusterId: "fake-cluster",
          controller: { brokerId: -1, host: "127.0.0.1", port: this.controllerPort, rack: "" },
          metadataVersion: this.metadataVersion,
          brokers: this.brokerIds.map((id) => ({
            endpoint: { brokerId: id, host: "127.0.0.1", port: this.brokerPorts.get(id)!, rack: "" },
            alive: !this.downBrokers.has(id), brokerEpoch: 1n,
            leaderCount: parts.filter((p) => p.leaderId === id).length,
            replicaCount: parts.filter((p) => p.replicas.includes(id)).length,
            shuttingDown: false,
          })),
          topicCount: this.topics.size,
          partitionCount: parts.length,
          offlinePartitionCount: parts.filter((p) => p.leaderId < 0).length,
          underReplicatedPartitionCount: 0,
        });
      },
      initProducerId: (call, cb) => {
        if (call.request.producerId > 0n) {
          cb(null, { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", producerId: call.request.producerId, producerEpoch: call.request.producerEpoch + 1 });
        } else {
          cb(null, { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", producerId: this.nextProducerId++, producerEpoch: 0 });
        }
      },
    };
  }
}
