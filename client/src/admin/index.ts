// Admin: topic and cluster management. Creating, deleting and reconfiguring topics and describing the
// cluster go to the controller (its address comes from Metadata); listing and describing topics use
// any broker's Metadata; offsets come from partition leaders. Names and configuration are checked
// locally first with the same rules the controller applies, so typos fail fast with a clear message.
// (Consumer-group administration will live here too once groups exist.)
import { ErrorCode, topicConfigProblem, topicNameProblem, type TopicResult } from "@runnel/proto";
import { InvalidConfigError, InvalidTopicNameError, RunnelError, errorFromCode, type RunnelError as RunnelErrorType } from "../errors/index.js";
import type { ChannelPool, ControllerMethods } from "../network/index.js";
import type { ClusterMetadata, PartitionInfo } from "../metadata/index.js";
import { listOffsets, type OffsetQuery, type PartitionOffset } from "../metadata/offsets.js";
import { retryPolicy, withRetry, type RetryOptions, type RetryPolicy } from "../retry/index.js";

export interface NewTopic {
  name: string;
  /** Partition count; default: the cluster default (1). */
  partitions?: number;
  /** Replication factor; default: min(3, live brokers). */
  replicationFactor?: number;
  /** Configuration overrides (retention.ms, min.insync.replicas, ...). */
  configs?: Record<string, string>;
}

export interface TopicOutcome {
  name: string;
  topicId: string;
  /** Set when this topic failed. */
  error: RunnelErrorType | undefined;
}

export interface TopicDescription {
  name: string;
  topicId: string;
  partitions: PartitionInfo[];
  configs: Record<string, string>;
}

export interface BrokerStatus {
  brokerId: number;
  host: string;
  port: number;
  rack: string;
  alive: boolean;
  leaderCount: number;
  replicaCount: number;
  shuttingDown: boolean;
}

export interface ClusterDescription {
  clusterId: string;
  controller: { host: string; port: number } | undefined;
  metadataVersion: bigint;
  brokers: BrokerStatus[];
  topicCount: number;
  partitionCount: number;
  offlinePartitionCount: number;
  underReplicatedPartitionCount: number;
}

export interface AdminContext {
  pool: ChannelPool;
  metadata: ClusterMetadata;
  retry: RetryOptions;
}

function invalidTopicName(name: string, problem: string): InvalidTopicNameError {
  return new InvalidTopicNameError(problem, { code: ErrorCode.INVALID_TOPIC_NAME, retriable: false, topic: name });
}

function checkConfigs(name: string, configs: Record<string, string>): void {
  for (const [k, v] of Object.entries(configs)) {
    const problem = topicConfigProblem(k, v);
    if (problem !== undefined) throw new InvalidConfigError(problem, { code: ErrorCode.INVALID_CONFIG, retriable: false, topic: name });
  }
}

export class Admin {
  private readonly policy: RetryPolicy;

  constructor(private readonly ctx: AdminContext) {
    this.policy = retryPolicy(ctx.retry);
  }

  private controllerCall<M extends keyof ControllerMethods>(method: M, request: ControllerMethods[M][0]): Promise<ControllerMethods[M][1]> {
    return withRetry(this.policy, async () => {
      const address = await this.ctx.metadata.controllerAddress();
      return this.ctx.pool.controller(address, method, request);
    }, { beforeRetry: () => this.ctx.metadata.refresh().catch(() => undefined) });
  }

  private outcomes(results: TopicResult[]): TopicOutcome[] {
    return results.map((r) => ({
      name: r.name,
      topicId: r.topicId,
      error: r.errorCode === ErrorCode.ERROR_CODE_NONE ? undefined : errorFromCode(r.errorCode, { topic: r.name, detail: r.errorMessage }),
    }));
  }

