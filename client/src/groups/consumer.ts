// GroupConsumer: a consumer that is a member of a consumer group (KIP-848 style). The controller
// assigns partitions; this member only heartbeats (reporting what it owns) and follows the answer:
// partitions taken away are committed, handed to the onRevoked listener and dropped, then the next
// heartbeat (sent at once) confirms the release; partitions given start at the committed offset (or
// per resetPolicy when none) and go to onAssigned. Records come from an ordinary Consumer underneath.
// At-least-once: a record counts as processed once the application asks for the next one (or calls
// commit/close), and only processed offsets are committed. If the controller is unreachable the
// member keeps consuming its current partitions and keeps trying.
import { ErrorCode, type TopicPartitions } from "@runnel/proto";
import { ClientUsageError, GroupError, RunnelError, errorFromCode } from "../errors/index.js";
import { Consumer, type ConsumerContext, type ConsumerOptions, type ConsumerRecord, type TopicPartition } from "../consumer/index.js";

export const defaultAutoCommitIntervalMs = 5_000;
/** Used until the controller says how often to heartbeat. */
export const initialHeartbeatIntervalMs = 1_000;
/** How long a member may take to revoke partitions, sent to the controller. */
export const defaultRebalanceTimeoutMs = 60_000;
/** Deadline of each heartbeat and commit call, in milliseconds. */
export const groupRequestTimeoutMs = 5_000;

export interface RebalanceListeners {
  /** Partitions just given to this member (their positions are set). */
  onAssigned?: (partitions: TopicPartition[]) => void | Promise<void>;
  /** Partitions about to be taken away (already committed when autoCommit is on). */
  onRevoked?: (partitions: TopicPartition[]) => void | Promise<void>;
  /** Partitions lost without a chance to commit (the member was fenced or expired). */
  onLost?: (partitions: TopicPartition[]) => void | Promise<void>;
}

export interface GroupConsumerOptions extends Omit<ConsumerOptions, "resetPolicy"> {
  groupId: string;
  /** Topic names to subscribe to (or topicPattern). */
  topics?: string[];
  /** A regular expression over whole topic names, instead of topics. */
  topicPattern?: string;
  /** Static membership: a restart with the same id within the session timeout keeps the partitions. */
  instanceId?: string;
  /** "uniform" (sticky, the default) or "range". */
  assignor?: "uniform" | "range";
  /** Where to start a partition with no committed offset (default "latest"). */
  resetPolicy?: "earliest" | "latest";
  /** Commit processed offsets in the background (default true). */
  autoCommit?: boolean;
  autoCommitIntervalMs?: number;
  rebalanceTimeoutMs?: number;
  clientId?: string;
  listeners?: RebalanceListeners;
}

function key(tp: TopicPartition): string {
  return `${tp.topic}\u0000${tp.partition}`;
}

/** What a new assignment means for a member that owns `owned`: what to give up and what to start. */
export function diffAssignment(owned: readonly TopicPartition[], target: readonly TopicPartitions[]): { revoked: TopicPartition[]; added: TopicPartition[] } {
  const targetKeys = new Set<string>();
  const targetList: TopicPartition[] = [];
  for (const t of target) for (const partition of t.partitions) {
    const tp = { topic: t.topic, partition };
    if (!targetKeys.has(key(tp))) targetList.push(tp);
    targetKeys.add(key(tp));
  }
  const ownedKeys = new Set(owned.map(key));
  return { revoked: owned.filter((tp) => !targetKeys.has(key(tp))), added: targetList.filter((tp) => !ownedKeys.has(key(tp))) };
}

function groupTopics(tps: Iterable<TopicPartition>): TopicPartitions[] {
  const map = new Map<string, number[]>();
  for (const tp of tps) map.set(tp.topic, [...(map.get(tp.topic) ?? []), tp.partition]);
  return [...map].sort(([a], [b]) => (a < b ? -1 : 1)).map(([topic, partitions]) => ({ topic, partitions: partitions.sort((a, b) => a - b) }));
}

