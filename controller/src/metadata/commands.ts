// The commands of the metadata state machine. Each takes the state, its input and the time (nowMs) and
// returns { state, delta, response }: the next state, the MetadataDelta to publish (undefined when
// nothing visible changed) and the answer. The caller persists the state, then publishes, then answers.
import { invariant } from "@runnel/common";
import {
  ErrorCode,
  type MetadataDelta,
  type PartitionState,
  type TopicPartitions,
  resolveTopicConfig,
  topicConfigKeys,
  topicConfigProblem,
  topicNameProblem,
} from "@runnel/proto";
import { placeReplicas } from "../placement/index.js";
import { balancePreferredLeaders, electOfflineLeaders, moveAwayForShutdown, removeFromPartitions } from "./elections.js";
import { partitionStateOf } from "./snapshot.js";
import {
  type BrokerRecord,
  type ClusterState,
  Draft,
  inReplicaOrder,
  isElectable,
  maxProducerEpoch,
  type MetadataConfig,
  type PartitionRecord,
  type TopicRecord,
} from "./state.js";

/** Partition count limit per topic (as documented in CreatableTopic). */
export const maxPartitionsPerTopic = 10_000;
/** Partition count limit for the whole cluster: bounds snapshot size and controller memory. */
export const maxPartitionsInCluster = 100_000;
/** Default replication factor when a request says 0 (capped by the live broker count). */
export const defaultReplicationFactor = 3;

export interface CommandResult<R> {
  state: ClusterState;
  delta: MetadataDelta | undefined;
  response: R;
}

export interface Outcome {
  errorCode: ErrorCode;
  errorMessage: string;
}

const ok: Outcome = { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "" };

function fail(errorCode: ErrorCode, errorMessage: string): Outcome {
  return { errorCode, errorMessage };
}

function finish<R>(draft: Draft, response: R): CommandResult<R> {
  const { state, delta } = draft.finish();
  return { state, delta, response };
}

function unchanged<R>(state: ClusterState, response: R): CommandResult<R> {
  return { state, delta: undefined, response };
}

