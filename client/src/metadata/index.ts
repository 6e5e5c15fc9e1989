// Metadata: the client's cache of the cluster (brokers, controller, topics, partition leaders and
// leader epochs), filled from the Metadata RPC of any reachable broker. It bootstraps from a list of
// addresses, routes each partition to its leader, and refreshes on demand (NOT_LEADER,
// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE) with concurrent refreshes coalesced into one.
import { parseHostPort } from "@runnel/common";
import { ErrorCode, type MetadataResponse, type TopicMetadata } from "@runnel/proto";
import { ConnectionError, RunnelError, errorFromCode, LeaderNotAvailableError } from "../errors/index.js";
import { addressOf, type ChannelPool } from "../network/index.js";

export interface PartitionInfo {
  partition: number;
  /** Leader broker id, or -1 when the partition has no leader. */
  leaderId: number;
  leaderEpoch: number;
  replicas: number[];
  isr: number[];
  offlineReplicas: number[];
  errorCode: ErrorCode;
}

export interface TopicInfo {
  name: string;
  topicId: string;
  partitions: PartitionInfo[];
  configs: Record<string, string>;
}

export interface BrokerInfo {
  brokerId: number;
  host: string;
  port: number;
  rack: string;
  address: string;
}

/** Parses a bootstrap list ("h:p,h:p" or an array); throws RangeError on a bad address. */
export function parseBootstrap(bootstrap: string | readonly string[]): string[] {
  const list = (typeof bootstrap === "string" ? [bootstrap] : [...bootstrap])
    .flatMap((s) => s.split(","))
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (list.length === 0) throw new RangeError("bootstrap needs at least one host:port");
  return list.map((s) => addressOf(parseHostPort(s)));
}

export class ClusterMetadata {
  private readonly bootstrap: string[];
  private brokers = new Map<number, BrokerInfo>();
  private topics = new Map<string, TopicInfo>();
  private controller: string | undefined;
  private clusterIdValue = "";
  private version = -1n;
  /** Topics the client uses; refreshes ask for these. */
  private readonly interest = new Set<string>();
  private inflight: Promise<void> | undefined;
  private inflightAll = false;

  constructor(private readonly pool: ChannelPool, bootstrap: string | readonly string[]) {
    this.bootstrap = parseBootstrap(bootstrap);
  }

  get clusterId(): string {
    return this.clusterIdValue;
  }

  get bootstrapAddresses(): readonly string[] {
    return this.bootstrap;
  }

