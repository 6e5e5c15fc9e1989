// Where the partition leader sends dead letters. In a cluster: a @runnel/client producer (idempotent,
// acks all) bootstrapped to this broker's own address, creating the dead-letter topic when missing.
// In standalone-metadata mode (tests): an acks=all append to the dead-letter topic's local partition 0.
import { buildBatch, ErrorCode, type RecordHeader } from "@runnel/proto";
import type { Logger } from "@runnel/common";
import { Runnel, TopicAlreadyExistsError, type Producer } from "@runnel/client";
import type { Partition } from "../partition/partition.js";
import { deadLetterProduceTimeoutMs } from "./limits.js";

export interface DeadLetter {
  key: Uint8Array | undefined;
  value: Uint8Array | undefined;
  headers: RecordHeader[];
}

export interface DeadLetterSink {
  /** Resolves once every record is acknowledged by the dead-letter topic (acks all); throws otherwise. */
  produce(topic: string, records: readonly DeadLetter[], source: Partition): Promise<void>;
  close(): Promise<void>;
}

export interface ClientDeadLetterSinkOptions {
  /** This broker's advertised "host:port". */
  bootstrap: () => string;
  brokerId: number;
  liveBrokers: () => number;
  logger: Logger;
}

export class ClientDeadLetterSink implements DeadLetterSink {
  private client: Runnel | undefined;
  private producer: Producer | undefined;
  /** Dead-letter topics this process created or saw exist (skips a CreateTopics per round). */
  private readonly knownTopics = new Set<string>();

  constructor(private readonly options: ClientDeadLetterSinkOptions) {}

  private connect(): { client: Runnel; producer: Producer } {
    if (this.client === undefined || this.producer === undefined) {
      this.client = new Runnel({ bootstrap: this.options.bootstrap(), clientId: `broker-${this.options.brokerId}-dead-letters` });
      this.producer = this.client.producer({ acks: "all", idempotent: true });
    }
    return { client: this.client, producer: this.producer };
  }

  private async ensureTopic(client: Runnel, topic: string, source: Partition): Promise<void> {
    if (this.knownTopics.has(topic)) return;
    const exists = await client.admin().listTopics().then((names) => names.includes(topic), () => false);
    if (!exists) {
      const replicationFactor = Math.max(1, Math.min(source.state?.replicas.length ?? 1, this.options.liveBrokers()));
      try {
        await client.admin().createTopic({ name: topic, partitions: 1, replicationFactor });
        this.options.logger.info({ topic, replicationFactor, source: source.name }, "created dead-letter topic");
      } catch (err) {
        if (!(err instanceof TopicAlreadyExistsError)) throw err;
      }
    }
    this.knownTopics.add(topic);
  }

  async produce(topic: string, records: readonly DeadLetter[], source: Partition): Promise<void> {
    const { client, producer } = this.connect();
    await this.ensureTopic(client, topic, source);
    const sends = records.map((r) => producer.send({ topic, key: r.key ?? null, value: r.value ?? null, headers: r.headers.map((h) => ({ key: h.key, value: h.value })) }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`dead letters to ${topic} not acknowledged within ${deadLetterProduceTimeoutMs} ms`)), deadLetterProduceTimeoutMs);
    });
    try {
      await Promise.race([Promise.all(sends), timeout]);
    } catch (err) {
      // The topic may have been deleted since it was created here: look again next round.
      this.knownTopics.delete(topic);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.producer = undefined;
    await client?.close();
  }
}

/** Standalone-metadata mode: appends to partition 0 of the dead-letter topic when this broker leads it. */
export class LocalDeadLetterSink implements DeadLetterSink {
  constructor(private readonly partition: (topic: string, index: number) => Partition | undefined) {}

  async produce(topic: string, records: readonly DeadLetter[]): Promise<void> {
    const p = this.partition(topic, 0);
    if (p === undefined) throw new Error(`dead-letter topic ${topic} has no partition 0 on this broker`);
    const out = await p.produce(buildBatch(records.map((r) => ({ key: r.key, value: r.value, headers: r.headers }))), "all", deadLetterProduceTimeoutMs);
    if (out.errorCode !== ErrorCode.ERROR_CODE_NONE) throw new Error(`dead letters to ${topic}: ${ErrorCode[out.errorCode]} ${out.errorMessage}`);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