export class GroupConsumer implements AsyncIterable<ConsumerRecord> {
  private readonly consumer: Consumer;
  private readonly opts: GroupConsumerOptions & { resetPolicy: "earliest" | "latest"; autoCommit: boolean; autoCommitIntervalMs: number; rebalanceTimeoutMs: number };
  private memberIdValue = "";
  private memberEpochValue = 0;
  private heartbeatIntervalMs = initialHeartbeatIntervalMs;
  private readonly owned = new Map<string, TopicPartition>();
  /** Next offset to commit per owned partition (after the last processed record). */
  private readonly processed = new Map<string, bigint>();
  private readonly committed = new Map<string, bigint>();
  private lastYielded: ConsumerRecord | undefined;
  private loop: Promise<void> | undefined;
  private wakeLoop: (() => void) | undefined;
  private heartbeatSoon = false;
  private autoCommitTimer: NodeJS.Timeout | undefined;
  private committing: Promise<void> | undefined;
  private fatal: RunnelError | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly ctx: ConsumerContext, options: GroupConsumerOptions) {
    if (options.groupId === "") throw new RangeError("groupId must not be empty");
    if ((options.topics?.length ?? 0) === 0 && (options.topicPattern ?? "") === "") throw new RangeError("a group consumer needs topics or a topicPattern");
    if ((options.topics?.length ?? 0) > 0 && (options.topicPattern ?? "") !== "") throw new RangeError("give topics or a topicPattern, not both");
    this.opts = {
      ...options,
      resetPolicy: options.resetPolicy ?? "latest",
      autoCommit: options.autoCommit ?? true,
      autoCommitIntervalMs: options.autoCommitIntervalMs ?? defaultAutoCommitIntervalMs,
      rebalanceTimeoutMs: options.rebalanceTimeoutMs ?? defaultRebalanceTimeoutMs,
    };
    if (!(this.opts.autoCommitIntervalMs >= 1)) throw new RangeError(`autoCommitIntervalMs must be >= 1, got ${this.opts.autoCommitIntervalMs}`);
    this.consumer = new Consumer(ctx, { ...options, resetPolicy: this.opts.resetPolicy });
  }

  get groupId(): string {
    return this.opts.groupId;
  }
  get memberId(): string {
    return this.memberIdValue;
  }
  get memberEpoch(): number {
    return this.memberEpochValue;
  }

  /** The partitions this member owns now. */
  assignment(): TopicPartition[] {
    return [...this.owned.values()].map((tp) => ({ ...tp }));
  }

  /** Joins the group and starts heartbeating (done by the first next() if not called). */
  start(): void {
    if (this.closed) throw new ClientUsageError("the group consumer is closed", { code: ErrorCode.INVALID_REQUEST, retriable: false });
    this.loop ??= this.heartbeatLoop();
    if (this.opts.autoCommit && this.autoCommitTimer === undefined) {
      this.autoCommitTimer = setInterval(() => void this.commit({ includeCurrent: false }).catch(() => undefined), this.opts.autoCommitIntervalMs);
      this.autoCommitTimer.unref?.();
    }
  }

  pause(tps: readonly TopicPartition[]): void {
    this.consumer.pause(tps.filter((tp) => this.owned.has(key(tp))));
  }

  resume(tps: readonly TopicPartition[]): void {
    this.consumer.resume(tps.filter((tp) => this.owned.has(key(tp))));
  }

  paused(): TopicPartition[] {
    return this.consumer.paused();
  }

  /** The next record of an owned partition, or undefined once closed. */
  async next(): Promise<ConsumerRecord | undefined> {
    if (this.closed && this.fatal === undefined) return undefined;
    if (!this.closed) this.start();
    this.markProcessed();
    for (;;) {
      if (this.fatal !== undefined) {
        const err = this.fatal;
        this.fatal = undefined;
        throw err;
      }
      if (this.closed) return undefined;
      const r = await this.consumer.next();
      if (r === undefined) return undefined;
      if (!this.owned.has(key(r))) continue; // revoked while buffered
      this.lastYielded = r;
      return r;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<ConsumerRecord> {
    return {
      next: async () => {
        const record = await this.next();
        return record === undefined ? { done: true, value: undefined } : { done: false, value: record };
      },
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  private markProcessed(): void {
    const r = this.lastYielded;
    this.lastYielded = undefined;
    if (r !== undefined && this.owned.has(key(r))) this.processed.set(key(r), r.offset + 1n);
  }

  /**
   * Commits the processed offsets of owned partitions (by default including the record handed out
   * last: a manual commit means the application is done with it), or the given offsets.
   */
  async commit(options: { includeCurrent?: boolean; offsets?: Array<TopicPartition & { offset: bigint }> } = {}): Promise<void> {
    if (options.includeCurrent ?? true) this.markProcessed();
    const wanted = options.offsets ?? [...this.owned.values()].flatMap((tp) => {
      const offset = this.processed.get(key(tp));
      return offset === undefined || offset === this.committed.get(key(tp)) ? [] : [{ ...tp, offset }];
    });
    await this.commitOffsets(wanted);
  }

  private async commitOffsets(offsets: Array<TopicPartition & { offset: bigint }>): Promise<void> {
    if (offsets.length === 0 || this.memberIdValue === "") return;
    while (this.committing !== undefined) await this.committing;
    const run = (async () => {
      const byTopic = new Map<string, Array<{ partition: number; committedOffset: bigint; committedLeaderEpoch: number; metadata: string }>>();
      for (const o of offsets) byTopic.set(o.topic, [...(byTopic.get(o.topic) ?? []), { partition: o.partition, committedOffset: o.offset, committedLeaderEpoch: -1, metadata: "" }]);
      const address = await this.ctx.metadata.controllerAddress();
      const res = await this.ctx.pool.controller(address, "offsetCommit", {
        groupId: this.opts.groupId, memberId: this.memberIdValue, memberEpoch: this.memberEpochValue,
        topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
      }, groupRequestTimeoutMs);
      if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(res.errorCode, { detail: res.errorMessage });
      for (const t of res.topics) for (const p of t.partitions) {
        const sent = offsets.find((o) => o.topic === t.topic && o.partition === p.partition);
        if (p.errorCode === ErrorCode.ERROR_CODE_NONE && sent !== undefined) this.committed.set(key(sent), sent.offset);
      }
    })();
    this.committing = run.finally(() => { this.committing = undefined; }).catch(() => undefined);
    await run;
  }

  /** Commits, leaves the group (its partitions move at once), and ends iteration. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.markProcessed();
      if (this.autoCommitTimer !== undefined) clearInterval(this.autoCommitTimer);
      const wasRunning = this.loop !== undefined;
      this.closed = true;
      this.wakeLoop?.();
      await this.loop;
      if (wasRunning && this.memberIdValue !== "") {
        if (this.opts.autoCommit) await this.commit({ includeCurrent: false }).catch(() => undefined);
        const revoked = this.assignment();
        if (revoked.length > 0) await this.callListener("onRevoked", revoked);
        await this.sendHeartbeat(this.opts.instanceId ? -2 : -1).catch(() => undefined);
      }
      await this.consumer.close();
    })();
    return this.closing;
  }

  // --- membership --------------------------------------------------------------------------------

  private async heartbeatLoop(): Promise<void> {
    while (!this.closed) {
      try {
        const res = await this.sendHeartbeat(this.memberEpochValue);
        await this.onHeartbeat(res);
      } catch {
        // Controller unreachable or restarting: keep consuming what we own and try again.
        await this.ctx.metadata.refresh().catch(() => undefined);
      }
      if (this.closed) break;
      const waitMs = this.heartbeatSoon ? 0 : this.heartbeatIntervalMs;
      this.heartbeatSoon = false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.wakeLoop = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeLoop = undefined;
    }
  }

  private async sendHeartbeat(memberEpoch: number) {
    const address = await this.ctx.metadata.controllerAddress();
    return this.ctx.pool.controller(address, "consumerGroupHeartbeat", {
      groupId: this.opts.groupId,
      memberId: this.memberIdValue,
      memberEpoch,
      instanceId: this.opts.instanceId ?? "",
      rebalanceTimeoutMs: this.opts.rebalanceTimeoutMs,
      subscribedTopicNames: this.opts.topicPattern ? [] : [...(this.opts.topics ?? [])],
      subscribedTopicRegex: this.opts.topicPattern ?? "",
      serverAssignor: this.opts.assignor ?? "",
      ownedPartitions: groupTopics(this.owned.values()),
      clientId: this.opts.clientId ?? "runnel-client",
    }, groupRequestTimeoutMs);
  }

  private async onHeartbeat(res: Awaited<ReturnType<GroupConsumer["sendHeartbeat"]>>): Promise<void> {
    if (res.errorCode === ErrorCode.FENCED_MEMBER_EPOCH || res.errorCode === ErrorCode.UNKNOWN_MEMBER_ID) {
      // Our partitions may already belong to someone else: drop them without committing, rejoin.
      const lost = this.assignment();
      this.owned.clear();
      this.consumer.assign([]);
      this.memberIdValue = res.errorCode === ErrorCode.UNKNOWN_MEMBER_ID ? "" : this.memberIdValue;
      this.memberEpochValue = 0;
      this.heartbeatSoon = true;
      if (lost.length > 0) await this.callListener("onLost", lost);
      return;
    }
    if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) {
      const err = errorFromCode(res.errorCode, { detail: res.errorMessage });
      if (!err.retriable) {
        this.fatal = err instanceof GroupError ? err : new GroupError(err.message, { code: res.errorCode, retriable: false });
        this.closed = true;
        void this.consumer.close();
      }
      return;
    }
    if (res.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = res.heartbeatIntervalMs;
    this.memberIdValue = res.memberId;
    this.memberEpochValue = res.memberEpoch;
    if (res.assignment === undefined) return;
    const { revoked, added } = diffAssignment(this.assignment(), res.assignment.partitions);
    if (revoked.length > 0) {
      if (this.opts.autoCommit) {
        const offsets = revoked.flatMap((tp) => {
          const offset = this.processed.get(key(tp));
          return offset === undefined || offset === this.committed.get(key(tp)) ? [] : [{ ...tp, offset }];
        });
        await this.commitOffsets(offsets).catch(() => undefined);
      }
      await this.callListener("onRevoked", revoked);
      for (const tp of revoked) {
        this.owned.delete(key(tp));
        this.processed.delete(key(tp));
        this.committed.delete(key(tp));
      }
      this.consumer.assign(this.assignment());
      this.heartbeatSoon = true; // confirm the release so the new owner can start
    }
    if (added.length > 0) {
      const address = await this.ctx.metadata.controllerAddress();
      const fetched = await this.ctx.pool.controller(address, "offsetFetch", { groupId: this.opts.groupId, topics: groupTopics(added) }, groupRequestTimeoutMs);
      if (fetched.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(fetched.errorCode, { detail: fetched.errorMessage });
      for (const t of new Set(added.map((tp) => tp.topic))) await this.ctx.metadata.ensureTopic(t);
      for (const tp of added) this.owned.set(key(tp), tp);
      this.consumer.assign(this.assignment());
      for (const tp of added) {
        const c = fetched.offsets.find((o) => o.topic === tp.topic && o.partition === tp.partition);
        if (c !== undefined && c.committedOffset >= 0n) {
          this.consumer.seek(tp, c.committedOffset);
          this.committed.set(key(tp), c.committedOffset);
        } else {
          this.consumer.seek(tp, this.opts.resetPolicy);
        }
      }
      await this.callListener("onAssigned", added);
    }
  }

  private async callListener(name: keyof RebalanceListeners, tps: TopicPartition[]): Promise<void> {
    try {
      await this.opts.listeners?.[name]?.(tps);
    } catch {
      // A listener's failure must not stop the member from following the protocol.
    }
  }
}
