// One LMDB environment per broker holding every partition log (one named database each) and their
// metadata, plus group commit: flush() resolves when everything written before the call is fsynced,
// and concurrent calls share one wait. A background watcher advances each partition's flushedOffset
// as LMDB's own syncs complete (with overlappingSync every commit is fsynced shortly after it
// becomes visible), so flushedOffset moves even when nobody calls flush().
import { type Database, open, type RootDatabase } from "lmdb";
import { StoredValuePool } from "./codec.js";
import { LogUnavailableError } from "./errors.js";
import { defaultMaxDbs } from "./limits.js";
import { type FlushTarget, type LogConfig, type PartitionHost, PartitionLog, type PartitionMetaRecord } from "./partition-log.js";
import { defaultTopicConfig } from "@runnel/proto";

export interface LogStoreOptions {
  dir: string;
  /** Initial LMDB map size; lmdb-js grows the map as needed. */
  mapSizeBytes?: number;
  /** Never fsync (tests and benchmarks only): flush() then only waits for commits. */
  noSync?: boolean;
  maxDbs?: number;
}

const metaDbName = "runnel:partition-meta";
const storeKey = "store";
const partitionKeyPrefix = "p/";

/** The configuration a partition found on disk gets until the broker sets the topic's own. */
export const defaultLogConfig: Readonly<LogConfig> = Object.freeze({
  retentionMs: defaultTopicConfig.retentionMs,
  retentionBytes: defaultTopicConfig.retentionBytes,
  maxMessageBytes: defaultTopicConfig.maxMessageBytes,
});

function partitionKey(topicId: string, partition: number): string {
  return `${partitionKeyPrefix}${topicId}/${partition}`;
}

function partitionDbName(topicId: string, partition: number): string {
  return `log/${topicId}/${partition}`;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
  writeCheckpoints: boolean;
}

function deferred(writeCheckpoints: boolean): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // the background watcher never awaits it
  return { promise, resolve, reject, writeCheckpoints };
}

export class LogStore {
  readonly #root: RootDatabase;
  readonly #meta: Database<PartitionMetaRecord, string>;
  readonly #dir: string;
  readonly #partitions = new Map<string, PartitionLog>();
  readonly #unflushed = new Set<PartitionLog>();
  readonly #host: PartitionHost;
  #flushRunning: Promise<void> | undefined;
  #flushNext: Deferred | undefined;
  #closed = false;
  /** Resolves once the first fsync after opening has covered what an earlier process left behind. */
  readonly #initialSync: Promise<void>;
  #initialSyncDone = false;

