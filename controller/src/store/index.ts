// controller/src/store: the durable copy of the cluster metadata in one LMDB environment (--data-dir).
// Every command's changes are written in one transaction and flushed to disk before the command is
// answered or its delta published, so a kill -9 (or power loss) never forgets an answered change.
// Records: "meta" (cluster id, metadata version, next broker epoch / producer id / topic sequence),
// "broker/<id>", "topic/<name>", "partition/<name>/<index>", "producer/<id>". Only what changed is
// written: the state is copy-on-write, so a changed record is a different object.
// Liveness is not stored: on load every broker is "not alive" and gets one session timeout of grace.
// Consumer groups live in a second database ("groups") of the same environment: "group/<id>" holds a
// group's epochs, assignor, members and assignments (and, while it has none, since when: the start of its
// offsets retention); "offset/<id>\0<topic>\0<partition>" one committed offset. A deleted group's records
// are removed with it. Member heartbeat times are not stored: every member gets one session timeout of grace.
// Share-group states live in a third database ("share-state"), binary values, owned and written by
// share/state-store.ts with its own group commit; close() waits for its last flush too.
import { mkdirSync } from "node:fs";
import { open, type Database, type RootDatabase } from "lmdb";
import { invariant } from "@runnel/common";
import {
  type BrokerRecord,
  checkPartition,
  type ClusterState,
  initialState,
  type PartitionRecord,
  type TopicRecord,
} from "../metadata/index.js";
import {
  type AssignorName,
  type CommittedOffsetRecord,
  emptyGroupsState,
  graceAfterLoad,
  type GroupRecord,
  type GroupsState,
  type MemberRecord,
  offsetKey,
  type Partitions,
} from "../groups/index.js";

/** Bumped when the stored layout changes incompatibly. */
export const storeFormatVersion = 1;
/** LMDB map size: the metadata of 100k partitions is a few tens of MiB. */
export const maxStoreBytes = 1024 * 1024 * 1024;

/** "meta", "broker/<id>", "topic/<name>", "partition/<name>/<index>", "producer/<id>" (topic names cannot contain "/"). */
type Key = string;

interface MetaValue {
  formatVersion: number;
  clusterId: string;
  metadataVersion: string;
  nextBrokerEpoch: string;
  nextProducerId: string;
  nextTopicSeq: number;
}

interface BrokerValue {
  id: number;
  epoch: string;
  host: string;
  port: number;
  rack: string;
  incarnationId: string;
  fenced: boolean;
  shuttingDown: boolean;
}

interface TopicValue {
  name: string;
  topicId: string;
  configs: Record<string, string>;
  partitionCount: number;
}

interface PartitionValue {
  replicas: number[];
  isr: number[];
  leader: number;
  leaderEpoch: number;
  partitionEpoch: number;
}

/** Stored data that cannot be read back as a valid state (wrong format, missing or inconsistent records). */
export class StoreCorruption extends Error {
  override name = "StoreCorruption";
}

export class MetadataStore {
  private constructor(
    private readonly root: RootDatabase,
    private readonly db: Database<unknown, Key>,
    private readonly groupsDb: Database<unknown, Key>,
    /** The share-state database; its records are share/state-store.ts's. */
    readonly shareStateDb: Database<Buffer, string>,
  ) {}

  static open(dataDir: string): MetadataStore {
    mkdirSync(dataDir, { recursive: true });
    const root = open({ path: dataDir, mapSize: maxStoreBytes });
    const db = root.openDB<unknown, Key>({ name: "metadata", encoding: "json" });
    const groupsDb = root.openDB<unknown, Key>({ name: "groups", encoding: "json" });
    const shareStateDb = root.openDB<Buffer, string>({ name: "share-state", encoding: "binary" });
    return new MetadataStore(root, db, groupsDb, shareStateDb);
  }

