// controller/src/server: the gRPC ControllerService adapter. Thin by design: validate the request
// (INVALID_ARGUMENT when malformed), queue the command, and in the queue run it on the state machine,
// persist the new state, publish the delta to WatchMetadata subscribers, then answer. Reads
// (DescribeCluster, the first snapshot of a watch) use the current immutable state directly.
// Consumer-group commands run in the same queue on their own state (groups/), persisted by the same
// store in their own transaction before the answer.
// Share groups (share/) do not use the queue: membership is in memory (answered at once), and share-state
// reads and writes are fenced against the current state synchronously, then wait for the share-state
// store's own group commit, so a busy leader's writes never queue behind metadata fsyncs.
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { grpcError, InvariantError, type Logger, StatusError, unary } from "@runnel/common";
import {
  type BrokerEndpoint,
  type ControllerServiceServer,
  ErrorCode,
  type MetadataEvent,
  type WatchMetadataRequest,
} from "@runnel/proto";
import {
  alterPartition,
  alterTopicConfigs,
  brokerEpochProblem,
  type ClusterState,
  type CommandResult,
  controlledShutdown,
  createTopics,
  deleteTopics,
  describeCluster,
  heartbeat,
  initProducerId,
  type MetadataConfig,
  registerBroker,
  snapshotOf,
  tick,
  type TopicOutcome,
} from "../metadata/index.js";
import type { MetadataStore } from "../store/index.js";
import {
  describeGroup,
  emptyGroupsState,
  graceAfterLoad,
  type GroupConfig,
  type GroupResult,
  type GroupsState,
  heartbeat as groupHeartbeat,
  listGroups,
  offsetCommit,
  offsetFetch,
  type PartitionCounts,
  tickGroups,
} from "../groups/index.js";
import {
  describeShareGroups,
  fenceShareStateCall,
  ShareMembership,
  ShareStateStore,
  ShareStoreFull,
} from "../share/index.js";
import { CommandQueue } from "./queue.js";
import * as v from "./validate.js";
import { MetadataSubscriber, maxSubscribers } from "./watch.js";

export { CommandQueue, QueueFull } from "./queue.js";
export { MetadataSubscriber, maxSubscriberBacklogEvents, maxSubscribers } from "./watch.js";

/** Commands waiting for the state machine at most; more are refused with RESOURCE_EXHAUSTED. */
export const maxQueuedCommands = 4096;
/** Groups in one DescribeGroups request. */
export const maxGroupsPerDescribe = 1000;
/** Default group session timeout and heartbeat interval (controller flags override them). */
export const defaultGroupSessionTimeoutMs = 45_000;
export const defaultGroupHeartbeatIntervalMs = 3_000;

/** Partition counts of the existing topics: what the group machine reads of the cluster state. */
export function partitionCountsOf(state: ClusterState): PartitionCounts {
  return new Map([...state.topics.values()].map((t) => [t.name, t.partitions.length]));
}

export interface ControllerCoreOptions {
  store: MetadataStore;
  state: ClusterState;
  config: MetadataConfig;
  heartbeatIntervalMs: number;
  logger: Logger;
  /** Called with an InvariantError (or a store failure during a tick): the process must stop. */
  onFatal: (err: unknown) => void;
  /** Injected clock for the adapter (the state machine itself never reads a clock). */
  nowMs?: () => number;
  /** Consumer groups as loaded from the store (default: none). */
  groups?: GroupsState;
  groupConfig?: GroupConfig;
  /** Member id generator (default: random UUIDs). */
  newMemberId?: () => string;
  /** Share states as loaded from the store (default: loaded from options.store.shareStateDb). */
  shareStates?: ShareStateStore;
}

/** The state, the command queue and the subscribers; the gRPC handlers are built on it. */
export class ControllerCore {
  private current: ClusterState;
  private currentGroups: GroupsState;
  readonly groupConfig: GroupConfig;
  private readonly newMemberId: () => string;
  private groupTickQueued = false;
  readonly queue = new CommandQueue(maxQueuedCommands);
  private readonly subscribers = new Set<MetadataSubscriber>();
  private tickQueued = false;
  private stopped = false;
  private readonly nowMs: () => number;
  controllerEndpoint: BrokerEndpoint = { brokerId: -1, host: "", port: 0, rack: "" };
  /** Share-group members (in memory; they rejoin after a restart). */
  readonly shareMembers: ShareMembership;
  /** The last share state each partition leader wrote (LMDB, group commit). */
  readonly shareStates: ShareStateStore;
  /** The topic map the share states were last pruned against. */
  private shareStatesPrunedFor: ClusterState["topics"] | undefined;

