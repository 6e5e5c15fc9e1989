// The Runnel client: one channel pool and one metadata cache shared by every producer, consumer and
// admin made from it. The controller's address is learned from Metadata, never configured.
import { Admin } from "./admin/index.js";
import { Consumer, type ConsumerOptions } from "./consumer/index.js";
import { GroupAdmin, GroupConsumer, type GroupConsumerOptions } from "./groups/index.js";
import { ClusterMetadata } from "./metadata/index.js";
import { ChannelPool, defaultRequestTimeoutMs } from "./network/index.js";
import { Producer, type ProducerOptions } from "./producer/index.js";
import { retryPolicy, type RetryOptions } from "./retry/index.js";
import { ShareAdmin, ShareConsumer, type ShareConsumerOptions } from "./share/index.js";
import { Tasks } from "./tasks/index.js";

export interface RunnelOptions {
  /** One or more broker addresses ("host:port", or a comma-separated list). */
  bootstrap: string | string[];
  /** Names this client in server logs. */
  clientId?: string;
  /** Deadline of each request that is not a long poll, in milliseconds (default 30000). */
  requestTimeoutMs?: number;
  /** Retry policy for every retriable failure. */
  retry?: RetryOptions;
}

export class Runnel {
  readonly clientId: string;
  private readonly pool: ChannelPool;
  readonly metadata: ClusterMetadata;
  private readonly retry: RetryOptions;
  private readonly requestTimeoutMs: number;
  private readonly producers = new Set<Producer>();
  private readonly consumers = new Set<Consumer>();
  private readonly groupConsumers = new Set<GroupConsumer>();
  private readonly shareConsumers = new Set<ShareConsumer>();
  /** Task queues on share groups: enqueue, worker, createQueue. */
  readonly tasks: Tasks;

  constructor(options: RunnelOptions) {
    this.clientId = options.clientId ?? "runnel-client";
    this.requestTimeoutMs = options.requestTimeoutMs ?? defaultRequestTimeoutMs;
    if (!(this.requestTimeoutMs >= 1)) throw new RangeError(`requestTimeoutMs must be >= 1, got ${this.requestTimeoutMs}`);
    this.retry = retryPolicy(options.retry);
    this.pool = new ChannelPool(this.requestTimeoutMs);
    this.metadata = new ClusterMetadata(this.pool, options.bootstrap);
    this.tasks = new Tasks({ ...this.context(), shareConsumer: (o) => this.shareConsumer(o) });
  }

  private context() {
    return { pool: this.pool, metadata: this.metadata, retry: this.retry, requestTimeoutMs: this.requestTimeoutMs };
  }

  producer(options: ProducerOptions = {}): Producer {
    const p = new Producer(this.context(), options);
    this.producers.add(p);
    return p;
  }

  consumer(options: ConsumerOptions = {}): Consumer {
    const c = new Consumer(this.context(), options);
    this.consumers.add(c);
    return c;
  }

  /** A consumer that is a member of a consumer group (partitions assigned by the controller). */
  groupConsumer(options: GroupConsumerOptions): GroupConsumer {
    const c = new GroupConsumer(this.context(), { clientId: this.clientId, ...options });
    this.groupConsumers.add(c);
    return c;
  }

  /** A member of a share group: records handed out one member at a time under a lock, acknowledged one by one. */
  shareConsumer(options: ShareConsumerOptions): ShareConsumer {
    const c = new ShareConsumer(this.context(), { clientId: this.clientId, ...options });
    this.shareConsumers.add(c);
    return c;
  }

  /** Share-group administration and dead letters: list, describe, dlqList, dlqRedrive. */
  shareAdmin(): ShareAdmin {
    return new ShareAdmin(this.context());
  }

  /** Consumer-group administration: list, describe with lag, reset offsets. */
  groupAdmin(): GroupAdmin {
    return new GroupAdmin(this.context());
  }

  admin(): Admin {
    return new Admin(this.context());
  }

  /** Fetches cluster metadata once; throws ConnectionError when no bootstrap broker answers. */
  async connect(): Promise<void> {
    await this.metadata.refresh();
  }

  /** Closes task workers (gracefully), flushes and closes producers, closes consumers, then every connection. */
  async close(): Promise<void> {
    await Promise.allSettled([this.tasks.close()]);
    await Promise.allSettled([...this.shareConsumers].map((c) => c.close()));
    await Promise.allSettled([...this.producers].map((p) => p.close()));
    await Promise.allSettled([...this.groupConsumers].map((c) => c.close()));
    await Promise.allSettled([...this.consumers].map((c) => c.close()));
    this.pool.close();
  }
}
