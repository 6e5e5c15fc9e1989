// client/src/tasks: the task-queue API (what people use Celery or BullMQ for) on top of share groups.
// A queue is a topic (created on first use with 1 partition); a job is a record whose value is its
// JSON payload. enqueue() produces it (a delay becomes the runnel.not-before header, an attempt limit
// runnel.task.max-attempts); worker() runs a ShareConsumer and a concurrency-limited runner: a
// handler that resolves accepts the job, one that throws releases it with exponential backoff, or
// rejects it (dead-letters it) at its last attempt. Locks of long jobs are renewed automatically.
import { ErrorCode } from "@runnel/proto";
import { Admin } from "../admin/index.js";
import type { ConsumerContext } from "../consumer/index.js";
import { ClientUsageError, TopicAlreadyExistsError, UnknownTopicError } from "../errors/index.js";
import { Producer } from "../producer/index.js";
import { topicConfigOf } from "../share/admin.js";
import { maxReleaseDelayMs } from "../share/acks.js";
import type { AckResult, ShareConsumer, ShareConsumerOptions, ShareRecord } from "../share/consumer.js";
import {
  buildTaskHeaders, decideOnFailure, defaultBackoff, effectiveMaxAttempts, headersToRecord, jobMaxAttemptsOf, parsePayload, renewIntervalMs,
  type BackoffOptions,
} from "./policy.js";

export * from "./policy.js";

/** How long a worker's poll waits for jobs before checking whether it should stop, in milliseconds. */
export const workerPollTimeoutMs = 1_000;
/** Pause after a failed poll before the next, in milliseconds. */
export const workerErrorBackoffMs = 1_000;
/** How long close() waits for running jobs when not told, in milliseconds. */
export const defaultWorkerCloseTimeoutMs = 30_000;

export interface Job {
  /** "topic/partition/offset": unique per enqueued job. */
  id: string;
  /** The queue's name. */
  name: string;
  /** The payload given to enqueue (parsed JSON). */
  payload: unknown;
  /** This attempt, 1-based (the record's delivery count). */
  attempt: number;
  /** The attempt at which a failure dead-letters the job. */
  maxAttempts: number;
  /** When the job was enqueued (ms since the Unix epoch). */
  enqueuedAt: number;
  headers: Record<string, string>;
  /** Extends the job's lock now (the worker also does this by itself for long jobs). */
  renew(): Promise<void>;
}

export interface EnqueueOptions {
  /** Do not run the job before this many milliseconds from now. */
  delayMs?: number;
  /** Attempts before the job is dead-lettered (capped by the topic's max.delivery.attempts). */
  maxAttempts?: number;
  /** Record key (jobs with one key stay in order on one partition). */
  key?: string;
  headers?: Record<string, string>;
}

export interface WorkerOptions {
  /** Jobs run at once (default 1). */
  concurrency?: number;
  /** Share group of the workers (default `${name}.workers`). */
  groupId?: string;
  /** Lock of each job, in milliseconds (default 30000); renewed every half of it while the job runs. */
  lockDurationMs?: number;
  /** Delay before a failed job runs again: min(maxMs, initialMs * 2^(attempt-1)); default 1000 and 300000. */
  backoff?: BackoffOptions;
  /** Told about failures the worker recovers from by itself (a poll that failed, an acknowledgement that was refused). */
  onError?: (err: unknown) => void;
}

export interface QueueOptions {
  partitions?: number;
  replicationFactor?: number;
  /** Topic configuration (max.delivery.attempts, dead.letter.topic, retention.ms, ...). */
  config?: Record<string, string>;
}

export interface TasksContext extends ConsumerContext {
  shareConsumer: (options: ShareConsumerOptions) => ShareConsumer;
}

export class Tasks {
  private producerValue: Producer | undefined;
  private readonly workers = new Set<TaskWorker>();
  private readonly knownQueues = new Set<string>();
  private closed = false;

  constructor(private readonly ctx: TasksContext) {}

  /** Creates the queue's topic; { created: false } when it already exists. */
  async createQueue(name: string, options: QueueOptions = {}): Promise<{ created: boolean }> {
    try {
      await new Admin(this.ctx).createTopic({ name, partitions: options.partitions ?? 1, replicationFactor: options.replicationFactor, configs: options.config });
      await this.waitForTopic(name);
      return { created: true };
    } catch (err) {
      if (err instanceof TopicAlreadyExistsError) return { created: false };
      throw err;
    } finally {
      this.knownQueues.add(name);
    }
  }

