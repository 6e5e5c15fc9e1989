// The leader-epoch cache (Kafka's leader-epoch-checkpoint): for each leader epoch, the first offset
// written in it. Followers use it to find where their log diverges from a new leader's (KIP-101,
// KIP-279). Pure and in memory; PartitionLog persists it with the partition's metadata.
import { InvariantError } from "@runnel/common";

export interface EpochEntry {
  epoch: number;
  startOffset: bigint;
}


export class LeaderEpochCache {
  // Invariant: strictly increasing epochs and non-decreasing start offsets.
  #entries: EpochEntry[];

  constructor(
    readonly where: string,
    entries: readonly EpochEntry[] = [],
  ) {
    this.#entries = entries.map((e) => ({ epoch: e.epoch, startOffset: e.startOffset }));
    for (let i = 1; i < this.#entries.length; i++) {
      const prev = this.#entries[i - 1]!;
      const cur = this.#entries[i]!;
      if (!(cur.epoch > prev.epoch && cur.startOffset >= prev.startOffset)) {
        throw new InvariantError(
          `${where}: epoch cache is not monotonic: epoch ${prev.epoch}@${prev.startOffset} then ${cur.epoch}@${cur.startOffset}`,
        );
      }
    }
  }

  latestEpoch(): number {
    return this.#entries.at(-1)?.epoch ?? -1;
  }

  latestEntry(): EpochEntry | undefined {
    const last = this.#entries.at(-1);
    return last === undefined ? undefined : { ...last };
  }

  entries(): EpochEntry[] {
    return this.#entries.map((e) => ({ ...e }));
  }

  /**
   * Records that `epoch` starts at `startOffset` (Kafka's LeaderEpochFileCache.assign): nothing
   * changes when it is already the latest epoch with an earlier or equal start; otherwise entries
   * that would break monotonicity (epoch >= it, or start >= its start) are dropped first.
   * Returns whether the cache changed.
   */
  assign(epoch: number, startOffset: bigint): boolean {
    if (epoch < 0 || startOffset < 0n) throw new InvariantError(`${this.where}: cannot assign epoch ${epoch} at offset ${startOffset}`);
    const latest = this.#entries.at(-1);
    if (latest !== undefined && latest.epoch === epoch && latest.startOffset <= startOffset) return false;
    while (this.#entries.length > 0) {
      const last = this.#entries.at(-1)!;
      if (last.epoch >= epoch || last.startOffset >= startOffset) this.#entries.pop();
      else break;
    }
    this.#entries.push({ epoch, startOffset });
    return true;
  }

  /** After truncating the log to `endOffset`: drops every epoch that starts at or after it. */
  truncateFromEnd(endOffset: bigint): boolean {
    let changed = false;
    while (this.#entries.length > 0 && this.#entries.at(-1)!.startOffset >= endOffset) {
      this.#entries.pop();
      changed = true;
    }
    return changed;
  }

  /**
   * After the log start moved to `startOffset`: epochs that ended before it are dropped and the
   * epoch that covers it now starts there (Kafka's truncateFromStart), so the cache stays bounded.
   */
  truncateFromStart(startOffset: bigint): boolean {
    let covering = -1;
    for (let i = 0; i < this.#entries.length; i++) {
      if (this.#entries[i]!.startOffset <= startOffset) covering = i;
      else break;
    }
    if (covering < 0) return false;
    const entry = this.#entries[covering]!;
    const changed = covering > 0 || entry.startOffset !== startOffset;
    this.#entries.splice(0, covering);
    entry.startOffset = startOffset;
    return changed;
  }
}