  /**
   * Loads the persisted state, or creates (and persists) a new cluster when the store is empty.
   * Brokers come back not alive with a session starting at nowMs (one timeout of grace).
   */
  async load(newClusterId: () => string, nowMs: number): Promise<ClusterState> {
    const meta = this.db.get("meta") as MetaValue | undefined;
    if (meta === undefined) {
      const state = initialState(newClusterId(), nowMs);
      await this.db.transaction(() => this.db.putSync("meta", metaValueOf(state)));
      await this.db.flushed;
      return state;
    }
    if (meta.formatVersion !== storeFormatVersion) {
      throw new StoreCorruption(`controller store has format version ${meta.formatVersion}; this controller reads version ${storeFormatVersion}`);
    }
    const brokers = new Map<number, BrokerRecord>();
    const topicValues = new Map<string, TopicValue>();
    const partitions = new Map<string, Map<number, PartitionRecord>>();
    const producerEpochs = new Map<bigint, number>();
    for (const { key, value } of this.db.getRange({})) {
      const parts = key.split("/");
      const kind = parts[0];
      if (kind === "broker") {
        const v = value as BrokerValue;
        brokers.set(v.id, {
          id: v.id,
          epoch: BigInt(v.epoch),
          host: v.host,
          port: v.port,
          rack: v.rack,
          incarnationId: v.incarnationId,
          alive: false,
          fenced: v.fenced,
          shuttingDown: v.shuttingDown,
        });
      } else if (kind === "topic") {
        const v = value as TopicValue;
        topicValues.set(v.name, v);
      } else if (kind === "partition") {
        const name = parts[1]!;
        let map = partitions.get(name);
        if (map === undefined) partitions.set(name, (map = new Map()));
        map.set(Number(parts[2]), value as PartitionValue);
      } else if (kind === "producer") {
        producerEpochs.set(BigInt(parts[1]!), value as number);
      } else if (kind !== "meta") {
        throw new StoreCorruption(`controller store has an unknown record "${key}"`);
      }
    }
    const topics = new Map<string, TopicRecord>();
    for (const t of topicValues.values()) {
      const stored = partitions.get(t.name) ?? new Map<number, PartitionRecord>();
      const list: PartitionRecord[] = [];
      for (let i = 0; i < t.partitionCount; i++) {
        const p = stored.get(i);
        if (p === undefined) throw new StoreCorruption(`controller store lacks partition ${t.name}-${i} (topic has ${t.partitionCount})`);
        checkPartition(t.name, i, p);
        list.push(p);
      }
      if (stored.size !== t.partitionCount) throw new StoreCorruption(`controller store has ${stored.size} partitions for topic ${t.name}, expected ${t.partitionCount}`);
      topics.set(t.name, { name: t.name, topicId: t.topicId, configs: t.configs, partitions: list });
    }
    for (const name of partitions.keys()) {
      if (!topics.has(name)) throw new StoreCorruption(`controller store has partitions of unknown topic ${name}`);
    }
    const lastHeartbeatMs = new Map<number, number>();
    for (const b of brokers.values()) if (!b.fenced) lastHeartbeatMs.set(b.id, nowMs);
    return {
      clusterId: meta.clusterId,
      metadataVersion: BigInt(meta.metadataVersion),
      nextBrokerEpoch: BigInt(meta.nextBrokerEpoch),
      nextProducerId: BigInt(meta.nextProducerId),
      nextTopicSeq: meta.nextTopicSeq,
      brokers,
      topics,
      producerEpochs,
      lastHeartbeatMs,
      lastBalanceMs: nowMs,
    };
  }