  /** Makes sure the queue exists (1 partition, replication factor min(3, live brokers) when created here). */
  async ensureQueue(name: string): Promise<void> {
    if (this.knownQueues.has(name)) return;
    try {
      await this.ctx.metadata.ensureTopic(name);
    } catch (err) {
      if (!(err instanceof UnknownTopicError)) throw err;
      await this.createQueue(name);
    }
    this.knownQueues.add(name);
  }

  private async waitForTopic(name: string): Promise<void> {
    const deadline = Date.now() + this.ctx.requestTimeoutMs;
    for (;;) {
      await this.ctx.metadata.refresh([name]);
      if (this.ctx.metadata.topic(name) !== undefined) return;
      if (Date.now() > deadline) throw new UnknownTopicError(`queue "${name}" was created but no broker knows it yet`, { code: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, retriable: true, topic: name });
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Adds a job; resolves once it is stored (acks "all"). The payload must be JSON-serialisable. */
  async enqueue(name: string, payload: unknown, options: EnqueueOptions = {}): Promise<{ topic: string; partition: number; offset: bigint }> {
    if (this.closed) throw new ClientUsageError("the task API is closed", { code: ErrorCode.INVALID_REQUEST, retriable: false, topic: name });
    const headers = buildTaskHeaders(options, Date.now());
    const value = JSON.stringify(payload);
    await this.ensureQueue(name);
    this.producerValue ??= new Producer(this.ctx, { acks: "all" });
    const m = await this.producerValue.send({ topic: name, key: options.key, value: value ?? null, headers });
    return { topic: m.topic, partition: m.partition, offset: m.offset };
  }

  /** Starts a worker that runs `handler` for jobs of queue `name`. */
  worker(name: string, handler: (job: Job) => Promise<void>, options: WorkerOptions = {}): TaskWorker {
    if (this.closed) throw new ClientUsageError("the task API is closed", { code: ErrorCode.INVALID_REQUEST, retriable: false, topic: name });
    const w = new TaskWorker(this.ctx, this, name, handler, options);
    this.workers.add(w);
    void w.closed.then(() => this.workers.delete(w));
    return w;
  }

  /** Closes every worker (gracefully) and the producer. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.workers].map((w) => w.close()));
    await this.producerValue?.close();
  }
}

export class TaskWorker {
  readonly name: string;
  readonly groupId: string;
  readonly stats = { accepted: 0, released: 0, deadLettered: 0 };
  private readonly consumer: ShareConsumer;
  private readonly concurrency: number;
  private readonly lockDurationMs: number | undefined;
  private readonly backoff: BackoffOptions;
  private readonly running = new Map<ShareRecord, Promise<void>>();
  /** Jobs released at close because they outlived its timeout: their handler's outcome is ignored. */
  private readonly abandoned = new Set<ShareRecord>();
  private readonly settling = new Set<Promise<unknown>>();
  private readonly loop: Promise<void>;
  private stopping = false;
  private closing: Promise<void> | undefined;
  private resolveClosed!: () => void;
  /** Resolves once close() has finished. */
  readonly closed = new Promise<void>((r) => { this.resolveClosed = r; });

  constructor(
    private readonly ctx: TasksContext, private readonly tasks: Tasks, name: string,
    private readonly handler: (job: Job) => Promise<void>, private readonly options: WorkerOptions,
  ) {
    this.name = name;
    this.concurrency = options.concurrency ?? 1;
    if (!(Number.isInteger(this.concurrency) && this.concurrency >= 1)) throw new RangeError(`concurrency must be an integer >= 1, got ${options.concurrency}`);
    this.backoff = options.backoff ?? defaultBackoff;
    if (!(this.backoff.initialMs >= 0 && this.backoff.maxMs >= this.backoff.initialMs)) throw new RangeError(`backoff must satisfy 0 <= initialMs (${this.backoff.initialMs}) <= maxMs (${this.backoff.maxMs})`);
    this.groupId = options.groupId ?? `${name}.workers`;
    this.lockDurationMs = options.lockDurationMs;
    // No prefetch beyond the free slots: a fetched job's lock runs while it waits.
    this.consumer = ctx.shareConsumer({ groupId: this.groupId, topics: [name], maxInFlightRecords: this.concurrency, lockDurationMs: options.lockDurationMs });
    this.loop = this.run();
  }

  /** Jobs running now. */
  get runningJobs(): number {
    return this.running.size;
  }

  private report(err: unknown): void {
    try {
      this.options.onError?.(err);
    } catch {
      // A failing error listener must not stop the worker.
    }
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.tasks.ensureQueue(this.name);
        break;
      } catch (err) {
        this.report(err);
        await this.pause(workerErrorBackoffMs);
      }
    }
    while (!this.stopping) {
      const free = this.concurrency - this.running.size;
      if (free <= 0) {
        await Promise.race(this.running.values());
        continue;
      }
      let records: ShareRecord[];
      try {
        records = await this.consumer.poll({ maxRecords: free, timeoutMs: workerPollTimeoutMs });
      } catch (err) {
        this.report(err);
        await this.pause(workerErrorBackoffMs);
        continue;
      }
      for (const r of records) {
        if (this.stopping) {
          this.consumer.release(r, { reason: "worker closed before the job started" });
          continue;
        }
        const p = this.runJob(r).finally(() => this.running.delete(r));
        this.running.set(r, p);
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      void this.closed.then(() => clearTimeout(t));
    });
  }

