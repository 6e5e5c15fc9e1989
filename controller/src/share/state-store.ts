// The share-state store: the last SharePartitionState each partition leader wrote, per (share group,
// topic id, partition), in the "share-state" database of the controller's LMDB environment.
//
// Group commit. A write is applied to the in-memory map at once (the caller has just passed the fence
// check, so the order of accepted writes is the order of the map), joins the open batch, and its
// answer waits for the flush of that batch. One batch flushes at a time (one transaction, then the
// environment's fsync); writes accepted meanwhile form the next batch, so the cost is per flush, not
// per write. A read takes the map's value when it arrives and answers after every write accepted
// before it is flushed: a write answered OK to any leader is always seen by a later read, and a read
// never returns a state that is not yet on disk. A flush failure is fatal (the caller's onFatal).
//
// Pipelined writes. A leader may have several writes of one key in flight, numbered with an increasing
// write sequence; they may arrive out of order. The store remembers (in memory) who applied the last
// write of each key: a write from the same broker registration and leader epoch with a sequence not
// above it is older than the state already applied, so it is not applied and is answered when the
// newer state is on disk (a later write holds every change of an earlier one). After a controller
// restart nothing is remembered and the first write of each key applies.
//
// Keys use the topic id, not the name, so a topic deleted and created again starts with no state;
// the states of deleted topics are removed by prune() (the controller calls it when the topic set changes).
//
// Stored value: [format u8 = 1][crc32c u32 BE of the rest][leader epoch i32 BE][SharePartitionState protobuf].
import type { Database } from "lmdb";
import { invariant } from "@runnel/common";
import { checksum, SharePartitionState } from "@runnel/proto";

/** The stored value layout version (first byte of every value). */
export const shareStateFormatVersion = 1;
const headerBytes = 9;
/** Stored share states at most (group x partition pairs); a write that would add one more is refused. */
export const maxShareStates = 1_000_000;
/** Bytes of all stored share states at most (the LMDB map also holds the cluster metadata). */
export const maxShareStateStoreBytes = 512 * 1024 * 1024;
/** Bytes of one encoded share state at most. */
export const maxShareStateBytes = 8 * 1024 * 1024;

export interface StoredShareState {
  readonly groupId: string;
  readonly topicId: string;
  readonly partition: number;
  /** Leader epoch of the leader that wrote it. */
  readonly leaderEpoch: number;
  readonly state: SharePartitionState;
  /** Encoded size, for the store's byte bound. */
  readonly bytes: number;
}

/** A write refused because a store bound is reached (answered THROTTLED; nothing changed). */
/** Who sent a write, to order pipelined writes of one key; writeSequence 0 means unordered (always applied). */
export interface ShareStateWriter {
  readonly brokerId: number;
  readonly brokerEpoch: bigint;
  readonly writeSequence: bigint;
}

export class ShareStoreFull extends Error {
  override name = "ShareStoreFull";
}

/** A stored value that cannot be read back (wrong format or checksum). */
export class ShareStateCorruption extends Error {
  override name = "ShareStateCorruption";
}

export function shareStateKey(groupId: string, topicId: string, partition: number): string {
  return `${groupId}\u0000${topicId}\u0000${partition}`;
}

/** Parses a key from the right: a group id may contain "\0", a topic id (UUID) never does. */
function parseKey(key: string): { groupId: string; topicId: string; partition: number } {
  const last = key.lastIndexOf("\u0000");
  const mid = last <= 0 ? -1 : key.lastIndexOf("\u0000", last - 1);
  const partition = Number(key.slice(last + 1));
  if (mid < 0 || !Number.isInteger(partition) || partition < 0) throw new ShareStateCorruption(`share-state store has a malformed key ${JSON.stringify(key)}`);
  return { groupId: key.slice(0, mid), topicId: key.slice(mid + 1, last), partition };
}

export function encodeStoredShareState(leaderEpoch: number, state: SharePartitionState): Buffer {
  const body = SharePartitionState.encode(state).finish();
  const out = Buffer.allocUnsafe(headerBytes + body.length);
  out.writeUInt8(shareStateFormatVersion, 0);
  out.writeInt32BE(leaderEpoch, 5);
  out.set(body, headerBytes);
  out.writeUInt32BE(checksum(out.subarray(5)), 1);
  return out;
}