  /**
   * Writes what changed from `prev` to `next` in one transaction and waits until it is on disk.
   * Returns the number of records written or removed (0: nothing durable changed, nothing written).
   */
  async persist(prev: ClusterState, next: ClusterState): Promise<number> {
    invariant(prev.clusterId === next.clusterId, () => `cluster id changed from ${prev.clusterId} to ${next.clusterId}`);
    invariant(next.metadataVersion >= prev.metadataVersion, () => `metadata version would go back from ${prev.metadataVersion} to ${next.metadataVersion}`);
    const puts: [Key, unknown][] = [];
    const removes: Key[] = [];
    if (
      prev.metadataVersion !== next.metadataVersion ||
      prev.nextBrokerEpoch !== next.nextBrokerEpoch ||
      prev.nextProducerId !== next.nextProducerId ||
      prev.nextTopicSeq !== next.nextTopicSeq
    ) {
      puts.push(["meta", metaValueOf(next)]);
    }
    if (prev.brokers !== next.brokers) {
      for (const [id, b] of next.brokers) {
        const old = prev.brokers.get(id);
        if (old === b) continue;
        // Liveness alone is not stored (it is rebuilt at load), so only durable fields count.
        const value = brokerValueOf(b);
        if (old !== undefined && JSON.stringify(brokerValueOf(old)) === JSON.stringify(value)) continue;
        puts.push([`broker/${id}`, value]);
      }
    }
    if (prev.topics !== next.topics) {
      for (const [name, t] of next.topics) {
        const old = prev.topics.get(name);
        if (old === t) continue;
        if (old === undefined || old.topicId !== t.topicId) {
          if (old !== undefined) this.removeTopicKeys(old, removes);
          puts.push([`topic/${name}`, topicValueOf(t)]);
          t.partitions.forEach((p, i) => puts.push([`partition/${name}/${i}`, partitionValueOf(p)]));
          continue;
        }
        if (old.configs !== t.configs) puts.push([`topic/${name}`, topicValueOf(t)]);
        if (old.partitions !== t.partitions) {
          invariant(old.partitions.length === t.partitions.length, () => `topic ${name} partition count changed from ${old.partitions.length} to ${t.partitions.length}`);
          t.partitions.forEach((p, i) => {
            if (old.partitions[i] !== p) puts.push([`partition/${name}/${i}`, partitionValueOf(p)]);
          });
        }
      }
      for (const [name, old] of prev.topics) if (!next.topics.has(name)) this.removeTopicKeys(old, removes);
    }
    if (prev.producerEpochs !== next.producerEpochs) {
      for (const [id, epoch] of next.producerEpochs) if (prev.producerEpochs.get(id) !== epoch) puts.push([`producer/${id}`, epoch]);
      for (const id of prev.producerEpochs.keys()) if (!next.producerEpochs.has(id)) removes.push(`producer/${id}`);
    }
    if (puts.length === 0 && removes.length === 0) return 0;
    await this.db.transaction(() => {
      for (const key of removes) this.db.removeSync(key);
      for (const [key, value] of puts) this.db.putSync(key, value);
    });
    await this.db.flushed;
    return puts.length + removes.length;
  }

  private removeTopicKeys(t: TopicRecord, removes: Key[]): void {
    removes.push(`topic/${t.name}`);
    t.partitions.forEach((_, i) => removes.push(`partition/${t.name}/${i}`));
  }

  /** Loads every group and committed offset; members get a session timeout of grace from nowMs. */
  loadGroups(nowMs: number): GroupsState {
    const groupValues = new Map<string, GroupValue>();
    const offsets = new Map<string, Map<string, CommittedOffsetRecord>>();
    for (const { key, value } of this.groupsDb.getRange({})) {
      if (key.startsWith("group/")) {
        const v = value as GroupValue;
        groupValues.set(v.groupId, v);
      } else if (key.startsWith("offset/")) {
        const v = value as OffsetValue;
        let map = offsets.get(v.groupId);
        if (map === undefined) offsets.set(v.groupId, (map = new Map()));
        map.set(offsetKey(v.topic, v.partition), { offset: BigInt(v.offset), leaderEpoch: v.leaderEpoch, metadata: v.metadata, commitTimestampMs: v.commitTimestampMs });
      } else {
        throw new StoreCorruption(`controller store has an unknown group record "${key}"`);
      }
    }
    const groups = new Map<string, GroupRecord>();
    for (const v of groupValues.values()) {
      groups.set(v.groupId, {
        groupId: v.groupId,
        groupEpoch: v.groupEpoch,
        targetEpoch: v.targetEpoch,
        assignor: v.assignor,
        subscriptionSignature: v.subscriptionSignature,
        members: new Map(v.members.map((m) => [m.memberId, m])),
        targetAssignment: new Map(Object.entries(v.targetAssignment)),
        offsets: offsets.get(v.groupId) ?? new Map(),
        // Stores written before offsets retention lack it: the retention starts at this load.
        emptySinceMs: v.members.length > 0 ? undefined : (v.emptySinceMs ?? nowMs),
      });
    }
    for (const groupId of offsets.keys()) {
      if (!groups.has(groupId)) throw new StoreCorruption(`controller store has offsets of unknown group ${groupId}`);
    }
    return graceAfterLoad({ ...emptyGroupsState, groups }, nowMs);
  }

