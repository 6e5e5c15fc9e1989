// A deliberately plain idempotent producer for cluster tests, written on the generated gRPC stubs (not
// the client library), so the tests check the brokers, not the client's own retry logic. One batch in
// flight per partition; a retriable failure resends the same batch (same sequence) to the leader that
// metadata names now, until a deadline.
import { Acks, buildBatch, ErrorCode, type PartitionProduceResponse } from "@runnel/proto";
import type { Cluster } from "../harness/index.js";
import { callUnary } from "../harness/rpc.js";
import { sleep } from "../harness/wait.js";

/** Errors after which the same batch may be resent (the outcome may be unknown; idempotence makes it safe). */
export const retriableCodes: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.NOT_LEADER,
  ErrorCode.LEADER_NOT_AVAILABLE,
  ErrorCode.NOT_ENOUGH_REPLICAS,
  ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
  ErrorCode.REQUEST_TIMED_OUT,
  ErrorCode.FENCED_LEADER_EPOCH,
  ErrorCode.UNKNOWN_LEADER_EPOCH,
  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
  ErrorCode.THROTTLED,
  ErrorCode.STORAGE_ERROR,
]);

export interface SendResult {
  acked: boolean;
  baseOffset: bigint;
  errorCode: ErrorCode;
  attempts: number;
}

export class TestProducer {
  private producerId = 0n;
  private producerEpoch = 0;
  private readonly sequences = new Map<number, number>();
  private readonly leaders = new Map<number, number>();

  constructor(
    private readonly cluster: Cluster,
    readonly topic: string,
    private readonly options: { acks?: Acks; idempotent?: boolean; requestTimeoutMs?: number } = {},
  ) {}

  async init(): Promise<void> {
    if (this.options.idempotent === false) return;
    const c = this.cluster.controllerClient();
    const res = await callUnary(c, c.initProducerId, { producerId: 0n, producerEpoch: 0 }, 5_000);
    if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) throw new Error(`InitProducerId: ${ErrorCode[res.errorCode]} ${res.errorMessage}`);
    this.producerId = res.producerId;
    this.producerEpoch = res.producerEpoch;
  }

  private async leaderOf(partition: number, refresh: boolean): Promise<number | undefined> {
    if (!refresh && this.leaders.has(partition)) return this.leaders.get(partition);
    try {
      const md = await this.cluster.metadata([this.topic]);
      for (const p of md.topics[0]?.partitions ?? []) if (p.leaderId >= 0) this.leaders.set(p.partition, p.leaderId);
      else this.leaders.delete(p.partition);
    } catch {
      // Every broker may be unreachable for a moment; the caller retries.
    }
    return this.leaders.get(partition);
  }

  /**
   * Sends one batch of `values` and retries it until acknowledged, refused for good, or `deadlineMs`
   * (absolute, Date.now()) passes. `acked` is true only when a broker acknowledged it.
   */
  async send(partition: number, values: readonly string[], deadlineMs: number): Promise<SendResult> {
    const sequence = this.sequences.get(partition) ?? 0;
    const batch = buildBatch(
      values.map((v) => ({ value: Buffer.from(v) })),
      this.producerId === 0n ? {} : { producerId: this.producerId, producerEpoch: this.producerEpoch, baseSequence: sequence },
    );
    let attempts = 0;
    let last: PartitionProduceResponse | undefined;
    let refresh = false;
    while (Date.now() < deadlineMs) {
      attempts++;
      const leader = await this.leaderOf(partition, refresh);
      refresh = true;
      if (leader === undefined) {
        await sleep(100);
        continue;
      }
      try {
        const client = this.cluster.brokerClient(leader);
        const res = await callUnary(
          client,
          client.produce,
          { acks: this.options.acks ?? Acks.ACKS_ALL, timeoutMs: this.options.requestTimeoutMs ?? 5_000, topics: [{ topic: this.topic, partitions: [{ partition, batch }] }] },
          (this.options.requestTimeoutMs ?? 5_000) + 2_000,
        );
        last = res.topics[0]!.partitions[0]!;
      } catch {
        await sleep(100);
        continue;
      }
      if (last.errorCode === ErrorCode.ERROR_CODE_NONE || last.errorCode === ErrorCode.DUPLICATE_SEQUENCE) {
        this.sequences.set(partition, sequence + values.length);
        return { acked: true, baseOffset: last.baseOffset, errorCode: last.errorCode, attempts };
      }
      if (!retriableCodes.has(last.errorCode)) return { acked: false, baseOffset: -1n, errorCode: last.errorCode, attempts };
      refresh = last.errorCode !== ErrorCode.NOT_ENOUGH_REPLICAS;
      await sleep(last.errorCode === ErrorCode.NOT_ENOUGH_REPLICAS ? 200 : 50);
    }
    return { acked: false, baseOffset: -1n, errorCode: last?.errorCode ?? ErrorCode.REQUEST_TIMED_OUT, attempts };
  }
}
