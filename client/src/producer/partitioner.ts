// Partition choice: Kafka's default partitioner, so a key lands on the same partition index as it
// would with a Java Kafka producer: toPositive(murmur2(keyBytes)) % numPartitions. Records without a
// key stick to one partition until its batch is sealed (Kafka's sticky partitioner, KIP-480), which
// keeps batches full without hot-spotting.

/** Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2): a signed 32-bit hash, seed 0x9747b28c. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const seed = 0x9747b28c;
  const m = 0x5bd1e995;
  const r = 24;
  let h = (seed ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = (data[i4]! & 0xff) + ((data[i4 + 1]! & 0xff) << 8) + ((data[i4 + 2]! & 0xff) << 16) + ((data[i4 + 3]! & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const tail = length & ~3;
  const rest = length % 4;
  if (rest === 3) h ^= (data[tail + 2]! & 0xff) << 16;
  if (rest >= 2) h ^= (data[tail + 1]! & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[tail]! & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's Utils.toPositive: clears the sign bit (not Math.abs, which differs for negative values). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/** The partition Kafka's default partitioner picks for a key. */
export function partitionForKey(key: Uint8Array, numPartitions: number): number {
  if (!(numPartitions >= 1)) throw new RangeError(`numPartitions must be >= 1, got ${numPartitions}`);
  return toPositive(murmur2(key)) % numPartitions;
}

/**
 * Sticky choice for keyless records: the same partition until `onBatchSealed` for it, then another
 * one picked with the injected random source.
 */
export class StickyPartitioner {
  private readonly current = new Map<string, number>();

  constructor(private readonly random: () => number = Math.random) {}

  partition(topic: string, numPartitions: number): number {
    const cur = this.current.get(topic);
    if (cur !== undefined && cur < numPartitions) return cur;
    const next = Math.floor(this.random() * numPartitions) % numPartitions;
    this.current.set(topic, next);
    return next;
  }

  /** The sticky partition's batch was sealed: move on to a different partition for the next keyless record. */
  onBatchSealed(topic: string, partition: number, numPartitions: number): void {
    if (this.current.get(topic) !== partition) return;
    if (numPartitions <= 1) return;
    const offset = 1 + (Math.floor(this.random() * (numPartitions - 1)) % (numPartitions - 1));
    this.current.set(topic, (partition + offset) % numPartitions);
  }
}
