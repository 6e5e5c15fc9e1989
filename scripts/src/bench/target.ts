// What a workload needs from a system under test, so W1–W5 run the same code against Runnel, NATS
// JetStream and RabbitMQ. A target owns its processes; the workload owns the clock and the counting.

/** A producer with acknowledgements per the target's strongest setting (acks=all, PubAck, confirms). */
export interface BenchProducer {
  /** Resolves when the record is acknowledged; rejects when it is refused or times out. */
  send(value: Uint8Array): Promise<unknown>;
  close(): Promise<void>;
}

export interface ConsumeHandle {
  close(): Promise<void>;
}

/** One stream (topic / JetStream stream / queue or stream queue) made fresh for one workload. */
export interface StreamSpec {
  /** Unique per run; each target derives its own name from it. */
  label: string;
  /** Independent readers that each receive every record (W4 uses 3, others 1). */
  groups: number;
}

/** A task-queue worker (W5): acquires jobs and accepts each one (one acknowledgement per job). */
export interface TaskWorkerHandle {
  /**
   * Resolves once every acceptance so far has reached the server (Runnel: answered; RabbitMQ: acks
   * are not answered, so a round trip on the channel after them); throws when one was refused.
   */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** W5: a queue of jobs shared by competing workers, each job to one worker. */
export interface TaskQueueTarget {
  /** A sentence for the report: the queue's replication, fsync, the worker API and its prefetch. */
  describe(prefetch: number): string;
  /** A fresh queue (one partition / one quorum queue) for `spec.label`. */
  createQueue(spec: StreamSpec): Promise<void>;
  /** The producer that preloads the jobs (strongest acknowledgement, as W1's). */
  producer(spec: StreamSpec): Promise<BenchProducer>;
  /**
   * Starts worker `index`; `onAccepted(n)` is called as it accepts n jobs (acceptances the server
   * answered where it answers them), `onError` when the worker stops on an error.
   */
  worker(spec: StreamSpec, index: number, prefetch: number, onAccepted: (n: number) => void, onError: (err: unknown) => void): Promise<TaskWorkerHandle>;
}

export interface BenchTarget {
  /** Column name in the tables ("Runnel fsync", "NATS R3", ...). */
  readonly name: string;
  /** A sentence for the report: replication, acknowledgement and fsync settings. */
  readonly settings: string;
  createStream(spec: StreamSpec): Promise<void>;
  producer(spec: StreamSpec): Promise<BenchProducer>;
  /**
   * Starts reader `group` (0..groups-1) from the beginning of the stream and resolves once it is
   * subscribed (joined, assigned), so a workload can start producing after it.
   */
  consume(spec: StreamSpec, group: number, onRecord: (value: Uint8Array) => void): Promise<ConsumeHandle>;
  /** The server processes (name -> pid) whose CPU and peak RSS are measured. */
  pids(): Map<string, number>;
  /** Present on the targets that run W5 (Runnel fsync, RabbitMQ quorum). */
  readonly taskQueue?: TaskQueueTarget;
}

/** A set of targets sharing one cluster, started and stopped together. */
export interface TargetCluster {
  readonly system: string;
  readonly targets: readonly BenchTarget[];
  close(): Promise<void>;
}

/** Raised when a peer cannot be installed or started: the bench reports it and goes on with the others. */
export class PeerUnavailableError extends Error {
  override name = "PeerUnavailableError";
}
