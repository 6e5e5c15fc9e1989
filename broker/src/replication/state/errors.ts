import { InvariantError } from "@runnel/common";

/**
 * A broken replication invariant of one partition: a programmer error or corrupted state, never bad
 * network input. The only safe reaction is to stop loudly, so it is thrown, not returned; it is an
 * InvariantError from @runnel/common, which processes treat as fatal.
 */
export class PartitionInvariantError extends InvariantError {
  override name = "PartitionInvariantError";
  constructor(
    /** "topic-partition" the broken invariant belongs to. */
    readonly partitionName: string,
    message: string,
  ) {
    super(`${partitionName}: ${message}`);
  }
}

export function invariant(condition: boolean, partitionName: string, message: () => string): asserts condition {
  if (!condition) throw new PartitionInvariantError(partitionName, message());
}

export function partitionName(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

export function minBigint(a: bigint, ...rest: bigint[]): bigint {
  let m = a;
  for (const b of rest) if (b < m) m = b;
  return m;
}

export function maxBigint(a: bigint, ...rest: bigint[]): bigint {
  let m = a;
  for (const b of rest) if (b > m) m = b;
  return m;
}