  constructor(private readonly options: ControllerCoreOptions) {
    this.current = options.state;
    this.nowMs = options.nowMs ?? Date.now;
    this.currentGroups = options.groups ?? emptyGroupsState;
    this.groupConfig = options.groupConfig ?? { sessionTimeoutMs: defaultGroupSessionTimeoutMs, heartbeatIntervalMs: defaultGroupHeartbeatIntervalMs };
    this.newMemberId = options.newMemberId ?? (() => randomUUID());
    this.shareMembers = new ShareMembership({ sessionTimeoutMs: this.groupConfig.sessionTimeoutMs, heartbeatIntervalMs: this.groupConfig.heartbeatIntervalMs });
    this.shareStates = options.shareStates ?? ShareStateStore.load(options.store.shareStateDb, { onFatal: (err) => this.options.onFatal(err) });
    this.pruneShareStates();
  }

  /**
   * Removes the share states of deleted topics when the topic set changed since the last prune
   * (called at start and on every tick; keys hold topic ids, so a re-created topic never sees them).
   */
  pruneShareStates(): number {
    if (this.shareStatesPrunedFor === this.current.topics) return 0;
    this.shareStatesPrunedFor = this.current.topics;
    const removed = this.shareStates.prune(new Set([...this.current.topics.values()].map((t) => t.topicId)));
    if (removed > 0) this.options.logger.info({ states: removed }, "share states of deleted topics removed");
    return removed;
  }

  get groups(): GroupsState {
    return this.currentGroups;
  }

  /**
   * Starts the restart grace now: every broker and group member loaded from the store gets one session
   * timeout from the moment the controller can hear heartbeats, not from when its state was read (on a
   * loaded machine, binding the server can take longer than a session timeout).
   */
  startGrace(nowMs: number): void {
    this.current = { ...this.current, lastHeartbeatMs: new Map([...this.current.lastHeartbeatMs.keys()].map((id) => [id, nowMs])) };
    this.currentGroups = graceAfterLoad(this.currentGroups, nowMs);
  }

  /** Runs a group command in the queue: state machine, then persist, then the answer. */
  executeGroups<R>(name: string, command: (groups: GroupsState, counts: PartitionCounts, nowMs: number) => GroupResult<R>): Promise<R> {
    return this.queue.run(async () => {
      if (this.stopped) throw new Error("controller is shutting down");
      let result: GroupResult<R>;
      try {
        result = command(this.currentGroups, partitionCountsOf(this.current), this.nowMs());
      } catch (err) {
        if (err instanceof InvariantError) this.options.onFatal(err);
        throw err;
      }
      if (result.state !== this.currentGroups) {
        const written = await this.options.store.persistGroups(this.currentGroups, result.state);
        if (written > 0) this.options.logger.debug({ command: name, records: written }, "groups persisted");
        this.currentGroups = result.state;
      }
      return result.response;
    });
  }