  private topicMaxDeliveryAttempts(): number {
    return topicConfigOf(this.ctx.metadata.topic(this.name)?.configs ?? {}).maxDeliveryAttempts;
  }

  private async runJob(r: ShareRecord): Promise<void> {
    const headers = headersToRecord(r.headers);
    const maxAttempts = effectiveMaxAttempts(jobMaxAttemptsOf(headers), this.topicMaxDeliveryAttempts());
    const job: Job = {
      id: `${r.topic}/${r.partition}/${r.offset}`, name: this.name, payload: parsePayload(r.value), attempt: r.deliveryCount,
      maxAttempts, enqueuedAt: r.timestamp, headers, renew: () => this.consumer.renew(r),
    };
    const lockMs = this.lockDurationMs ?? this.consumer.lockDuration;
    const renewer = setInterval(() => void this.consumer.renew(r).catch((err: unknown) => this.report(err)), renewIntervalMs(lockMs));
    let failure: { err: unknown } | undefined;
    try {
      await this.handler(job);
    } catch (err) {
      failure = { err };
    } finally {
      clearInterval(renewer);
    }
    if (this.abandoned.has(r)) return;
    try {
      this.settle(r, job, maxAttempts, failure);
    } catch (err) {
      this.report(err); // the consumer no longer holds the record (closed underneath us)
    }
  }

  private settle(r: ShareRecord, job: Job, maxAttempts: number, failure: { err: unknown } | undefined): void {
    let ack: Promise<AckResult>;
    let counter: keyof TaskWorker["stats"];
    if (failure === undefined) {
      ack = this.consumer.acknowledge(r, "accept");
      counter = "accepted";
    } else {
      const reason = failure.err instanceof Error ? failure.err.message : String(failure.err);
      const decision = decideOnFailure(job.attempt, maxAttempts, this.backoff);
      if (decision.action === "reject") {
        ack = this.consumer.acknowledge(r, "reject", { reason: reason || "handler failed" });
        counter = "deadLettered";
      } else {
        ack = this.consumer.acknowledge(r, "release", { delayMs: Math.min(decision.delayMs, maxReleaseDelayMs), reason });
        counter = "released";
      }
    }
    const settled = ack.then((res) => {
      if (res.error === undefined) this.stats[counter] += 1;
      else this.report(res.error);
    });
    this.settling.add(settled);
    void settled.finally(() => this.settling.delete(settled));
  }

  /**
   * Stops fetching, waits up to timeoutMs (default 30000) for running jobs, releases the jobs still
   * running after that (another worker gets them), and leaves the share group. Idempotent.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      const timeoutMs = options.timeoutMs ?? defaultWorkerCloseTimeoutMs;
      this.stopping = true;
      this.consumer.wakeup();
      await this.loop;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.running.values()]),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); }),
      ]);
      clearTimeout(timer);
      for (const r of this.running.keys()) {
        this.abandoned.add(r);
        try {
          this.consumer.release(r, { reason: "worker closed before the job finished" });
        } catch {
          // Settled between the timeout and now.
        }
      }
      await this.consumer.flush();
      await Promise.allSettled([...this.settling]);
      await this.consumer.close();
      this.resolveClosed();
    })();
    return this.closing;
  }
}
