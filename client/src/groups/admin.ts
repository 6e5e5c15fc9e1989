// Consumer-group administration: list and describe groups (with lag = high watermark - committed
// offset, the high watermarks read from the partition leaders), and reset the committed offsets of a
// group that has no members (to earliest, latest, a timestamp or an offset).
import { ErrorCode } from "@runnel/proto";
import { errorFromCode, GroupError, RunnelError } from "../errors/index.js";
import type { ChannelPool, ControllerMethods } from "../network/index.js";
import type { ClusterMetadata } from "../metadata/index.js";
import { listOffsets } from "../metadata/offsets.js";
import { retryPolicy, withRetry, type RetryOptions, type RetryPolicy } from "../retry/index.js";

export interface GroupListing {
  groupId: string;
  state: string;
  memberCount: number;
}

export interface GroupMember {
  memberId: string;
  instanceId: string;
  clientId: string;
  memberEpoch: number;
  subscribedTopics: string[];
  assignment: Array<{ topic: string; partition: number }>;
  targetAssignment: Array<{ topic: string; partition: number }>;
}

export interface GroupPartitionLag {
  topic: string;
  partition: number;
  /** -1n when nothing is committed. */
  committedOffset: bigint;
  /** -1n when the leader could not be asked. */
  highWatermark: bigint;
  /** highWatermark - committedOffset (the whole retained log counts when nothing is committed); undefined when unknown. */
  lag: bigint | undefined;
  /** Member owning the partition now, or "". */
  memberId: string;
}

export interface GroupDescription {
  groupId: string;
  state: string;
  groupEpoch: number;
  assignor: string;
  members: GroupMember[];
  partitions: GroupPartitionLag[];
}

export type OffsetResetTarget = "earliest" | "latest" | { timestamp: number } | bigint;

export interface GroupAdminContext {
  pool: ChannelPool;
  metadata: ClusterMetadata;
  retry: RetryOptions;
}

function flatten(list: ReadonlyArray<{ topic: string; partitions: readonly number[] }>): Array<{ topic: string; partition: number }> {
  return list.flatMap((t) => t.partitions.map((partition) => ({ topic: t.topic, partition })));
}

export class GroupAdmin {
  private readonly policy: RetryPolicy;

  constructor(private readonly ctx: GroupAdminContext) {
    this.policy = retryPolicy(ctx.retry);
  }

  private call<M extends keyof ControllerMethods>(method: M, request: ControllerMethods[M][0]): Promise<ControllerMethods[M][1]> {
    return withRetry(this.policy, async () => this.ctx.pool.controller(await this.ctx.metadata.controllerAddress(), method, request), {
      beforeRetry: () => this.ctx.metadata.refresh().catch(() => undefined),
    });
  }

  async listGroups(): Promise<GroupListing[]> {
    const res = await this.call("listGroups", {});
    return res.groups.map((g) => ({ groupId: g.groupId, state: g.state, memberCount: g.memberCount }));
  }

  /** Members, assignments, committed offsets, high watermarks and lag of one group. */
  async describeGroup(groupId: string): Promise<GroupDescription> {
    const res = await this.call("describeGroups", { groupIds: [groupId] });
    const g = res.groups[0];
    if (g === undefined) throw new GroupError(`controller gave no description of group "${groupId}"`, { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: false });
    if (g.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(g.errorCode, { detail: g.errorMessage });
    const members: GroupMember[] = g.members.map((m) => ({
      memberId: m.memberId, instanceId: m.instanceId, clientId: m.clientId, memberEpoch: m.memberEpoch,
      subscribedTopics: m.subscribedTopicNames, assignment: flatten(m.assignment), targetAssignment: flatten(m.targetAssignment),
    }));
    const owner = new Map<string, string>();
    for (const m of members) for (const tp of m.assignment) owner.set(`${tp.topic}\u0000${tp.partition}`, m.memberId);
    const committed = new Map(g.offsets.map((o) => [`${o.topic}\u0000${o.partition}`, o.committedOffset]));
    const keys = new Set([...owner.keys(), ...committed.keys()]);
    const topics = new Set([...keys].map((k) => k.slice(0, k.lastIndexOf("\u0000"))));
    const hw = new Map<string, bigint>();
    const start = new Map<string, bigint>();
    for (const topic of topics) {
      try {
        for (const o of await listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, topic, "latest")) hw.set(`${topic}\u0000${o.partition}`, o.offset);
        for (const o of await listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, topic, "earliest")) start.set(`${topic}\u0000${o.partition}`, o.offset);
      } catch (err) {
        if (!(err instanceof RunnelError)) throw err; // a deleted topic or an offline leader: lag unknown
      }
    }
    const partitions = [...keys].map((k) => {
      const sep = k.lastIndexOf("\u0000");
      const c = committed.get(k) ?? -1n;
      const h = hw.get(k) ?? -1n;
      const from = c >= 0n ? c : start.get(k);
      return {
        topic: k.slice(0, sep), partition: Number(k.slice(sep + 1)), committedOffset: c, highWatermark: h,
        lag: h < 0n || from === undefined ? undefined : h - from > 0n ? h - from : 0n, memberId: owner.get(k) ?? "",
      };
    }).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
    return { groupId: g.groupId, state: g.state, groupEpoch: g.groupEpoch, assignor: g.assignor, members, partitions };
  }

  /**
   * Sets the committed offsets of `topic` (all partitions, or `partitions`) for a group without
   * members. Returns the offsets written. NON_EMPTY_GROUP (a GroupError) while members are active.
   */
  async resetOffsets(groupId: string, topic: string, target: OffsetResetTarget, partitions?: readonly number[]): Promise<Array<{ partition: number; offset: bigint }>> {
    const info = await this.ctx.metadata.ensureTopic(topic);
    const wanted = partitions ?? info.partitions.map((p) => p.partition);
    let offsets: Array<{ partition: number; offset: bigint }>;
    if (typeof target === "bigint") {
      offsets = wanted.map((partition) => ({ partition, offset: target }));
    } else {
      const found = await listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, topic, target, wanted);
      // No record at or after the timestamp: start at the end.
      const latest = typeof target === "object" ? await listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, topic, "latest", wanted) : [];
      offsets = found.map((o) => ({ partition: o.partition, offset: o.offset >= 0n ? o.offset : latest.find((l) => l.partition === o.partition)?.offset ?? 0n }));
    }
    const res = await this.call("offsetCommit", {
      groupId, memberId: "", memberEpoch: -1,
      topics: [{ topic, partitions: offsets.map((o) => ({ partition: o.partition, committedOffset: o.offset, committedLeaderEpoch: -1, metadata: "" })) }],
    });
    if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(res.errorCode, { detail: res.errorMessage });
    for (const t of res.topics) for (const p of t.partitions) {
      if (p.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(p.errorCode, { topic: t.topic, partition: p.partition, detail: p.errorMessage });
    }
    return offsets;
  }

  /** Committed offsets of a group (every committed partition). */
  async committedOffsets(groupId: string): Promise<Array<{ topic: string; partition: number; offset: bigint }>> {
    const res = await this.call("offsetFetch", { groupId, topics: [] });
    return res.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.committedOffset }));
  }
}
