// Share-group administration: list and describe share groups (members and, per partition, the state
// its leader last wrote: start/end offset and how many records are acquired, available, delayed,
// dead-lettering or archived), and dead letters: list them with their runnel.dlq.* headers parsed, and
// redrive them (re-produce each to the topic it came from). Redrive commits its progress in the
// consumer group "runnel.dlq-redrive.<dead-letter topic>", so a second redrive does not repeat; it is
// at-least-once (a crash between producing and committing re-drives those records again).
import {
  ErrorCode, ShareRecordState, deadLetterHeaderPrefix, deadLetterHeaders, deadLetterTopicOf, defaultTopicConfig, resolveTopicConfig,
  type SharePartitionState, type TopicConfig,
} from "@runnel/proto";
import { Consumer, type ConsumerContext, type ConsumerHeader, type ConsumerRecord } from "../consumer/index.js";
import { GroupError, RunnelError, UnknownTopicError, errorFromCode } from "../errors/index.js";
import { GroupAdmin } from "../groups/admin.js";
import type { ClusterMetadata } from "../metadata/index.js";
import { listOffsets } from "../metadata/offsets.js";
import { Producer } from "../producer/index.js";
import { retryPolicy, withRetry, type RetryPolicy } from "../retry/index.js";
import type { ControllerMethods } from "../network/index.js";

/** Most dead letters one dlqList returns when not told. */
export const defaultDlqListMaxRecords = 1_000;
/** Longest a dead-letter read waits for the records below the high watermark, in milliseconds. */
export const dlqReadTimeoutMs = 30_000;
/** Redrive commits its progress after this many re-produced records (and at the end). */
export const dlqRedriveCommitEveryRecords = 500;

export interface ShareGroupListing {
  groupId: string;
  memberCount: number;
  partitionCount: number;
}

export interface ShareGroupMemberDescription {
  memberId: string;
  clientId: string;
  subscribedTopics: string[];
  lastHeartbeatAgeMs: number;
}

export interface SharePartitionSummary {
  topic: string;
  partition: number;
  leaderEpoch: number;
  /** Every record below it is settled. */
  startOffset: bigint;
  /** The first offset that has not entered the share window yet. */
  endOffset: bigint;
  /** Locked to a member now (in flight). */
  acquired: number;
  /** Waiting for a member, including delayed ones. */
  available: number;
  /** Available, but not before a future time (delay or release backoff). */
  delayed: number;
  /** Being produced to the dead-letter topic. */
  deadLettering: number;
  /** Settled inside the window (accepted or dead-lettered). */
  archived: number;
  /** The highest delivery count of a record in the window. */
  maxDeliveryCount: number;
}

export interface ShareGroupDescriptionResult {
  groupId: string;
  members: ShareGroupMemberDescription[];
  partitions: SharePartitionSummary[];
}

/** A dead letter read back from a dead-letter topic. */
export interface DeadLetter {
  /** Where the dead letter itself is. */
  dlqTopic: string;
  dlqPartition: number;
  dlqOffset: bigint;
  /** Where the record came from (runnel.dlq.topic/partition/offset); "" / -1 when the headers are missing. */
  topic: string;
  partition: number;
  offset: bigint;
  /** Delivery count when it was dead-lettered. */
  attempts: number;
  /** The last failure reason. */
  reason: string;
  /** When it was dead-lettered (ms since the Unix epoch), 0 when unknown. */
  deadLetteredAtMs: number;
  key: Buffer | null;
  value: Buffer | null;
  /** The original headers (runnel.dlq.* removed). */
  headers: ConsumerHeader[];
  timestamp: number;
}

export interface DlqRedriveResult {
  dlqTopic: string;
  /** Dead letters re-produced to their original topic. */
  redriven: number;
  /** Dead letters without a runnel.dlq.topic header (skipped, but committed past). */
  skipped: number;
}

export interface ShareAdminContext extends ConsumerContext {}

/** Counts of one share-partition state (records of the window no range covers are available, count 0). */
export function summarizeSharePartition(state: SharePartitionState, nowMs: number): Omit<SharePartitionSummary, "topic" | "partition" | "leaderEpoch"> {
  const out = { startOffset: state.startOffset, endOffset: state.endOffset, acquired: 0, available: 0, delayed: 0, deadLettering: 0, archived: 0, maxDeliveryCount: 0 };
  let covered = 0n;
  for (const r of state.ranges) {
    const n = Number(r.lastOffset - r.firstOffset + 1n);
    covered += BigInt(n);
    out.maxDeliveryCount = Math.max(out.maxDeliveryCount, r.deliveryCount);
    switch (r.state) {
      case ShareRecordState.SHARE_RECORD_ACQUIRED: out.acquired += n; break;
      case ShareRecordState.SHARE_RECORD_ARCHIVED: out.archived += n; break;
      case ShareRecordState.SHARE_RECORD_DEAD_LETTERING: out.deadLettering += n; break;
      default:
        out.available += n;
        if (Number(r.availableAfterMs) > nowMs) out.delayed += n;
    }
  }
  const window = state.endOffset - state.startOffset;
  if (window > covered) out.available += Number(window - covered);
  return out;
}

