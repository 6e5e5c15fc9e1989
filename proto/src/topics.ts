// Topic names and topic configuration: the rules the controller enforces and brokers and clients
// share, with Kafka's key names where the meaning is the same.

/** Kafka's rule: 1 to 249 characters from [A-Za-z0-9._-], and not "." or "..". */
export const maxTopicNameChars = 249;
const topicNamePattern = /^[A-Za-z0-9._-]+$/;

/** Returns why a topic name is invalid, or undefined when it is fine. */
export function topicNameProblem(name: string): string | undefined {
  if (name.length === 0) return "topic name is empty";
  if (name.length > maxTopicNameChars) return `topic name is ${name.length} characters; at most ${maxTopicNameChars} are allowed`;
  if (name === "." || name === "..") return `topic name cannot be "${name}"`;
  if (!topicNamePattern.test(name)) return `topic name "${name}" has characters outside [A-Za-z0-9._-]`;
  return undefined;
}

/** When an acknowledged batch must be on disk. */
export type Durability = "fsync" | "memory";

/** A topic's effective configuration (defaults merged with its overrides). */
export interface TopicConfig {
  /** Delete batches older than this; -1 keeps forever. */
  retentionMs: number;
  /** Delete oldest batches while the partition holds more than this many bytes; -1 means no limit. */
  retentionBytes: number;
  /** Smallest ISR with which acks=all writes are accepted. */
  minInsyncReplicas: number;
  /** Largest batch accepted, in bytes (the whole encoded batch). */
  maxMessageBytes: number;
  /** Whether an out-of-sync replica may become leader when no in-sync one is alive (may lose data). */
  uncleanLeaderElectionEnable: boolean;
  /**
   * "fsync" (default): acks=all means every ISR member has the batch fsynced. "memory": acknowledged
   * once replicated in memory, flushed in the background (Kafka's behaviour).
   */
  durability: Durability;
  /** Timestamps in batches: the producer's ("CreateTime") or the leader's at append ("LogAppendTime"). */
  timestampType: "CreateTime" | "LogAppendTime";
  /**
   * Share groups: deliveries of a record before its next release or lock expiry dead-letters it
   * instead of making it available again.
   */
  maxDeliveryAttempts: number;
  /** Share groups: where dead letters go; "" means "<topic>.dlq" (see deadLetterTopicOf). */
  deadLetterTopic: string;
}

export const defaultTopicConfig: Readonly<TopicConfig> = Object.freeze({
  retentionMs: 7 * 24 * 3600 * 1000,
  retentionBytes: -1,
  minInsyncReplicas: 1,
  maxMessageBytes: 1024 * 1024,
  uncleanLeaderElectionEnable: false,
  durability: "fsync",
  timestampType: "CreateTime",
  maxDeliveryAttempts: 5,
  deadLetterTopic: "",
});

/** The largest max.delivery.attempts a topic may set. */
export const maxDeliveryAttemptsLimit = 1000;

/** The dead-letter topic of `topic` under `config`: dead.letter.topic, or "<topic>.dlq" when unset. */
export function deadLetterTopicOf(topic: string, config: Pick<TopicConfig, "deadLetterTopic">): string {
  return config.deadLetterTopic !== "" ? config.deadLetterTopic : `${topic}.dlq`;
}

/** The largest max.message.bytes a topic may set (bounded by the gRPC receive limit). */
export const maxMessageBytesLimit = 16 * 1024 * 1024;

type KeySpec = { field: keyof TopicConfig; parse: (v: string) => TopicConfig[keyof TopicConfig] | undefined; doc: string };

function integer(min: number, max: number) {
  return (v: string): number | undefined => {
    if (!/^-?\d+$/.test(v)) return undefined;
    const n = Number(v);
    return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
  };
}

/** Every topic configuration key, with its parser and meaning. */
export const topicConfigKeys: Readonly<Record<string, KeySpec>> = Object.freeze({
  "retention.ms": { field: "retentionMs", parse: (v) => (v === "-1" ? -1 : integer(1, Number.MAX_SAFE_INTEGER)(v)), doc: "milliseconds to keep a batch; -1 forever" },
  "retention.bytes": { field: "retentionBytes", parse: (v) => (v === "-1" ? -1 : integer(1, Number.MAX_SAFE_INTEGER)(v)), doc: "bytes to keep per partition; -1 unlimited" },
  "min.insync.replicas": { field: "minInsyncReplicas", parse: integer(1, 100), doc: "smallest ISR for acks=all writes" },
  "max.message.bytes": { field: "maxMessageBytes", parse: integer(64, maxMessageBytesLimit), doc: "largest batch in bytes" },
  "unclean.leader.election.enable": { field: "uncleanLeaderElectionEnable", parse: (v) => (v === "true" ? true : v === "false" ? false : undefined), doc: "true or false" },
  "durability": { field: "durability", parse: (v) => (v === "fsync" || v === "memory" ? v : undefined), doc: "fsync or memory" },
  "message.timestamp.type": { field: "timestampType", parse: (v) => (v === "CreateTime" || v === "LogAppendTime" ? v : undefined), doc: "CreateTime or LogAppendTime" },
  "max.delivery.attempts": { field: "maxDeliveryAttempts", parse: integer(1, maxDeliveryAttemptsLimit), doc: `share groups: deliveries before a record is dead-lettered, 1 to ${maxDeliveryAttemptsLimit}` },
  "dead.letter.topic": { field: "deadLetterTopic", parse: (v) => (topicNameProblem(v) === undefined ? v : undefined), doc: "share groups: a valid topic name for dead letters" },
});

/** Returns why a configuration override is invalid, or undefined. */
export function topicConfigProblem(key: string, value: string): string | undefined {
  const spec = topicConfigKeys[key];
  if (spec === undefined) return `unknown topic config key "${key}" (known: ${Object.keys(topicConfigKeys).join(", ")})`;
  if (spec.parse(value) === undefined) return `invalid value "${value}" for ${key}: ${spec.doc}`;
  return undefined;
}

/** Merges validated overrides onto the defaults. Throws on an invalid override (validate first). */
export function resolveTopicConfig(overrides: Readonly<Record<string, string>>): TopicConfig {
  const config: TopicConfig = { ...defaultTopicConfig };
  for (const [key, value] of Object.entries(overrides)) {
    const problem = topicConfigProblem(key, value);
    if (problem !== undefined) throw new RangeError(problem);
    const spec = topicConfigKeys[key]!;
    (config as unknown as Record<string, unknown>)[spec.field] = spec.parse(value);
  }
  return config;
}
