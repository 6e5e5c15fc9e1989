/**
 * A broken replication invariant: a programmer error or corrupted state, never bad network input.
 * The only safe reaction is to stop serving the partition loudly, so this is thrown, not returned.
 */
export class InvariantError extends Error {
  override readonly name = "InvariantError";
  constructor(
    /** "topic-partition" the broken invariant belongs to. */
    readonly partitionName: string,
    message: string,
  ) {
    super(`${partitionName}: ${message}`);
  }
}

export function invariant(condition: boolean, partitionName: string, message: () => string): asserts condition {
  if (!condition) throw new InvariantError(partitionName, message());
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