  get state(): ClusterState {
    return this.current;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Runs a command in the queue: state machine, then persist, then publish, then the answer. */
  execute<R>(name: string, command: (state: ClusterState, nowMs: number) => CommandResult<R>): Promise<R> {
    return this.queue.run(async () => {
      if (this.stopped) throw new Error("controller is shutting down");
      let result: CommandResult<R>;
      try {
        result = command(this.current, this.nowMs());
      } catch (err) {
        if (err instanceof InvariantError) this.options.onFatal(err);
        throw err;
      }
      if (result.state !== this.current) {
        const written = await this.options.store.persist(this.current, result.state);
        if (written > 0) this.options.logger.debug({ command: name, records: written, metadataVersion: result.state.metadataVersion.toString() }, "metadata persisted");
        this.current = result.state;
      }
      if (result.delta !== undefined) {
        const event: MetadataEvent = { metadataVersion: this.current.metadataVersion, event: { $case: "delta", value: result.delta } };
        for (const s of this.subscribers) s.offer(event);
      }
      return result.response;
    });
  }

  /** Queues a tick unless one is already waiting (a slow store must not pile ticks up). */
  requestTick(): void {
    if (this.stopped) return;
    const expiredShareMembers = this.shareMembers.expire(this.nowMs());
    if (expiredShareMembers.length > 0) this.options.logger.info({ members: expiredShareMembers }, "share-group member sessions expired");
    this.pruneShareStates();
    if (this.tickQueued) return;
    this.tickQueued = true;
    this.execute("tick", (state, now) => {
      this.tickQueued = false;
      return tick(state, now, this.options.config);
    }).then(
      ({ fencedBrokerIds }) => {
        if (fencedBrokerIds.length > 0) this.options.logger.warn({ brokerIds: fencedBrokerIds }, "broker sessions expired: fenced, leaderships moved");
      },
      (err: unknown) => {
        this.tickQueued = false;
        if (this.stopped) return;
        this.options.onFatal(err);
      },
    );
    if (this.groupTickQueued) return;
    this.groupTickQueued = true;
    this.executeGroups("groupTick", (groups, counts, now) => {
      this.groupTickQueued = false;
      return tickGroups(groups, counts, now, this.groupConfig);
    }).then(
      ({ expiredMembers, revocationTimedOutMembers, expiredGroups, droppedOffsetTopics }) => {
        const log = this.options.logger;
        if (expiredMembers.length > 0) log.warn({ members: expiredMembers }, "group member sessions expired: partitions move");
        if (revocationTimedOutMembers.length > 0) log.warn({ members: revocationTimedOutMembers }, "group members did not revoke partitions within their rebalance timeout: fenced, partitions move");
        if (expiredGroups.length > 0) log.info({ groups: expiredGroups }, "empty groups expired after the offsets retention: deleted with their offsets");
        if (droppedOffsetTopics.length > 0) log.info({ offsets: droppedOffsetTopics }, "committed offsets of deleted topics dropped");
      },
      (err: unknown) => {
        this.groupTickQueued = false;
        if (this.stopped) return;
        this.options.onFatal(err);
      },
    );
  }

  /** Starts a metadata stream: the snapshot now, then every delta published after it. */
  subscribe(call: grpc.ServerWritableStream<WatchMetadataRequest, MetadataEvent>): void {
    const subscriber = new MetadataSubscriber(call, (s) => this.subscribers.delete(s));
    this.subscribers.add(subscriber);
    subscriber.offer({ metadataVersion: this.current.metadataVersion, event: { $case: "snapshot", value: snapshotOf(this.current) } });
  }

  /** Refuses new commands, waits for queued ones, and ends every metadata stream (watchers reconnect). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.queue.drain();
    await this.shareStates.close();
    for (const s of [...this.subscribers]) s.fail(grpc.status.UNAVAILABLE, "controller is shutting down; reconnect to resync");
    this.subscribers.clear();
  }

  private refuseWhenStopped(): void {
    if (this.stopped) throw new StatusError(grpc.status.UNAVAILABLE, "controller is shutting down");
  }

  /** The ControllerService handlers. */
  service(): ControllerServiceServer {
    const logger = this.options.logger;
    const onUnexpected = (err: unknown, method: string) => {
      if (err instanceof InvariantError) return; // already reported through onFatal
      logger.error({ err, method }, "controller request failed");
    };
    // Checked before the handler runs; the handler queues in the same tick, so nothing can
    // interleave between this check and its place in the queue.
    const queued = <Req, Res>(handler: (request: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> => {
      const inner = unary<Req, Res>((request) => handler(request), onUnexpected);
      return (call, callback) => {
        if (this.queue.length >= this.queue.maxQueuedCommands) {
          callback(grpcError(grpc.status.RESOURCE_EXHAUSTED, `controller command queue is full (${this.queue.maxQueuedCommands} waiting); retry after a backoff`));
          return;
        }
        inner(call, callback);
      };
    };
    const config = this.options.config;
    const topicResults = (outcomes: TopicOutcome[]) =>
      outcomes.map((o) => ({ name: o.name, errorCode: o.errorCode, errorMessage: o.errorMessage, topicId: o.topicId }));

    return {
      registerBroker: queued(async (r) => {
        v.validateRegisterBroker(r);
        const res = await this.execute("registerBroker", (s, now) =>
          registerBroker(s, { brokerId: r.brokerId, host: r.host, port: r.port, rack: r.rack, incarnationId: r.incarnationId }, now, config),
        );
        if (res.errorCode === ErrorCode.ERROR_CODE_NONE) logger.info({ brokerId: r.brokerId, brokerEpoch: res.brokerEpoch.toString(), host: r.host, port: r.port, rack: r.rack }, "broker registered");
        else logger.warn({ brokerId: r.brokerId, reason: res.errorMessage }, "broker registration refused");
        return {
          errorCode: res.errorCode,
          errorMessage: res.errorMessage,
          brokerEpoch: res.brokerEpoch,
          heartbeatIntervalMs: this.options.heartbeatIntervalMs,
          sessionTimeoutMs: config.sessionTimeoutMs,
        };
      }),
      brokerHeartbeat: queued(async (r) => {
        v.validateHeartbeat(r);
        return this.execute("heartbeat", (s, now) => heartbeat(s, { brokerId: r.brokerId, brokerEpoch: r.brokerEpoch }, now));
      }),
      watchMetadata: (call) => {
        try {
          v.validateWatchMetadata(call.request);
        } catch (err) {
          call.emit("error", grpcError(grpc.status.INVALID_ARGUMENT, (err as Error).message));
          return;
        }
        const { brokerId, brokerEpoch } = call.request;
        if (brokerId >= 0) {
          const problem = brokerEpochProblem(this.current, brokerId, brokerEpoch);
          if (problem !== undefined) {
            call.emit("error", grpcError(grpc.status.FAILED_PRECONDITION, `STALE_BROKER_EPOCH: ${problem}`));
            return;
          }
        }
        if (this.stopped) {
          call.emit("error", grpcError(grpc.status.UNAVAILABLE, "controller is shutting down"));
          return;
        }
        if (this.subscribers.size >= maxSubscribers) {
          call.emit("error", grpcError(grpc.status.RESOURCE_EXHAUSTED, `too many metadata watchers (at most ${maxSubscribers})`));
          return;
        }
        this.subscribe(call);
      },
      alterPartition: queued(async (r) => {
        v.validateAlterPartition(r);
        const res = await this.execute("alterPartition", (s) =>
          alterPartition(s, {
            brokerId: r.brokerId,
            brokerEpoch: r.brokerEpoch,
            topic: r.topic,
            partition: r.partition,
            leaderEpoch: r.leaderEpoch,
            partitionEpoch: r.partitionEpoch,
            newIsr: r.newIsr,
          }),
        );
        return { errorCode: res.errorCode, errorMessage: res.errorMessage, partition: res.partition };
      }),
      controlledShutdown: queued(async (r) => {
        v.validateControlledShutdown(r);
        const res = await this.execute("controlledShutdown", (s) => controlledShutdown(s, { brokerId: r.brokerId, brokerEpoch: r.brokerEpoch }));
        if (res.errorCode === ErrorCode.ERROR_CODE_NONE) logger.info({ brokerId: r.brokerId, remaining: res.remainingLeaderships }, "controlled shutdown: leaderships moved");
        return res;
      }),
      createTopics: queued(async (r) => {
        v.validateCreateTopics(r);
        const outcomes = await this.execute("createTopics", (s) =>
          createTopics(
            s,
            r.topics.map((t) => ({ name: t.name, partitions: t.partitions, replicationFactor: t.replicationFactor, configs: t.configs })),
            r.validateOnly,
          ),
        );
        for (const o of outcomes) if (o.errorCode === ErrorCode.ERROR_CODE_NONE && !r.validateOnly) logger.info({ topic: o.name, topicId: o.topicId }, "topic created");
        return { topics: topicResults(outcomes) };
      }),
      deleteTopics: queued(async (r) => {
        v.validateDeleteTopics(r);
        const outcomes = await this.execute("deleteTopics", (s) => deleteTopics(s, r.names));
        for (const o of outcomes) if (o.errorCode === ErrorCode.ERROR_CODE_NONE) logger.info({ topic: o.name, topicId: o.topicId }, "topic deleted");
        return { topics: topicResults(outcomes) };
      }),
      alterTopicConfigs: queued(async (r) => {
        v.validateAlterTopicConfigs(r);
        const outcomes = await this.execute("alterTopicConfigs", (s) => alterTopicConfigs(s, r.topics.map((t) => ({ name: t.name, set: t.set, remove: t.remove }))));
        return { topics: topicResults(outcomes) };
      }),
      describeCluster: unary(async () => describeCluster(this.current, this.controllerEndpoint), onUnexpected),
      initProducerId: queued(async (r) => {
        v.validateInitProducerId(r);
        return this.execute("initProducerId", (s) => initProducerId(s, { producerId: r.producerId, producerEpoch: r.producerEpoch }));
      }),
      consumerGroupHeartbeat: queued(async (r) => {
        v.validateConsumerGroupHeartbeat(r);
        const memberId = this.newMemberId();
        const res = await this.executeGroups("groupHeartbeat", (g, counts, now) =>
          groupHeartbeat(g, { ...r, newMemberId: memberId }, counts, now, this.groupConfig),
        );
        if (r.memberEpoch === 0 && res.errorCode === ErrorCode.ERROR_CODE_NONE) logger.info({ groupId: r.groupId, memberId: res.memberId, instanceId: r.instanceId, clientId: r.clientId }, "group member joined");
        if (r.memberEpoch < 0) logger.info({ groupId: r.groupId, memberId: r.memberId }, "group member left");
        return {
          errorCode: res.errorCode,
          errorMessage: res.errorMessage,
          memberId: res.memberId,
          memberEpoch: res.memberEpoch,
          heartbeatIntervalMs: res.heartbeatIntervalMs,
          assignment: res.assignment === undefined ? undefined : { partitions: res.assignment },
        };
      }),
      offsetCommit: queued(async (r) => {
        v.validateOffsetCommit(r);
        return this.executeGroups("offsetCommit", (g, counts, now) => offsetCommit(g, r, counts, now));
      }),
      // Reads use the current state: it only ever holds what was persisted.
      offsetFetch: unary(async (r) => {
        v.validateOffsetFetch(r);
        return { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", offsets: offsetFetch(this.currentGroups, r.groupId, r.topics) };
      }, onUnexpected),
      listGroups: unary(async () => ({ groups: listGroups(this.currentGroups) }), onUnexpected),
      describeGroups: unary(async (r) => {
        v.validateDescribeGroups(r);
        return { groups: r.groupIds.map((id) => describeGroup(this.currentGroups, id)) };
      }, onUnexpected),
      shareGroupHeartbeat: unary(async (r) => {
        v.validateShareGroupHeartbeat(r);
        const res = this.shareMembers.heartbeat({ ...r, newMemberId: r.memberEpoch === 0 ? this.newMemberId() : "" }, this.nowMs());
        if (res.event === "joined") logger.info({ groupId: r.groupId, memberId: res.memberId, clientId: r.clientId }, "share-group member joined");
        if (res.event === "left") logger.info({ groupId: r.groupId, memberId: r.memberId }, "share-group member left");
        return { errorCode: res.errorCode, errorMessage: res.errorMessage, memberId: res.memberId, memberEpoch: res.memberEpoch, heartbeatIntervalMs: res.heartbeatIntervalMs };
      }, onUnexpected),
      describeShareGroups: unary(async (r) => {
        v.validateDescribeShareGroups(r);
        return describeShareGroups(r.groupIds, this.shareMembers, this.shareStates, this.current, this.nowMs());
      }, onUnexpected),
      readShareState: unary(async (r) => {
        v.validateReadShareState(r);
        this.refuseWhenStopped();
        const fence = fenceShareStateCall(this.current, r);
        if (!fence.ok) return { errorCode: fence.errorCode, errorMessage: fence.errorMessage, found: false, state: undefined };
        // The value now is the last write accepted before this read; answer once it is on disk.
        const stored = this.shareStates.get(r.groupId, fence.topicId, r.partition);
        await this.shareStates.whenFlushed();
        return { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", found: stored !== undefined, state: stored?.state };
      }, onUnexpected),
      writeShareState: unary(async (r) => {
        v.validateWriteShareState(r);
        this.refuseWhenStopped();
        const fence = fenceShareStateCall(this.current, r);
        if (!fence.ok) return { errorCode: fence.errorCode, errorMessage: fence.errorMessage };
        let flushed: Promise<void>;
        try {
          flushed = this.shareStates.write(r.groupId, fence.topicId, r.partition, r.leaderEpoch, r.state!, { brokerId: r.brokerId, brokerEpoch: r.brokerEpoch, writeSequence: r.writeSequence });
        } catch (err) {
          if (err instanceof ShareStoreFull) return { errorCode: ErrorCode.THROTTLED, errorMessage: err.message };
          throw err;
        }
        await flushed;
        return { errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "" };
      }, onUnexpected),
    };
  }
}
