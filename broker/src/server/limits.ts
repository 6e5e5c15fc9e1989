// Limits on what one client request may ask of a broker. Values outside them are malformed requests
// (gRPC INVALID_ARGUMENT), so a client bug cannot make a broker wait forever or buffer without bound.

/** Longest long-poll a fetch may ask for. */
export const maxFetchWaitMs = 60_000;
/** Largest fetch response. */
export const maxFetchBytes = 64 * 1024 * 1024;
/** Fetch response size when the request says 0. */
export const defaultFetchMaxBytes = 16 * 1024 * 1024;
/** Partitions one Produce, Fetch or ListOffsets request may name. */
export const maxPartitionsPerRequest = 10_000;
/** Longest acks=all wait a produce may ask for. */
export const maxProduceTimeoutMs = 300_000;
/** acks=all wait when the request says 0. */
export const defaultProduceTimeoutMs = 30_000;
/** Client requests (produce, fetch, list offsets) being served at once by this broker; more are refused with THROTTLED. */
export const maxInFlightClientRequests = 4_096;
/** Bytes of produce requests being appended or waiting for replication at once; more are refused with THROTTLED. */
export const maxInFlightProduceBytes = 256 * 1024 * 1024;
/** Topics one Metadata request may name. */
export const maxMetadataTopicsPerRequest = 10_000;

/** Partitions a request names over all its topics (checked against maxPartitionsPerRequest). */
export function countPartitions(topics: ReadonlyArray<{ partitions: readonly unknown[] }>): number {
  let n = 0;
  for (const t of topics) n += t.partitions.length;
  return n;
}