  /** Creates topics; per-topic failures are reported in the outcomes, not thrown. */
  async createTopics(topics: readonly NewTopic[], options: { validateOnly?: boolean } = {}): Promise<TopicOutcome[]> {
    for (const t of topics) {
      const problem = topicNameProblem(t.name);
      if (problem !== undefined) throw invalidTopicName(t.name, problem);
      checkConfigs(t.name, t.configs ?? {});
    }
    const res = await this.controllerCall("createTopics", {
      topics: topics.map((t) => ({ name: t.name, partitions: t.partitions ?? 0, replicationFactor: t.replicationFactor ?? 0, configs: t.configs ?? {} })),
      validateOnly: options.validateOnly ?? false,
    });
    return this.outcomes(res.topics);
  }

  /** Creates one topic; throws its error (TopicAlreadyExistsError, InvalidReplicationFactorError, ...). */
  async createTopic(topic: NewTopic): Promise<{ topicId: string }> {
    const [outcome] = await this.createTopics([topic]);
    if (outcome === undefined) throw new RunnelError(`controller gave no result for topic "${topic.name}"`, { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: false, topic: topic.name });
    if (outcome.error !== undefined) throw outcome.error;
    return { topicId: outcome.topicId };
  }

  async deleteTopics(names: readonly string[]): Promise<TopicOutcome[]> {
    const res = await this.controllerCall("deleteTopics", { names: [...names] });
    return this.outcomes(res.topics);
  }

  async deleteTopic(name: string): Promise<void> {
    const [outcome] = await this.deleteTopics([name]);
    if (outcome?.error !== undefined) throw outcome.error;
  }

  /** Sets and/or removes configuration keys of a topic. */
  async alterTopicConfig(name: string, change: { set?: Record<string, string>; remove?: string[] }): Promise<void> {
    checkConfigs(name, change.set ?? {});
    const res = await this.controllerCall("alterTopicConfigs", { topics: [{ name, set: change.set ?? {}, remove: change.remove ?? [] }] });
    const outcome = this.outcomes(res.topics)[0];
    if (outcome?.error !== undefined) throw outcome.error;
  }

  /** Topic names, sorted. */
  async listTopics(): Promise<string[]> {
    await this.ctx.metadata.refresh([], true);
    return this.ctx.metadata.allTopics().map((t) => t.name).sort();
  }

  /** Partitions (leader, replicas, ISR) and configuration overrides of each topic; all topics when `names` is omitted. */
  async describeTopics(names?: readonly string[]): Promise<TopicDescription[]> {
    if (names === undefined) {
      await this.ctx.metadata.refresh([], true);
      return this.ctx.metadata.allTopics().sort((a, b) => a.name.localeCompare(b.name));
    }
    await this.ctx.metadata.refresh(names);
    const out: TopicDescription[] = [];
    for (const n of names) out.push(await this.ctx.metadata.ensureTopic(n));
    return out;
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    const [d] = await this.describeTopics([name]);
    return d!;
  }

  async describeCluster(): Promise<ClusterDescription> {
    const r = await this.controllerCall("describeCluster", {});
    return {
      clusterId: r.clusterId,
      controller: r.controller === undefined ? undefined : { host: r.controller.host, port: r.controller.port },
      metadataVersion: r.metadataVersion,
      brokers: r.brokers.map((b) => ({
        brokerId: b.endpoint?.brokerId ?? -1,
        host: b.endpoint?.host ?? "",
        port: b.endpoint?.port ?? 0,
        rack: b.endpoint?.rack ?? "",
        alive: b.alive,
        leaderCount: b.leaderCount,
        replicaCount: b.replicaCount,
        shuttingDown: b.shuttingDown,
      })).sort((a, b) => a.brokerId - b.brokerId),
      topicCount: r.topicCount,
      partitionCount: r.partitionCount,
      offlinePartitionCount: r.offlinePartitionCount,
      underReplicatedPartitionCount: r.underReplicatedPartitionCount,
    };
  }

  /** Earliest offsets, high watermarks (latest) or the first offsets at a timestamp, per partition. */
  listOffsets(topic: string, query: OffsetQuery = "latest", partitions?: readonly number[]): Promise<PartitionOffset[]> {
    return listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, topic, query, partitions);
  }
}