/** Checks that a broker call carries the broker's current, unfenced epoch. */
export function brokerEpochProblem(state: ClusterState, brokerId: number, brokerEpoch: bigint): string | undefined {
  const broker = state.brokers.get(brokerId);
  if (broker === undefined) return `broker ${brokerId} is not registered; register first`;
  if (broker.epoch !== brokerEpoch) return `broker ${brokerId} epoch ${brokerEpoch} is not the current registration (epoch ${broker.epoch}); register again`;
  if (broker.fenced) return `broker ${brokerId} epoch ${brokerEpoch} was fenced (its session expired); register again`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Broker lifecycle

export interface RegisterBrokerInput {
  brokerId: number;
  host: string;
  port: number;
  rack: string;
  incarnationId: string;
}

export function registerBroker(
  state: ClusterState,
  input: RegisterBrokerInput,
  nowMs: number,
  config: MetadataConfig,
): CommandResult<Outcome & { brokerEpoch: bigint }> {
  const existing = state.brokers.get(input.brokerId);
  const heartbeat = state.lastHeartbeatMs.get(input.brokerId);
  if (
    existing !== undefined &&
    existing.alive &&
    existing.incarnationId !== "" &&
    input.incarnationId !== "" &&
    existing.incarnationId !== input.incarnationId &&
    heartbeat !== undefined &&
    nowMs - heartbeat < config.sessionTimeoutMs
  ) {
    // Two processes claiming one broker id would keep fencing each other; refuse the newcomer until
    // the live one's session lapses (a restart with a wiped data directory waits one session timeout).
    return unchanged(state, {
      ...fail(
        ErrorCode.BROKER_NOT_AVAILABLE,
        `broker id ${input.brokerId} is held by a live broker with another data directory (incarnation ${existing.incarnationId}); retry after its session of ${config.sessionTimeoutMs} ms lapses`,
      ),
      brokerEpoch: -1n,
    });
  }
  const draft = new Draft(state);
  if (existing !== undefined && !existing.fenced) {
    // The previous incarnation is gone (the process restarted): its unflushed data may be lost, so
    // it leaves every ISR it can leave, exactly as if its session had expired.
    draft.putBroker({ ...existing, alive: false, fenced: true });
    removeFromPartitions(draft, existing.id);
  }
  const broker: BrokerRecord = {
    id: input.brokerId,
    epoch: draft.takeBrokerEpoch(),
    host: input.host,
    port: input.port,
    rack: input.rack,
    incarnationId: input.incarnationId,
    alive: true,
    fenced: false,
    shuttingDown: false,
  };
  draft.putBroker(broker);
  draft.setHeartbeat(broker.id, nowMs);
  // The broker does not rejoin ISRs here (its leader adds it once it has caught up), but a partition
  // whose last ISR member it is has no other leader to wait for.
  electOfflineLeaders(draft);
  return finish(draft, { ...ok, brokerEpoch: broker.epoch });
}

export interface HeartbeatInput {
  brokerId: number;
  brokerEpoch: bigint;
}

export function heartbeat(state: ClusterState, input: HeartbeatInput, nowMs: number): CommandResult<Outcome> {
  const problem = brokerEpochProblem(state, input.brokerId, input.brokerEpoch);
  if (problem !== undefined) return unchanged(state, fail(ErrorCode.STALE_BROKER_EPOCH, problem));
  const broker = state.brokers.get(input.brokerId)!;
  const draft = new Draft(state);
  draft.setHeartbeat(broker.id, nowMs);
  if (!broker.alive) {
    // Back from the grace period after a controller restart, with its registration intact.
    draft.putBroker({ ...broker, alive: true });
    electOfflineLeaders(draft);
  }
  return finish(draft, ok);
}

/**
 * Time passes: brokers whose session lapsed are fenced (leaderships move, ISRs shrink), and every
 * leaderImbalanceCheckMs the preferred leaders get their leadership back when enabled.
 */
export function tick(state: ClusterState, nowMs: number, config: MetadataConfig): CommandResult<{ fencedBrokerIds: number[] }> {
  const draft = new Draft(state);
  const fencedBrokerIds: number[] = [];
  for (const broker of [...state.brokers.values()].sort((a, b) => a.id - b.id)) {
    if (broker.fenced) continue;
    const last = state.lastHeartbeatMs.get(broker.id);
    invariant(last !== undefined, () => `broker ${broker.id} (epoch ${broker.epoch}) is not fenced but has no session start`);
    if (nowMs - last < config.sessionTimeoutMs) continue;
    draft.putBroker({ ...broker, alive: false, fenced: true });
    draft.setHeartbeat(broker.id, undefined);
    removeFromPartitions(draft, broker.id);
    fencedBrokerIds.push(broker.id);
  }
  if (config.autoLeaderRebalance && nowMs - draft.lastBalanceMs >= config.leaderImbalanceCheckMs) {
    draft.setLastBalanceMs(nowMs);
    balancePreferredLeaders(draft);
  }
  return finish(draft, { fencedBrokerIds });
}

export interface AlterPartitionInput {
  brokerId: number;
  brokerEpoch: bigint;
  topic: string;
  partition: number;
  leaderEpoch: number;
  partitionEpoch: number;
  newIsr: readonly number[];
}

export function alterPartition(state: ClusterState, input: AlterPartitionInput): CommandResult<Outcome & { partition: PartitionState | undefined }> {
  const epochProblem = brokerEpochProblem(state, input.brokerId, input.brokerEpoch);
  const topic = state.topics.get(input.topic);
  const p = topic?.partitions[input.partition];
  const current = p === undefined ? undefined : partitionStateOf(input.topic, input.partition, p);
  const reject = (code: ErrorCode, message: string) => unchanged(state, { ...fail(code, message), partition: current });
  if (epochProblem !== undefined) return reject(ErrorCode.STALE_BROKER_EPOCH, epochProblem);
  if (topic === undefined || p === undefined) {
    return reject(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `partition ${input.topic}-${input.partition} does not exist`);
  }
  const name = `${input.topic}-${input.partition}`;
  if (input.leaderEpoch < p.leaderEpoch) {
    return reject(ErrorCode.FENCED_LEADER_EPOCH, `partition ${name}: leader epoch ${input.leaderEpoch} is older than the current ${p.leaderEpoch}`);
  }
  if (input.leaderEpoch > p.leaderEpoch) {
    return reject(ErrorCode.UNKNOWN_LEADER_EPOCH, `partition ${name}: leader epoch ${input.leaderEpoch} is newer than the current ${p.leaderEpoch}`);
  }
  if (p.leader !== input.brokerId) {
    return reject(ErrorCode.NOT_LEADER, `partition ${name}: broker ${input.brokerId} is not the leader (leader ${p.leader})`);
  }
  if (input.partitionEpoch !== p.partitionEpoch) {
    return reject(ErrorCode.INVALID_PARTITION_EPOCH, `partition ${name}: partition epoch ${input.partitionEpoch} is not the current ${p.partitionEpoch}`);
  }
  const proposed = input.newIsr;
  if (new Set(proposed).size !== proposed.length) {
    return reject(ErrorCode.INVALID_REQUEST, `partition ${name}: proposed ISR [${proposed.join(",")}] has duplicates`);
  }
  if (!proposed.includes(p.leader)) {
    return reject(ErrorCode.INVALID_REQUEST, `partition ${name}: proposed ISR [${proposed.join(",")}] does not include the leader ${p.leader}`);
  }
  const outsiders = proposed.filter((b) => !p.replicas.includes(b));
  if (outsiders.length > 0) {
    return reject(ErrorCode.INVALID_REQUEST, `partition ${name}: proposed ISR members [${outsiders.join(",")}] are not replicas [${p.replicas.join(",")}]`);
  }
  const ineligible = proposed.filter((b) => !p.isr.includes(b) && !isElectable(state.brokers.get(b)));
  if (ineligible.length > 0) {
    return reject(ErrorCode.BROKER_NOT_AVAILABLE, `partition ${name}: brokers [${ineligible.join(",")}] cannot join the ISR: not alive, fenced or shutting down`);
  }
  const draft = new Draft(state);
  const next = draft.changePartition(input.topic, input.partition, { isr: inReplicaOrder(p.replicas, proposed) });
  return finish(draft, { ...ok, partition: partitionStateOf(input.topic, input.partition, next) });
}

export interface ControlledShutdownInput {
  brokerId: number;
  brokerEpoch: bigint;
}

export function controlledShutdown(state: ClusterState, input: ControlledShutdownInput): CommandResult<Outcome & { remainingLeaderships: TopicPartitions[] }> {
  const problem = brokerEpochProblem(state, input.brokerId, input.brokerEpoch);
  if (problem !== undefined) return unchanged(state, { ...fail(ErrorCode.STALE_BROKER_EPOCH, problem), remainingLeaderships: [] });
  const broker = state.brokers.get(input.brokerId)!;
  const draft = new Draft(state);
  if (!broker.shuttingDown) draft.putBroker({ ...broker, shuttingDown: true });
  const remaining = moveAwayForShutdown(draft, broker.id);
  const remainingLeaderships = [...remaining.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([topic, partitions]) => ({ topic, partitions }));
  return finish(draft, { ...ok, remainingLeaderships });
}

// ---------------------------------------------------------------------------------------------
// Admin

export interface CreateTopicInput {
  name: string;
  /** 0 means the default (1). */
  partitions: number;
  /** 0 means the default: min(3, live brokers). */
  replicationFactor: number;
  configs: Readonly<Record<string, string>>;
}

export interface TopicOutcome extends Outcome {
  name: string;
  topicId: string;
}

function configsProblem(configs: Readonly<Record<string, string>>, replicationFactor: number): string | undefined {
  for (const [key, value] of Object.entries(configs)) {
    const problem = topicConfigProblem(key, value);
    if (problem !== undefined) return problem;
  }
  const { minInsyncReplicas } = resolveTopicConfig(configs);
  if (minInsyncReplicas > replicationFactor) {
    return `min.insync.replicas ${minInsyncReplicas} is above the replication factor ${replicationFactor}: acks=all writes could never succeed`;
  }
  return undefined;
}

/** A topic id: unique in this cluster, never reused (the sequence only grows), safe in file names. */
export function topicIdOf(clusterId: string, seq: number): string {
  const prefix = clusterId.replace(/[^A-Za-z0-9]/g, "").slice(0, 8) || "cluster";
  return `${prefix}-${seq.toString(16).padStart(8, "0")}`;
}

export function createTopics(state: ClusterState, topics: readonly CreateTopicInput[], validateOnly: boolean): CommandResult<TopicOutcome[]> {
  const draft = new Draft(state);
  const live = [...state.brokers.values()].filter(isElectable).map((b) => ({ id: b.id, rack: b.rack }));
  let totalPartitions = 0;
  for (const t of state.topics.values()) totalPartitions += t.partitions.length;
  const seen = new Set<string>();
  const results: TopicOutcome[] = [];
  for (const t of topics) {
    const result = (code: ErrorCode, message: string): TopicOutcome => ({ name: t.name, topicId: "", ...fail(code, message) });
    const nameProblem = topicNameProblem(t.name);
    if (nameProblem !== undefined) {
      results.push(result(ErrorCode.INVALID_TOPIC_NAME, nameProblem));
      continue;
    }
    if (seen.has(t.name)) {
      results.push(result(ErrorCode.INVALID_REQUEST, `topic ${t.name} appears more than once in the request`));
      continue;
    }
    seen.add(t.name);
    if (state.topics.has(t.name)) {
      results.push(result(ErrorCode.TOPIC_ALREADY_EXISTS, `topic ${t.name} already exists`));
      continue;
    }
    const partitions = t.partitions === 0 ? 1 : t.partitions;
    if (partitions < 1 || partitions > maxPartitionsPerTopic) {
      results.push(result(ErrorCode.INVALID_PARTITIONS, `partition count ${t.partitions} is outside 1..${maxPartitionsPerTopic}`));
      continue;
    }
    if (totalPartitions + partitions > maxPartitionsInCluster) {
      results.push(result(ErrorCode.INVALID_PARTITIONS, `${partitions} more partitions would exceed the cluster limit of ${maxPartitionsInCluster} (${totalPartitions} exist)`));
      continue;
    }
    if (live.length === 0) {
      results.push(result(ErrorCode.INVALID_REPLICATION_FACTOR, "no live brokers to place replicas on"));
      continue;
    }
    const replicationFactor = t.replicationFactor === 0 ? Math.min(defaultReplicationFactor, live.length) : t.replicationFactor;
    if (replicationFactor < 1 || replicationFactor > live.length) {
      results.push(result(ErrorCode.INVALID_REPLICATION_FACTOR, `replication factor ${t.replicationFactor} is outside 1..${live.length} (the number of live brokers)`));
      continue;
    }
    const configProblem = configsProblem(t.configs, replicationFactor);
    if (configProblem !== undefined) {
      results.push(result(ErrorCode.INVALID_CONFIG, configProblem));
      continue;
    }
    if (validateOnly) {
      results.push({ name: t.name, topicId: "", ...ok });
      continue;
    }
    const seq = draft.takeTopicSeq();
    const placement = placeReplicas(live, partitions, replicationFactor, seq);
    invariant(placement.ok, () => `placement failed after validation for topic ${t.name}: ${placement.ok ? "" : placement.message}`);
    const record: TopicRecord = {
      name: t.name,
      topicId: topicIdOf(state.clusterId, seq),
      configs: { ...t.configs },
      partitions: placement.replicas.map(
        (replicas): PartitionRecord => ({ replicas, isr: replicas, leader: replicas[0]!, leaderEpoch: 0, partitionEpoch: 0 }),
      ),
    };
    draft.putTopic(record);
    totalPartitions += partitions;
    results.push({ name: t.name, topicId: record.topicId, ...ok });
  }
  return finish(draft, results);
}

export function deleteTopics(state: ClusterState, names: readonly string[]): CommandResult<TopicOutcome[]> {
  const draft = new Draft(state);
  const results: TopicOutcome[] = [];
  for (const name of names) {
    const topic = draft.topic(name);
    if (topic === undefined) {
      const problem = topicNameProblem(name);
      results.push({
        name,
        topicId: "",
        ...(problem !== undefined ? fail(ErrorCode.INVALID_TOPIC_NAME, problem) : fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic ${name} does not exist`)),
      });
      continue;
    }
    draft.deleteTopic(name);
    results.push({ name, topicId: topic.topicId, ...ok });
  }
  return finish(draft, results);
}

export interface AlterTopicConfigInput {
  name: string;
  set: Readonly<Record<string, string>>;
  remove: readonly string[];
}

export function alterTopicConfigs(state: ClusterState, alterations: readonly AlterTopicConfigInput[]): CommandResult<TopicOutcome[]> {
  const draft = new Draft(state);
  const seen = new Set<string>();
  const results: TopicOutcome[] = [];
  for (const a of alterations) {
    const result = (code: ErrorCode, message: string): TopicOutcome => ({ name: a.name, topicId: "", ...fail(code, message) });
    if (seen.has(a.name)) {
      results.push(result(ErrorCode.INVALID_REQUEST, `topic ${a.name} appears more than once in the request`));
      continue;
    }
    seen.add(a.name);
    const topic = draft.topic(a.name);
    if (topic === undefined) {
      results.push(result(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic ${a.name} does not exist`));
      continue;
    }
    const both = a.remove.filter((k) => k in a.set);
    if (both.length > 0) {
      results.push(result(ErrorCode.INVALID_CONFIG, `config keys [${both.join(", ")}] are both set and removed`));
      continue;
    }
    const unknownRemovals = a.remove.filter((k) => !Object.hasOwn(topicConfigKeys, k));
    if (unknownRemovals.length > 0) {
      results.push(result(ErrorCode.INVALID_CONFIG, `unknown topic config keys [${unknownRemovals.join(", ")}] cannot be removed (known: ${Object.keys(topicConfigKeys).join(", ")})`));
      continue;
    }
    const configs: Record<string, string> = { ...topic.configs, ...a.set };
    for (const key of a.remove) delete configs[key];
    const problem = configsProblem(configs, topic.partitions[0]!.replicas.length);
    if (problem !== undefined) {
      results.push(result(ErrorCode.INVALID_CONFIG, problem));
      continue;
    }
    const same = Object.keys(configs).length === Object.keys(topic.configs).length && Object.entries(configs).every(([k, v]) => topic.configs[k] === v);
    if (!same) {
      draft.putTopic({ ...topic, configs });
      // Enabling unclean election takes effect at once for partitions that are offline now.
      electOfflineLeaders(draft, topic.name);
    }
    results.push({ name: a.name, topicId: topic.topicId, ...ok });
  }
  return finish(draft, results);
}

export interface InitProducerIdInput {
  /** 0 allocates a new id. */
  producerId: bigint;
  producerEpoch: number;
}

export function initProducerId(state: ClusterState, input: InitProducerIdInput): CommandResult<Outcome & { producerId: bigint; producerEpoch: number }> {
  const draft = new Draft(state);
  const allocate = () => finish(draft, { ...ok, producerId: draft.takeProducerId(), producerEpoch: 0 });
  if (input.producerId === 0n) return allocate();
  if (input.producerId < 1n || input.producerId >= state.nextProducerId) {
    return unchanged(state, { ...fail(ErrorCode.UNKNOWN_PRODUCER_ID, `producer id ${input.producerId} was never allocated`), producerId: -1n, producerEpoch: -1 });
  }
  const current = draft.producerEpoch(input.producerId);
  if (input.producerEpoch !== current) {
    return unchanged(state, {
      ...fail(ErrorCode.INVALID_PRODUCER_EPOCH, `producer id ${input.producerId} is at epoch ${current}, not ${input.producerEpoch}`),
      producerId: -1n,
      producerEpoch: -1,
    });
  }
  if (current >= maxProducerEpoch) {
    // Epochs are exhausted: the producer continues under a fresh id.
    return allocate();
  }
  draft.setProducerEpoch(input.producerId, current + 1);
  return finish(draft, { ...ok, producerId: input.producerId, producerEpoch: current + 1 });
}