function header(headers: readonly ConsumerHeader[], key: string): string | undefined {
  return headers.find((h) => h.key === key)?.value.toString("utf8");
}

/** Parses a dead letter's runnel.dlq.* headers; the original headers are returned without them. */
export function parseDeadLetter(r: ConsumerRecord): DeadLetter {
  const int = (key: string, fallback: number): number => {
    const v = header(r.headers, key);
    return v !== undefined && /^-?\d+$/.test(v) ? Number(v) : fallback;
  };
  const offsetText = header(r.headers, deadLetterHeaders.offset);
  return {
    dlqTopic: r.topic, dlqPartition: r.partition, dlqOffset: r.offset,
    topic: header(r.headers, deadLetterHeaders.topic) ?? "",
    partition: int(deadLetterHeaders.partition, -1),
    offset: offsetText !== undefined && /^\d+$/.test(offsetText) ? BigInt(offsetText) : -1n,
    attempts: int(deadLetterHeaders.attempts, 0),
    reason: header(r.headers, deadLetterHeaders.reason) ?? "",
    deadLetteredAtMs: int(deadLetterHeaders.time, 0),
    key: r.key, value: r.value, timestamp: r.timestamp,
    headers: r.headers.filter((h) => !h.key.startsWith(deadLetterHeaderPrefix)),
  };
}

/** A topic's effective config from its metadata overrides (defaults when they cannot be read). */
export function topicConfigOf(configs: Record<string, string>): TopicConfig {
  try {
    return resolveTopicConfig(configs);
  } catch {
    return { ...defaultTopicConfig };
  }
}

/**
 * Which topic holds the dead letters for `topic`: its dead.letter.topic (default "<topic>.dlq"), or
 * `topic` itself when it is a dead-letter topic (its name ends in ".dlq" and it has none of its own).
 * undefined when the dead-letter topic does not exist yet (nothing was dead-lettered).
 */
export async function resolveDeadLetterTopic(metadata: ClusterMetadata, topic: string): Promise<string | undefined> {
  const exists = async (name: string) => {
    try {
      return await metadata.ensureTopic(name);
    } catch (err) {
      if (err instanceof UnknownTopicError) return undefined;
      throw err;
    }
  };
  const info = await exists(topic);
  if (info === undefined) throw errorFromCode(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, { topic, detail: `topic "${topic}" does not exist` });
  const dlq = deadLetterTopicOf(topic, topicConfigOf(info.configs));
  if ((await exists(dlq)) !== undefined) return dlq;
  return topic.endsWith(".dlq") ? topic : undefined;
}

export class ShareAdmin {
  private readonly policy: RetryPolicy;

  constructor(private readonly ctx: ShareAdminContext) {
    this.policy = retryPolicy(ctx.retry);
  }

  private call<M extends keyof ControllerMethods>(method: M, request: ControllerMethods[M][0]): Promise<ControllerMethods[M][1]> {
    return withRetry(this.policy, async () => this.ctx.pool.controller(await this.ctx.metadata.controllerAddress(), method, request), {
      beforeRetry: () => this.ctx.metadata.refresh().catch(() => undefined),
    });
  }

  /** Every share group the controller knows (with members or stored state). */
  async listShareGroups(): Promise<ShareGroupListing[]> {
    const res = await this.call("describeShareGroups", { groupIds: [] });
    return res.groups
      .filter((g) => g.errorCode === ErrorCode.ERROR_CODE_NONE)
      .map((g) => ({ groupId: g.groupId, memberCount: g.members.length, partitionCount: g.partitions.length }))
      .sort((a, b) => a.groupId.localeCompare(b.groupId));
  }