  private constructor(root: RootDatabase, dir: string) {
    this.#root = root;
    this.#dir = dir;
    this.#meta = root.openDB<PartitionMetaRecord, string>({ name: metaDbName, encoding: "json" });
    this.#host = {
      metaDb: this.#meta,
      valuePool: new StoredValuePool(),
      markUnflushed: (p) => {
        this.#unflushed.add(p);
      },
      requestBackgroundFlush: () => {
        if (this.#flushNext === undefined) void this.#requestFlush(false);
      },
    };
    // A process killed with SIGKILL leaves its last commits in the page cache, not necessarily on
    // disk. Writing one record and waiting for its fsync makes everything before it durable too
    // (LMDB syncs the whole data file).
    const marker = this.#meta.put(storeKey, { format: 1 } as unknown as PartitionMetaRecord);
    this.#initialSync = marker.then(() => this.#root.flushed).then(() => {
      this.#initialSyncDone = true;
    });
    this.#initialSync.catch(() => undefined);
  }

  static open(options: LogStoreOptions): LogStore {
    const root = open({
      path: options.dir,
      maxDbs: options.maxDbs ?? defaultMaxDbs,
      ...(options.mapSizeBytes === undefined ? {} : { mapSize: options.mapSizeBytes }),
      ...(options.noSync === true ? { noSync: true } : {}),
    });
    return new LogStore(root, options.dir);
  }

  get dir(): string {
    return this.#dir;
  }

  /** Opens (recovering from disk) or creates a partition's log; the same object on repeat calls. */
  openPartition(topicId: string, topicName: string, partition: number, config: LogConfig): PartitionLog {
    this.#ensureOpen();
    const key = partitionKey(topicId, partition);
    const existing = this.#partitions.get(key);
    if (existing !== undefined) {
      existing.setConfig(config);
      return existing;
    }
    const meta = this.#meta.get(key);
    const dbName = meta?.dbName ?? partitionDbName(topicId, partition);
    const db = this.#root.openDB<Uint8Array, Buffer>({ name: dbName, encoding: "binary", keyEncoding: "binary" });
    const log = new PartitionLog(topicId, meta?.topicName ?? topicName, partition, {
      host: this.#host,
      db,
      metaKey: key,
      dbName,
      config,
      meta,
    });
    this.#partitions.set(key, log);
    const target = log._beginFlush();
    if (target !== undefined) {
      if (this.#initialSyncDone) log._completeFlush(target);
      else void this.#initialSync.then(() => log._completeFlush(target), () => undefined);
    }
    return log;
  }

  /** Every partition open or present on disk (those found on disk open with defaultLogConfig). */
  partitions(): PartitionLog[] {
    this.#ensureOpen();
    for (const stored of this.listStoredPartitions()) {
      if (!this.#partitions.has(partitionKey(stored.topicId, stored.partition))) {
        this.openPartition(stored.topicId, stored.topicName, stored.partition, defaultLogConfig);
      }
    }
    return [...this.#partitions.values()];
  }

  /** What is on disk, for start-up. */
  listStoredPartitions(): Array<{ topicId: string; topicName: string; partition: number }> {
    this.#ensureOpen();
    const out: Array<{ topicId: string; topicName: string; partition: number }> = [];
    for (const { key, value } of this.#meta.getRange({ start: partitionKeyPrefix, end: "p0" })) {
      if (typeof key !== "string" || !key.startsWith(partitionKeyPrefix)) continue;
      out.push({ topicId: value.topicId, topicName: value.topicName, partition: value.partition });
    }
    return out;
  }

  /** Drops a partition's batches and metadata in one transaction. */
  async deletePartition(topicId: string, partition: number): Promise<void> {
    this.#ensureOpen();
    const key = partitionKey(topicId, partition);
    const log = this.#partitions.get(key);
    const meta = this.#meta.get(key);
    if (log === undefined && meta === undefined) return;
    const db = log?._db ?? this.#root.openDB<Uint8Array, Buffer>({ name: meta!.dbName, encoding: "binary", keyEncoding: "binary" });
    if (log !== undefined) {
      log._close("the partition was deleted");
      this.#partitions.delete(key);
      this.#unflushed.delete(log);
    }
    // Same event turn, so one transaction: no crash leaves metadata without data or the reverse.
    const removed = this.#meta.remove(key);
    const dropped = db.drop();
    await Promise.all([removed, dropped]);
  }

  /**
   * Group commit: resolves once everything written before the call is fsynced, writes the high
   * watermark checkpoints that moved, and advances each partition's flushedOffset.
   */
  flush(): Promise<void> {
    if (this.#closed) return Promise.reject(new LogUnavailableError(`log store ${this.#dir}`, "the store is closed"));
    return this.#requestFlush(true);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      for (const log of this.#partitions.values()) log._close("the log store is closed");
      this.#partitions.clear();
      this.#unflushed.clear();
      await this.#root.close();
    }
  }

  #ensureOpen(): void {
    if (this.#closed) throw new LogUnavailableError(`log store ${this.#dir}`, "the store is closed");
  }

  /**
   * A flush that starts after this call. If one is running it covered only what was written before
   * it started, so callers queue for the next one, which all of them share.
   */
  #requestFlush(writeCheckpoints: boolean): Promise<void> {
    if (this.#flushRunning === undefined) {
      const running = this.#runFlush(writeCheckpoints);
      this.#flushRunning = running;
      running.catch(() => undefined);
      return running;
    }
    if (this.#flushNext === undefined) this.#flushNext = deferred(writeCheckpoints);
    else if (writeCheckpoints) this.#flushNext.writeCheckpoints = true;
    return this.#flushNext.promise;
  }

  async #runFlush(writeCheckpoints: boolean): Promise<void> {
    try {
      if (writeCheckpoints) for (const log of this.#partitions.values()) log._checkpointIfDirty();
      const targets: Array<[PartitionLog, FlushTarget]> = [];
      for (const log of this.#unflushed) {
        const target = log._beginFlush();
        if (target !== undefined) targets.push([log, target]);
      }
      this.#unflushed.clear();
      try {
        await this.#root.flushed;
      } catch (err) {
        // Those partitions still need a flush that works.
        for (const [log] of targets) this.#unflushed.add(log);
        throw err;
      }
      for (const [log, target] of targets) log._completeFlush(target);
    } finally {
      this.#flushRunning = undefined;
      const next = this.#flushNext;
      this.#flushNext = undefined;
      if (next !== undefined && !this.#closed) {
        const running = this.#runFlush(next.writeCheckpoints);
        this.#flushRunning = running;
        running.then(next.resolve, next.reject);
      } else if (next !== undefined) {
        next.reject(new LogUnavailableError(`log store ${this.#dir}`, "the store is closed"));
      }
    }
  }
}
