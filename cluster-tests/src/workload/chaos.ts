// The chaos workload: idempotent acks=all producers (the client library, as an application would use
// it) write uniquely identified records to every partition, and a consumer group reads them, while
// faults happen. Every send is written to a ledger (pending -> acknowledged at an offset, or failed
// with the error the application saw); every record the group hands out is remembered. The checker
// compares both with what the partitions hold afterwards.
import { Runnel, type GroupConsumer, type Producer } from "@runnel/client";

/** A record's value: who wrote it, to which partition, and its sequence number there. */
export function recordValue(producer: string, partition: number, seq: number): string {
  return `${producer}:${partition}:${seq}`;
}

export function parseRecordValue(value: string): { producer: string; partition: number; seq: number } | undefined {
  const parts = value.split(":");
  if (parts.length !== 3) return undefined;
  const partition = Number(parts[1]);
  const seq = Number(parts[2]);
  if (!Number.isInteger(partition) || !Number.isInteger(seq)) return undefined;
  return { producer: parts[0]!, partition, seq };
}

export interface SentRecord {
  value: string;
  partition: number;
  state: "pending" | "acked" | "failed";
  /** Offset named by the acknowledgement. */
  offset?: bigint;
  error?: string;
  ackedAtMs?: number;
}

/** Every record any writer tried to write, by value. Writers outside the workload (failover probes) add theirs too. */
export class Ledger {
  readonly records = new Map<string, SentRecord>();

  pending(value: string, partition: number): SentRecord {
    if (this.records.has(value)) throw new Error(`ledger: record ${value} written twice by the workload (partition ${partition})`);
    const r: SentRecord = { value, partition, state: "pending" };
    this.records.set(value, r);
    return r;
  }

  acked(r: SentRecord, offset: bigint, nowMs: number): void {
    r.state = "acked";
    r.offset = offset;
    r.ackedAtMs = nowMs;
  }

  failed(r: SentRecord, error: string): void {
    r.state = "failed";
    r.error = error;
  }

  count(state: SentRecord["state"]): number {
    let n = 0;
    for (const r of this.records.values()) if (r.state === state) n++;
    return n;
  }
}

export interface ConsumedRecord {
  partition: number;
  offset: bigint;
  value: string;
  member: number;
}

export interface ChaosWorkloadOptions {
  bootstrap: string[];
  topic: string;
  partitions: number;
  producers: number;
  consumers: number;
  groupId: string;
  /** Records per second per producer (paced, so a long soak stays bounded in disk and memory). */
  recordsPerSecond: number;
  /** Most unacknowledged records per producer. */
  maxOutstandingRecords: number;
  /** Client request deadline: a black-holed connection costs this much before the client moves on. */
  requestTimeoutMs: number;
  autoCommitIntervalMs: number;
}

/** How long the writer sleeps between paced chunks. */
const paceTickMs = 20;

export class ChaosWorkload {
  readonly ledger = new Ledger();
  readonly consumed: ConsumedRecord[] = [];
  /** Produce errors the application saw (a send() that rejected), with the time they were seen. */
  readonly produceErrors: Array<{ atMs: number; value: string; error: string }> = [];
  private readonly clients: Runnel[] = [];
  private readonly producers: Producer[] = [];
  private readonly groupConsumers: GroupConsumer[] = [];
  private writers: Array<Promise<void>> = [];
  private readers: Array<Promise<void>> = [];
  private producing = false;
  private consuming = false;
  private readonly consumerErrors: string[] = [];

  constructor(private readonly options: ChaosWorkloadOptions) {}

  /** Starts producers and group members. */
  start(): void {
    this.producing = true;
    this.consuming = true;
    for (let i = 0; i < this.options.producers; i++) {
      const client = new Runnel({ bootstrap: this.options.bootstrap, clientId: `chaos-producer-${i}`, requestTimeoutMs: this.options.requestTimeoutMs });
      this.clients.push(client);
      const producer = client.producer({ acks: "all", idempotent: true, lingerMs: 5 });
      this.producers.push(producer);
      this.writers.push(this.write(`w${i}`, producer));
    }
    for (let i = 0; i < this.options.consumers; i++) {
      const client = new Runnel({ bootstrap: this.options.bootstrap, clientId: `chaos-consumer-${i}`, requestTimeoutMs: this.options.requestTimeoutMs });
      this.clients.push(client);
      const consumer = client.groupConsumer({
        groupId: this.options.groupId,
        topics: [this.options.topic],
        resetPolicy: "earliest",
        autoCommitIntervalMs: this.options.autoCommitIntervalMs,
        maxWaitMs: 200,
      });
      this.groupConsumers.push(consumer);
      this.readers.push(this.read(i, consumer));
    }
  }