export function decodeStoredShareState(key: string, value: Uint8Array): { leaderEpoch: number; state: SharePartitionState } {
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (buf.length < headerBytes) throw new ShareStateCorruption(`share state ${JSON.stringify(key)} is ${buf.length} bytes, shorter than its header`);
  if (buf.readUInt8(0) !== shareStateFormatVersion) throw new ShareStateCorruption(`share state ${JSON.stringify(key)} has format ${buf.readUInt8(0)}; this controller reads ${shareStateFormatVersion}`);
  if (checksum(buf.subarray(5)) !== buf.readUInt32BE(1)) throw new ShareStateCorruption(`share state ${JSON.stringify(key)} fails its CRC32C check`);
  return { leaderEpoch: buf.readInt32BE(5), state: SharePartitionState.decode(buf.subarray(headerBytes)) };
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch nobody waits for (a prune) must not report an unhandled rejection; waiters still see it.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

interface Batch {
  /** Key -> new value, or undefined to remove. A later write of the same key replaces an earlier one. */
  readonly changes: Map<string, Buffer | undefined>;
  readonly done: Deferred;
}

export interface ShareStateStoreOptions {
  /** Called once when a flush fails: the process must stop (answered writes would otherwise be lost). */
  onFatal: (err: unknown) => void;
}

export class ShareStateStore {
  /** group id -> "<topicId>\0<partition>" -> state. */
  private readonly groups = new Map<string, Map<string, StoredShareState>>();
  /** topic id -> group ids holding a state of it (for prune). */
  private readonly groupsByTopic = new Map<string, Set<string>>();
  /** Store key -> the writer and leader epoch of its last applied sequenced write. */
  private readonly lastWrites = new Map<string, ShareStateWriter & { leaderEpoch: number }>();
  private count = 0;
  private totalBytes = 0;
  private open: Batch | undefined;
  private inFlight: Batch | undefined;
  private failure: unknown;
  private closed = false;

  private constructor(
    private readonly db: Database<Buffer, string>,
    private readonly options: ShareStateStoreOptions,
  ) {}

  /** Loads every stored state (throws ShareStateCorruption on a bad record). */
  static load(db: Database<Buffer, string>, options: ShareStateStoreOptions): ShareStateStore {
    const store = new ShareStateStore(db, options);
    for (const { key, value } of db.getRange({})) {
      const { groupId, topicId, partition } = parseKey(key);
      const { leaderEpoch, state } = decodeStoredShareState(key, value);
      store.apply({ groupId, topicId, partition, leaderEpoch, state, bytes: value.length });
    }
    return store;
  }

  get stateCount(): number {
    return this.count;
  }

  get storedBytes(): number {
    return this.totalBytes;
  }

  get(groupId: string, topicId: string, partition: number): StoredShareState | undefined {
    return this.groups.get(groupId)?.get(`${topicId}\u0000${partition}`);
  }

  /** Every state of a group, in no particular order. */
  statesOf(groupId: string): StoredShareState[] {
    return [...(this.groups.get(groupId)?.values() ?? [])];
  }

  groupIds(): string[] {
    return [...this.groups.keys()];
  }

  /**
   * Replaces the state now (a read arriving after this call sees it) and resolves once it is on disk.
   * Throws ShareStoreFull (nothing changed) when a bound would be exceeded. A write older than the
   * one applied last from the same writer (see ShareStateWriter) is not applied; it resolves once the
   * newer state is on disk.
   */
  write(groupId: string, topicId: string, partition: number, leaderEpoch: number, state: SharePartitionState, writer?: ShareStateWriter): Promise<void> {
    this.checkUsable();
    const key = shareStateKey(groupId, topicId, partition);
    const last = this.lastWrites.get(key);
    if (
      writer !== undefined && writer.writeSequence > 0n && last !== undefined && last.brokerId === writer.brokerId &&
      last.brokerEpoch === writer.brokerEpoch && last.leaderEpoch === leaderEpoch && last.writeSequence >= writer.writeSequence
    ) {
      return this.whenFlushed();
    }
    const value = encodeStoredShareState(leaderEpoch, state);
    const old = this.get(groupId, topicId, partition);
    if (value.length > maxShareStateBytes) throw new ShareStoreFull(`share state of group ${groupId} on ${topicId}/${partition} is ${value.length} bytes; at most ${maxShareStateBytes}`);
    if (old === undefined && this.count >= maxShareStates) throw new ShareStoreFull(`the controller holds ${this.count} share states (at most ${maxShareStates})`);
    if (this.totalBytes - (old?.bytes ?? 0) + value.length > maxShareStateStoreBytes) {
      throw new ShareStoreFull(`share states would take more than ${maxShareStateStoreBytes} bytes on the controller`);
    }
    this.apply({ groupId, topicId, partition, leaderEpoch, state, bytes: value.length });
    if (writer !== undefined && writer.writeSequence > 0n) this.lastWrites.set(key, { ...writer, leaderEpoch });
    else this.lastWrites.delete(key);
    return this.enqueue(key, value);
  }

  /** Resolves when every write accepted before this call is on disk. */
  whenFlushed(): Promise<void> {
    this.checkUsable();
    return (this.open ?? this.inFlight)?.done.promise ?? Promise.resolve();
  }

  /**
   * Removes the states of every topic id not in `liveTopicIds` (deleted topics). Returns how many
   * states were removed; the removal is flushed with the next batch.
   */
  prune(liveTopicIds: ReadonlySet<string>): number {
    if (this.closed || this.failure !== undefined) return 0;
    let removed = 0;
    for (const [topicId, groupIds] of this.groupsByTopic) {
      if (liveTopicIds.has(topicId)) continue;
      for (const groupId of groupIds) {
        const states = this.groups.get(groupId);
        invariant(states !== undefined, () => `share-state index names group ${groupId} for topic id ${topicId} but the group has no states`);
        for (const [k, s] of states) {
          if (s.topicId !== topicId) continue;
          states.delete(k);
          this.count -= 1;
          this.totalBytes -= s.bytes;
          removed += 1;
          const key = shareStateKey(groupId, topicId, s.partition);
          this.lastWrites.delete(key);
          void this.enqueue(key, undefined);
        }
        if (states.size === 0) this.groups.delete(groupId);
      }
      this.groupsByTopic.delete(topicId);
    }
    return removed;
  }

  /** Refuses new writes and waits for the accepted ones to be on disk. */
  async close(): Promise<void> {
    if (this.closed) return;
    const last = (this.open ?? this.inFlight)?.done.promise;
    this.closed = true;
    if (last !== undefined) await last;
  }

  private checkUsable(): void {
    if (this.failure !== undefined) throw new Error(`share-state store failed to flush earlier: ${String(this.failure)}`);
    if (this.closed) throw new Error("share-state store is closed (the controller is shutting down)");
  }

  private apply(s: StoredShareState): void {
    let states = this.groups.get(s.groupId);
    if (states === undefined) this.groups.set(s.groupId, (states = new Map()));
    const k = `${s.topicId}\u0000${s.partition}`;
    const old = states.get(k);
    if (old === undefined) this.count += 1;
    this.totalBytes += s.bytes - (old?.bytes ?? 0);
    states.set(k, s);
    let groupIds = this.groupsByTopic.get(s.topicId);
    if (groupIds === undefined) this.groupsByTopic.set(s.topicId, (groupIds = new Set()));
    groupIds.add(s.groupId);
  }

  private enqueue(key: string, value: Buffer | undefined): Promise<void> {
    this.open ??= { changes: new Map(), done: deferred() };
    this.open.changes.set(key, value);
    const done = this.open.done.promise;
    if (this.inFlight === undefined) this.flushNext();
    return done;
  }

  /** Flushes the open batch; when it is on disk, the batch that formed meanwhile goes next. */
  private flushNext(): void {
    const batch = this.open;
    if (batch === undefined || this.failure !== undefined) return;
    this.open = undefined;
    this.inFlight = batch;
    const db = this.db;
    void (async () => {
      await db.transaction(() => {
        for (const [key, value] of batch.changes) {
          if (value === undefined) db.removeSync(key);
          else db.putSync(key, value);
        }
      });
      await db.flushed;
    })().then(
      () => {
        this.inFlight = undefined;
        batch.done.resolve();
        this.flushNext();
      },
      (err: unknown) => {
        this.failure = err;
        this.inFlight = undefined;
        const failed = new Error(`share-state flush failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        batch.done.reject(failed);
        this.open?.done.reject(failed);
        this.open = undefined;
        this.options.onFatal(failed);
      },
    );
  }
}