  /** Members and per-partition state of one share group; GroupError (GROUP_ID_NOT_FOUND) when unknown. */
  async describeShareGroup(groupId: string): Promise<ShareGroupDescriptionResult> {
    const res = await this.call("describeShareGroups", { groupIds: [groupId] });
    const g = res.groups.find((x) => x.groupId === groupId) ?? res.groups[0];
    if (g === undefined) throw new GroupError(`controller gave no description of share group "${groupId}"`, { code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: false });
    if (g.errorCode === ErrorCode.GROUP_ID_NOT_FOUND) {
      throw new GroupError(`share group "${groupId}" does not exist`, { code: ErrorCode.GROUP_ID_NOT_FOUND, retriable: false });
    }
    if (g.errorCode !== ErrorCode.ERROR_CODE_NONE) throw errorFromCode(g.errorCode, { detail: g.errorMessage });
    const now = Date.now();
    return {
      groupId: g.groupId,
      members: g.members.map((m) => ({ memberId: m.memberId, clientId: m.clientId, subscribedTopics: m.subscribedTopicNames, lastHeartbeatAgeMs: Number(m.lastHeartbeatAgeMs) })),
      partitions: g.partitions.map((p) => ({
        topic: p.topic, partition: p.partition, leaderEpoch: p.leaderEpoch,
        ...summarizeSharePartition(p.state ?? { startOffset: 0n, endOffset: 0n, ranges: [] }, now),
      })).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition)),
    };
  }

  /** The dead letters of `topic` (a work topic, or a dead-letter topic itself), oldest first, at most maxRecords. */
  async dlqList(topic: string, options: { maxRecords?: number } = {}): Promise<DeadLetter[]> {
    const maxRecords = options.maxRecords ?? defaultDlqListMaxRecords;
    const dlq = await resolveDeadLetterTopic(this.ctx.metadata, topic);
    if (dlq === undefined) return [];
    const out: DeadLetter[] = [];
    await this.readTopic(dlq, "earliest", maxRecords, async (r) => {
      out.push(parseDeadLetter(r));
    });
    return out;
  }

  /**
   * Re-produces each dead letter not yet redriven to its runnel.dlq.topic (key, value and original
   * headers; runnel.dlq.* removed) and commits progress in "runnel.dlq-redrive.<dead-letter topic>".
   */
  async dlqRedrive(topic: string, options: { maxRecords?: number } = {}): Promise<DlqRedriveResult> {
    const maxRecords = options.maxRecords ?? Number.MAX_SAFE_INTEGER;
    const dlq = await resolveDeadLetterTopic(this.ctx.metadata, topic);
    if (dlq === undefined) return { dlqTopic: deadLetterTopicOf(topic, topicConfigOf(this.ctx.metadata.topic(topic)?.configs ?? {})), redriven: 0, skipped: 0 };
    const groupId = `runnel.dlq-redrive.${dlq}`;
    const groups = new GroupAdmin(this.ctx);
    const committed = new Map<number, bigint>();
    for (const c of await groups.committedOffsets(groupId)) if (c.topic === dlq && c.offset >= 0n) committed.set(c.partition, c.offset);
    const producer = new Producer(this.ctx, { acks: "all" });
    const progress = new Map<number, bigint>();
    const sends: Array<Promise<unknown>> = [];
    let redriven = 0;
    let skipped = 0;
    const commit = async () => {
      await Promise.all(sends.splice(0));
      for (const [partition, offset] of progress) {
        if (committed.get(partition) === offset) continue;
        await groups.resetOffsets(groupId, dlq, offset, [partition]);
        committed.set(partition, offset);
      }
    };
    try {
      await this.readTopic(dlq, committed, maxRecords, async (r) => {
        const d = parseDeadLetter(r);
        if (d.topic === "") {
          skipped += 1;
        } else {
          sends.push(producer.send({ topic: d.topic, key: d.key, value: d.value, headers: d.headers.map((h) => ({ key: h.key, value: h.value })) }));
          redriven += 1;
        }
        progress.set(r.partition, r.offset + 1n);
        if ((redriven + skipped) % dlqRedriveCommitEveryRecords === 0) await commit();
      });
      await commit();
    } finally {
      await producer.close().catch(() => undefined);
    }
    return { dlqTopic: dlq, redriven, skipped };
  }

  /** Reads `topic` from the given start (per partition, else earliest) up to its high watermarks, at most maxRecords. */
  private async readTopic(topic: string, start: "earliest" | Map<number, bigint>, maxRecords: number, onRecord: (r: ConsumerRecord) => Promise<void>): Promise<void> {
    const ends = new Map((await listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, topic, "latest")).map((o) => [o.partition, o.offset]));
    const starts = new Map((await listOffsets(this.ctx.pool, this.ctx.metadata, this.policy, topic, "earliest")).map((o) => [o.partition, o.offset]));
    const consumer = new Consumer(this.ctx, { resetPolicy: "earliest" });
    const remaining = new Set<number>();
    const tps: Array<{ topic: string; partition: number; from: bigint }> = [];
    for (const [partition, end] of ends) {
      const earliest = starts.get(partition) ?? 0n;
      const wanted = start === "earliest" ? earliest : start.get(partition) ?? earliest;
      const from = wanted < earliest ? earliest : wanted;
      if (from < end) {
        remaining.add(partition);
        tps.push({ topic, partition, from });
      }
    }
    if (tps.length === 0 || maxRecords <= 0) return;
    consumer.assign(tps.map(({ partition }) => ({ topic, partition })));
    for (const tp of tps) consumer.seek({ topic, partition: tp.partition }, tp.from);
    const timer = setTimeout(() => void consumer.close(), dlqReadTimeoutMs);
    let count = 0;
    try {
      while (remaining.size > 0 && count < maxRecords) {
        const r = await consumer.next();
        if (r === undefined) throw new RunnelError(`reading topic "${topic}" up to its high watermark took longer than ${dlqReadTimeoutMs} ms`, { code: ErrorCode.REQUEST_TIMED_OUT, retriable: true, topic });
        if (!remaining.has(r.partition)) continue;
        count += 1;
        await onRecord(r);
        if (r.offset + 1n >= (ends.get(r.partition) ?? 0n)) remaining.delete(r.partition);
      }
    } finally {
      clearTimeout(timer);
      await consumer.close();
    }
  }
}
