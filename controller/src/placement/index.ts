// Replica placement (pure): which brokers hold each partition of a new topic, and which of them is the
// preferred leader (the first). Kafka's algorithm: round-robin over the brokers from a start offset,
// followers at a shift that grows every full round, so leaders and replicas spread evenly. When
// brokers declare racks, the broker list alternates racks and a follower is skipped while a rack
// without a replica of that partition remains, so a partition's replicas land on different racks.
// The start offset comes from the caller (a topic sequence number), not from a random source.
import { ErrorCode } from "@runnel/proto";

export interface PlacementBroker {
  id: number;
  /** Empty when the broker declared no rack. */
  rack: string;
}

export type PlacementResult =
  | { ok: true; replicas: number[][] }
  | { ok: false; errorCode: ErrorCode.INVALID_REPLICATION_FACTOR | ErrorCode.INVALID_PARTITIONS; message: string };

/**
 * Places `partitions` partitions with `replicationFactor` replicas each on `brokers` (the live ones).
 * `seed` picks the start offset and the follower shift, so consecutive topics start on different brokers.
 */
export function placeReplicas(brokers: readonly PlacementBroker[], partitions: number, replicationFactor: number, seed: number): PlacementResult {
  if (!Number.isInteger(partitions) || partitions < 1) {
    return { ok: false, errorCode: ErrorCode.INVALID_PARTITIONS, message: `partition count ${partitions} must be at least 1` };
  }
  if (!Number.isInteger(replicationFactor) || replicationFactor < 1) {
    return { ok: false, errorCode: ErrorCode.INVALID_REPLICATION_FACTOR, message: `replication factor ${replicationFactor} must be at least 1` };
  }
  if (replicationFactor > brokers.length) {
    return {
      ok: false,
      errorCode: ErrorCode.INVALID_REPLICATION_FACTOR,
      message: `replication factor ${replicationFactor} is above the number of live brokers (${brokers.length})`,
    };
  }
  const rackAware = brokers.some((b) => b.rack !== "");
  // A broker without a rack counts as a rack of its own when others declare racks.
  const rackOf = new Map(brokers.map((b) => [b.id, b.rack !== "" ? `rack:${b.rack}` : `broker:${b.id}`]));
  const ordered = rackAware ? rackAlternated(brokers, rackOf) : brokers.map((b) => b.id).sort((a, b) => a - b);
  const n = ordered.length;
  const numRacks = new Set(rackOf.values()).size;
  const safeSeed = Math.abs(Math.trunc(seed));
  const startIndex = safeSeed % n;
  let shift = Math.floor(safeSeed / n) % n;

  const result: number[][] = [];
  for (let p = 0; p < partitions; p++) {
    if (p > 0 && p % n === 0) shift += 1;
    const first = (p + startIndex) % n;
    const leader = ordered[first]!;
    const replicas = [leader];
    if (!rackAware) {
      for (let j = 0; j < replicationFactor - 1; j++) replicas.push(ordered[replicaIndex(first, shift, j, n)]!);
    } else {
      const racksWithReplicas = new Set([rackOf.get(leader)!]);
      const brokersWithReplicas = new Set([leader]);
      let k = 0;
      for (let j = 0; j < replicationFactor - 1; j++) {
        // Terminates: once every broker/rack has a replica the skip conditions no longer hold, and
        // RF <= n guarantees an unused broker remains while j < RF - 1.
        for (;;) {
          const broker = ordered[replicaIndex(first, shift * numRacks, k, n)]!;
          const rack = rackOf.get(broker)!;
          k += 1;
          const rackOk = !racksWithReplicas.has(rack) || racksWithReplicas.size === numRacks;
          const brokerOk = !brokersWithReplicas.has(broker);
          if (rackOk && brokerOk) {
            replicas.push(broker);
            racksWithReplicas.add(rack);
            brokersWithReplicas.add(broker);
            break;
          }
        }
      }
    }
    result.push(replicas);
  }
  return { ok: true, replicas: result };
}

function replicaIndex(first: number, shift: number, j: number, n: number): number {
  const s = 1 + ((shift + j) % (n - 1));
  return (first + s) % n;
}

/** Brokers ordered so that consecutive entries are on different racks: a0, b0, c0, a1, b1, c1, ... */
function rackAlternated(brokers: readonly PlacementBroker[], rackOf: Map<number, string>): number[] {
  const byRack = new Map<string, number[]>();
  for (const b of [...brokers].sort((x, y) => x.id - y.id)) {
    const rack = rackOf.get(b.id)!;
    let list = byRack.get(rack);
    if (list === undefined) byRack.set(rack, (list = []));
    list.push(b.id);
  }
  const racks = [...byRack.keys()].sort();
  const out: number[] = [];
  for (let round = 0; out.length < brokers.length; round++) {
    for (const rack of racks) {
      const id = byRack.get(rack)![round];
      if (id !== undefined) out.push(id);
    }
  }
  return out;
}