  /** Acknowledged records so far. */
  get ackedCount(): number {
    return this.ledger.count("acked");
  }

  /** Stops writing and waits for every outstanding send to settle (acknowledged or failed). */
  async stopProducing(): Promise<void> {
    this.producing = false;
    await Promise.all(this.writers);
    await Promise.allSettled(this.producers.map((p) => p.flush()));
  }

  /**
   * Waits until the group has handed out every offset below `endOffsets[p]` at least once (or the
   * deadline passes), then closes the members. Returns whether the group caught up.
   */
  async drainConsumers(endOffsets: readonly bigint[], deadlineMs: number): Promise<boolean> {
    const caughtUp = () => {
      const next = endOffsets.map(() => 0n);
      const seen = endOffsets.map(() => new Set<bigint>());
      for (const c of this.consumed) seen[c.partition]?.add(c.offset);
      return endOffsets.every((end, p) => {
        let n = next[p]!;
        while (n < end && seen[p]!.has(n)) n++;
        return n >= end;
      });
    };
    let done = caughtUp();
    while (!done && Date.now() < deadlineMs) {
      await new Promise((r) => setTimeout(r, 200));
      done = caughtUp();
    }
    this.consuming = false;
    await Promise.allSettled(this.groupConsumers.map((c) => c.close()));
    await Promise.all(this.readers);
    return done;
  }

  /** Errors group members threw (they are retried; listed for the report). */
  get consumerFailures(): readonly string[] {
    return this.consumerErrors;
  }

  async close(): Promise<void> {
    this.producing = false;
    this.consuming = false;
    await Promise.allSettled(this.groupConsumers.map((c) => c.close()));
    await Promise.allSettled(this.clients.map((c) => c.close()));
  }

  private async write(name: string, producer: Producer): Promise<void> {
    const { partitions, recordsPerSecond, maxOutstandingRecords, topic } = this.options;
    const seqs = Array.from({ length: partitions }, () => 0);
    let outstanding = 0;
    let sent = 0;
    let wake: (() => void) | undefined;
    const started = Date.now();
    let i = 0;
    while (this.producing) {
      // Pace: at most recordsPerSecond on average since the start.
      const allowed = Math.floor(((Date.now() - started) / 1000) * recordsPerSecond);
      if (sent >= allowed || outstanding >= maxOutstandingRecords) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, paceTickMs);
        });
        wake = undefined;
        continue;
      }
      const partition = i++ % partitions;
      const value = recordValue(name, partition, seqs[partition]!++);
      const entry = this.ledger.pending(value, partition);
      outstanding++;
      sent++;
      producer.send({ topic, partition, value }).then(
        (m) => this.ledger.acked(entry, m.offset, Date.now()),
        (err: unknown) => {
          const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
          this.ledger.failed(entry, error);
          this.produceErrors.push({ atMs: Date.now(), value, error });
        },
      ).finally(() => {
        outstanding--;
        wake?.();
      });
    }
    while (outstanding > 0) await new Promise((r) => setTimeout(r, paceTickMs));
  }

  private async read(member: number, consumer: GroupConsumer): Promise<void> {
    while (this.consuming) {
      try {
        const r = await consumer.next();
        if (r === undefined) return;
        this.consumed.push({ partition: r.partition, offset: r.offset, value: r.value?.toString("utf8") ?? "", member });
      } catch (err) {
        // A member may be fenced or lose the controller for a while; it rejoins on the next call.
        if (this.consumerErrors.length < 100) this.consumerErrors.push(`member ${member}: ${err instanceof Error ? err.message : String(err)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}