  /** Writes the groups and offsets that changed from `prev` to `next` in one transaction, flushed. */
  async persistGroups(prev: GroupsState, next: GroupsState): Promise<number> {
    if (prev.groups === next.groups) return 0;
    const puts: [Key, unknown][] = [];
    const removes: Key[] = [];
    for (const [id, g] of next.groups) {
      const old = prev.groups.get(id);
      if (old === g) continue;
      if (old === undefined || old.groupEpoch !== g.groupEpoch || old.targetEpoch !== g.targetEpoch || old.assignor !== g.assignor || old.members !== g.members || old.targetAssignment !== g.targetAssignment || old.subscriptionSignature !== g.subscriptionSignature || old.emptySinceMs !== g.emptySinceMs) {
        const value = groupValueOf(g);
        if (old === undefined || JSON.stringify(groupValueOf(old)) !== JSON.stringify(value)) puts.push([`group/${id}`, value]);
      }
      if (old?.offsets !== g.offsets) {
        for (const [k, o] of g.offsets) {
          if (old?.offsets.get(k) === o) continue;
          const sep = k.lastIndexOf("\u0000");
          puts.push([`offset/${id}\u0000${k}`, { groupId: id, topic: k.slice(0, sep), partition: Number(k.slice(sep + 1)), offset: o.offset.toString(), leaderEpoch: o.leaderEpoch, metadata: o.metadata, commitTimestampMs: o.commitTimestampMs } satisfies OffsetValue]);
        }
        for (const k of old?.offsets.keys() ?? []) if (!g.offsets.has(k)) removes.push(`offset/${id}\u0000${k}`);
      }
    }
    for (const [id, old] of prev.groups) {
      if (next.groups.has(id)) continue;
      removes.push(`group/${id}`);
      for (const k of old.offsets.keys()) removes.push(`offset/${id}\u0000${k}`);
    }
    if (puts.length === 0 && removes.length === 0) return 0;
    await this.groupsDb.transaction(() => {
      for (const key of removes) this.groupsDb.removeSync(key);
      for (const [key, value] of puts) this.groupsDb.putSync(key, value);
    });
    await this.groupsDb.flushed;
    return puts.length + removes.length;
  }

  async close(): Promise<void> {
    await this.db.flushed;
    await this.groupsDb.flushed;
    await this.shareStateDb.flushed;
    await this.root.close();
  }
}

function metaValueOf(s: ClusterState): MetaValue {
  return {
    formatVersion: storeFormatVersion,
    clusterId: s.clusterId,
    metadataVersion: s.metadataVersion.toString(),
    nextBrokerEpoch: s.nextBrokerEpoch.toString(),
    nextProducerId: s.nextProducerId.toString(),
    nextTopicSeq: s.nextTopicSeq,
  };
}

function brokerValueOf(b: BrokerRecord): BrokerValue {
  return { id: b.id, epoch: b.epoch.toString(), host: b.host, port: b.port, rack: b.rack, incarnationId: b.incarnationId, fenced: b.fenced, shuttingDown: b.shuttingDown };
}

function topicValueOf(t: TopicRecord): TopicValue {
  return { name: t.name, topicId: t.topicId, configs: { ...t.configs }, partitionCount: t.partitions.length };
}

function partitionValueOf(p: PartitionRecord): PartitionValue {
  return { replicas: [...p.replicas], isr: [...p.isr], leader: p.leader, leaderEpoch: p.leaderEpoch, partitionEpoch: p.partitionEpoch };
}

interface GroupValue {
  groupId: string;
  groupEpoch: number;
  targetEpoch: number;
  assignor: AssignorName;
  subscriptionSignature: string;
  members: MemberRecord[];
  targetAssignment: Record<string, Partitions>;
  /** Absent while the group has members. */
  emptySinceMs?: number;
}

interface OffsetValue {
  groupId: string;
  topic: string;
  partition: number;
  offset: string;
  leaderEpoch: number;
  metadata: string;
  commitTimestampMs: number;
}

function groupValueOf(g: GroupRecord): GroupValue {
  return {
    groupId: g.groupId,
    groupEpoch: g.groupEpoch,
    targetEpoch: g.targetEpoch,
    assignor: g.assignor,
    subscriptionSignature: g.subscriptionSignature,
    members: [...g.members.values()],
    targetAssignment: Object.fromEntries(g.targetAssignment),
    ...(g.emptySinceMs === undefined ? {} : { emptySinceMs: g.emptySinceMs }),
  };
}