  /** Fetches metadata for the topics of interest (plus `topics`), or for all topics with `all`. Coalesces concurrent calls. */
  async refresh(topics: readonly string[] = [], all = false): Promise<void> {
    for (const t of topics) this.interest.add(t);
    // A refresh already running may not cover the new topics (or, for `all`, every topic: listing
    // topics must not settle for a refresh of the few a producer uses); wait for it, then run another.
    while (this.inflight !== undefined) {
      const covered = this.inflightAll || (!all && topics.every((t) => this.lastRequested.has(t)));
      const running = this.inflight;
      await running.catch(() => undefined);
      if (covered) return running;
    }
    this.inflightAll = all;
    this.lastRequested = new Set(this.interest);
    this.inflight = this.doRefresh(all ? [] : [...this.interest]).finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private lastRequested = new Set<string>();
  private rotation = 0;

  private async doRefresh(topics: string[]): Promise<void> {
    // Known brokers first (they are the live cluster), then the bootstrap list; each refresh starts
    // at the next one, so a broker that answers with a stale view (one cut off from the controller
    // still believes it leads) cannot be the only one ever asked.
    const known = [...new Set([...[...this.brokers.values()].map((b) => b.address), ...this.bootstrap])];
    const start = known.length === 0 ? 0 : this.rotation++ % known.length;
    const candidates = [...known.slice(start), ...known.slice(0, start)];
    let lastErr: unknown;
    let staleAnswers = 0;
    for (const address of candidates) {
      try {
        const res = await this.pool.broker(address, "metadata", { topics });
        // Metadata versions only grow: an answer older than what we hold comes from a broker that
        // lost touch with the controller. Ask the next one instead of going back in time.
        if (res.metadataVersion < this.version) {
          staleAnswers++;
          continue;
        }
        this.apply(res, topics.length === 0);
        return;
      } catch (err) {
        lastErr = err;
        if (err instanceof RunnelError && !(err instanceof ConnectionError) && !err.retriable) throw err;
      }
    }
    if (staleAnswers > 0) return; // every broker that answered is behind us: keep what we have
    if (lastErr instanceof ConnectionError || lastErr === undefined) {
      throw new ConnectionError(`cannot reach the cluster at ${this.bootstrap.join(",")}`, {
        code: ErrorCode.BROKER_NOT_AVAILABLE, retriable: true, outcomeUnknown: true, address: this.bootstrap.join(","), cause: lastErr,
      });
    }
    throw lastErr;
  }

  private apply(res: MetadataResponse, allTopics: boolean): void {
    this.version = res.metadataVersion;
    this.clusterIdValue = res.clusterId;
    const brokers = new Map<number, BrokerInfo>();
    for (const b of res.brokers) brokers.set(b.brokerId, { ...b, address: addressOf({ host: b.host, port: b.port }) });
    if (brokers.size > 0) this.brokers = brokers;
    if (res.controller !== undefined && res.controller.host !== "") {
      this.controller = addressOf({ host: res.controller.host, port: res.controller.port });
    }
    if (allTopics) this.topics = new Map();
    for (const t of res.topics) {
      if (t.errorCode === ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) this.topics.delete(t.name);
      if (t.errorCode !== ErrorCode.ERROR_CODE_NONE) {
        this.topicErrors.set(t.name, t);
        continue;
      }
      this.topicErrors.delete(t.name);
      this.topics.set(t.name, toTopicInfo(t));
    }
  }

  private readonly topicErrors = new Map<string, TopicMetadata>();

  /** The cached topic, if known. */
  topic(name: string): TopicInfo | undefined {
    return this.topics.get(name);
  }

  allTopics(): TopicInfo[] {
    return [...this.topics.values()];
  }

  brokerList(): BrokerInfo[] {
    return [...this.brokers.values()].sort((a, b) => a.brokerId - b.brokerId);
  }

  get metadataVersion(): bigint {
    return this.version;
  }

  /** The topic, refreshing metadata when it is not cached; throws UnknownTopicError (or the topic's error) when absent. */
  async ensureTopic(name: string): Promise<TopicInfo> {
    const cached = this.topics.get(name);
    if (cached !== undefined) return cached;
    await this.refresh([name]);
    const info = this.topics.get(name);
    if (info !== undefined) return info;
    const err = this.topicErrors.get(name);
    throw errorFromCode(err?.errorCode ?? ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, {
      topic: name,
      detail: err?.errorMessage || `topic "${name}" does not exist`,
    });
  }

  brokerAddress(brokerId: number): string | undefined {
    return this.brokers.get(brokerId)?.address;
  }

  /** The leader's address for a partition; throws LeaderNotAvailableError when it has none (or it is unknown). */
  leaderFor(topic: string, partition: number): { address: string; leaderId: number; leaderEpoch: number } {
    const p = this.topics.get(topic)?.partitions[partition];
    const address = p === undefined || p.leaderId < 0 ? undefined : this.brokerAddress(p.leaderId);
    if (p === undefined || address === undefined) {
      throw new LeaderNotAvailableError(`no known leader for topic "${topic}" partition ${partition}`, {
        code: ErrorCode.LEADER_NOT_AVAILABLE, retriable: true, topic, partition,
      });
    }
    return { address, leaderId: p.leaderId, leaderEpoch: p.leaderEpoch };
  }

  /** The controller's address (from Metadata); refreshes once when unknown. */
  async controllerAddress(): Promise<string> {
    if (this.controller === undefined) await this.refresh();
    if (this.controller === undefined) {
      throw new RunnelError("the cluster did not say where its controller is", { code: ErrorCode.NOT_READY, retriable: true });
    }
    return this.controller;
  }
}

function toTopicInfo(t: TopicMetadata): TopicInfo {
  const partitions = [...t.partitions].sort((a, b) => a.partition - b.partition).map((p) => ({
    partition: p.partition,
    leaderId: p.leaderId,
    leaderEpoch: p.leaderEpoch,
    replicas: p.replicas,
    isr: p.isr,
    offlineReplicas: p.offlineReplicas,
    errorCode: p.errorCode,
  }));
  return { name: t.name, topicId: t.topicId, partitions, configs: { ...t.configs } };
}
