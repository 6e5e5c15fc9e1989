// Issue 5's promise with real processes and the client library (not the harness's plain producer): an
// idempotent acks=all producer with retries writes 100k small records over 3 partitions (RF 3,
// min.insync.replicas=2) while the leader of one partition is SIGKILLed and later restarted, and a
// consumer from the library then reads every record back exactly once, in per-partition order, at the
// offset its acknowledgement named; a consumer tailing the topic during the failover reads the same.
import { describe, expect, it } from "vitest";
import { Runnel, type Consumer, type RecordMetadata } from "@runnel/client";
import { type Cluster, startClusterForTest } from "../src/harness/index.js";

const sessionTimeoutMs = 2_000;
const topic = "client-failover";
const partitionCount = 3;
const totalRecords = 100_000;
/** The kill lands while this many records are acknowledged and the rest are still being sent. */
const recordsBeforeKill = 30_000;
/** The killed broker is restarted once this many records are acknowledged. */
const recordsBeforeRestart = 65_000;
/** Most records handed to send() and not yet acknowledged: the producer's buffer bounds memory too, this bounds promises. */
const maxOutstandingRecords = 20_000;
/** Deadline for reading everything back. */
const readBackTimeoutMs = 30_000;

/** Value of the seq-th record of a partition: the partition and a per-partition sequence number. */
function valueOf(partition: number, seq: number): string {
  return `p${partition}:${seq}`;
}

type ReadBack = Map<number, Array<{ offset: bigint; value: string }>>;

/**
 * Reads every partition from its current position until it reaches `endOffsets()` (the high
 * watermarks, once known: a consumer started before the writes learns them late), or until the deadline.
 */
async function readUpTo(consumer: Consumer, partitions: number, endOffsets: () => bigint[] | undefined, deadlineMs: () => number): Promise<ReadBack> {
  const got: ReadBack = new Map(Array.from({ length: partitions }, (_, p) => [p, []]));
  const next = Array.from({ length: partitions }, () => 0n);
  const done = () => {
    const ends = endOffsets();
    return ends !== undefined && next.every((n, p) => n >= ends[p]!);
  };
  const timer = setInterval(() => {
    if (Date.now() > deadlineMs() || done()) void consumer.close();
  }, 50);
  try {
    while (!done()) {
      const r = await consumer.next();
      if (r === undefined) break; // closed
      got.get(r.partition)!.push({ offset: r.offset, value: r.value?.toString("utf8") ?? "<null>" });
      next[r.partition] = r.offset + 1n;
    }
  } finally {
    clearInterval(timer);
  }
  return got;
}

/** Each partition read back holds exactly the records sent to it, in order, at the offsets their acknowledgements named. */
function checkReadBack(label: string, got: ReadBack, sent: number[], acked: Array<Array<bigint | undefined>>, earliest: bigint[], latest: bigint[]): void {
  for (let p = 0; p < sent.length; p++) {
    const records = got.get(p)!;
    const expectedCount = sent[p]!;
    const values = records.map((r) => r.value);
    const duplicates = values.length - new Set(values).size;
    console.log(`${label}, partition ${p}: ${expectedCount} sent and acknowledged, ${records.length} read (offsets ${earliest[p]}..${latest[p]}), ${duplicates} duplicates`);
    // Exactly once: the log holds exactly the records sent, no duplicate from a retry.
    expect(duplicates, `${label}: partition ${p} holds duplicates`).toBe(0);
    expect(latest[p]! - earliest[p]!, `${label}: partition ${p} log size`).toBe(BigInt(expectedCount));
    expect(records.length, `${label}: partition ${p} records read`).toBe(expectedCount);
    // In order: the seq-th record read is the seq-th record sent, at consecutive offsets, at the offset its ack named.
    const mismatches: string[] = [];
    for (let seq = 0; seq < records.length && mismatches.length < 5; seq++) {
      const r = records[seq]!;
      if (r.value !== valueOf(p, seq)) mismatches.push(`position ${seq}: read ${r.value} at offset ${r.offset}, expected ${valueOf(p, seq)}`);
      else if (r.offset !== acked[p]![seq]) mismatches.push(`${r.value} read at offset ${r.offset}, acknowledged at ${acked[p]![seq]}`);
      else if (seq > 0 && r.offset !== records[seq - 1]!.offset + 1n) mismatches.push(`gap before offset ${r.offset}`);
    }
    expect(mismatches, `${label}: partition ${p}`).toEqual([]);
  }
}

async function leaderOf(cluster: Cluster, partition: number): Promise<number> {
  return (await cluster.waitForLeader(topic, partition)).leaderId;
}

describe("client library under leader failover", () => {
  it("writes 100k records idempotently through a leader SIGKILL and restart, and reads each back exactly once in order", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs, heartbeatIntervalMs: 200, brokerArgs: ["--replica-lag-time-max-ms", "2000"] });
    const runnel = new Runnel({ bootstrap: cluster.bootstrap, clientId: "client-failover-test" });
    ctx.onTestFinished(() => runnel.close());
    const admin = runnel.admin();
    await admin.createTopic({ name: topic, partitions: partitionCount, replicationFactor: 3, configs: { "min.insync.replicas": "2" } });
    for (let p = 0; p < partitionCount; p++) await cluster.waitForLeader(topic, p, (m) => m.isr.length === 3);

    const producer = runnel.producer({ acks: "all", idempotent: true });
    const nextSeq = Array.from({ length: partitionCount }, () => 0);
    const acked: Array<Array<bigint | undefined>> = Array.from({ length: partitionCount }, () => []);
    const failures: string[] = [];
    let ackedCount = 0;
    let outstanding = 0;
    let slotFree: (() => void) | undefined;

    const victimPartition = 0;
    const victim = await leaderOf(cluster, victimPartition);
    let killed = false;
    let restarted = false;
    const events: string[] = [];
    const faults = (async () => {
      while (ackedCount < recordsBeforeKill && ackedCount + failures.length < totalRecords) await new Promise((r) => setTimeout(r, 5));
      events.push(`SIGKILL broker ${victim} (leader of partition ${victimPartition}) at ${ackedCount} acknowledged`);
      await cluster.kill(victim);
      killed = true;
      const moved = await cluster.waitForLeader(topic, victimPartition, (m) => m.leaderId !== victim);
      events.push(`partition ${victimPartition} led by broker ${moved.leaderId} (epoch ${moved.leaderEpoch}) at ${ackedCount} acknowledged`);
      while (ackedCount < recordsBeforeRestart && ackedCount + failures.length < totalRecords) await new Promise((r) => setTimeout(r, 5));
      events.push(`restart broker ${victim} at ${ackedCount} acknowledged`);
      await cluster.restart(victim);
      restarted = true;
    })();
    faults.catch(() => undefined); // awaited below, after the writes; a failure must not surface as unhandled first

    // A consumer tailing the topic while it is written reads through the failover as well.
    const tps = Array.from({ length: partitionCount }, (_, partition) => ({ topic, partition }));
    const tail = runnel.consumer({ resetPolicy: "none", maxWaitMs: 200 });
    tail.assign(tps);
    for (const tp of tps) tail.seek(tp, "earliest");
    let tailEnds: bigint[] | undefined;
    let tailDeadlineMs = Infinity;
    const tailRead = readUpTo(tail, partitionCount, () => tailEnds, () => tailDeadlineMs);

    const started = Date.now();
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < totalRecords; i++) {
      while (outstanding >= maxOutstandingRecords) await new Promise<void>((r) => (slotFree = r));
      const partition = i % partitionCount;
      const seq = nextSeq[partition]!++;
      outstanding += 1;
      sends.push(
        producer.send({ topic, partition, value: valueOf(partition, seq) }).then(
          (m: RecordMetadata) => {
            expect(m.partition).toBe(partition);
            acked[partition]![seq] = m.offset;
            ackedCount += 1;
          },
          (err: unknown) => {
            failures.push(`${valueOf(partition, seq)}: ${err instanceof Error ? err.message : String(err)}`);
          },
        ).finally(() => {
          outstanding -= 1;
          const wake = slotFree;
          slotFree = undefined;
          wake?.();
        }),
      );
      // Let acknowledgements run between chunks so the fault task sees progress mid-run.
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(sends);
    await producer.flush();
    const produceMs = Date.now() - started;
    await faults;
    console.log(events.join("\n"));
    console.log(`produced ${ackedCount} of ${totalRecords} records in ${produceMs} ms, ${failures.length} failed`);
    expect(failures.slice(0, 5)).toEqual([]);
    expect(killed && restarted).toBe(true);
    expect(ackedCount).toBe(totalRecords);

    // The restarted broker catches up; then read everything back with a fresh consumer.
    for (let p = 0; p < partitionCount; p++) await cluster.waitForLeader(topic, p, (m) => m.isr.length === 3, { timeoutMs: 20_000 });
    const latest = (await admin.listOffsets(topic, "latest")).map((o) => o.offset);
    const earliest = (await admin.listOffsets(topic, "earliest")).map((o) => o.offset);
    tailEnds = latest;
    tailDeadlineMs = Date.now() + readBackTimeoutMs;
    const tailed = await tailRead;
    await tail.close();
    checkReadBack("tailing consumer", tailed, nextSeq, acked, earliest, latest);

    const consumer = runnel.consumer({ resetPolicy: "none", maxWaitMs: 200 });
    consumer.assign(tps);
    for (const tp of tps) consumer.seek(tp, "earliest");
    const readDeadlineMs = Date.now() + readBackTimeoutMs;
    const got = await readUpTo(consumer, partitionCount, () => latest, () => readDeadlineMs);
    await consumer.close();
    checkReadBack("consumer after the writes", got, nextSeq, acked, earliest, latest);
  }, 120_000);

  it("keeps a producer with default options writing through a leader SIGKILL at the cluster's default session timeout", async (ctx) => {
    // No short timeouts here: the controller's defaults (6 s session) against the client's default retry policy.
    const cluster = await startClusterForTest(ctx, { brokers: 3 });
    const runnel = new Runnel({ bootstrap: cluster.bootstrap, clientId: "client-failover-defaults" });
    ctx.onTestFinished(() => runnel.close());
    const name = "client-failover-defaults";
    await runnel.admin().createTopic({ name, partitions: 1, replicationFactor: 3, configs: { "min.insync.replicas": "2" } });
    await cluster.waitForLeader(name, 0, (m) => m.isr.length === 3);
    const producer = runnel.producer();
    const values: string[] = [];
    const offsets: bigint[] = [];
    const sendRound = async (round: number) => {
      const batch = Array.from({ length: 100 }, (_, i) => `r${round}-${i}`);
      const acks = await Promise.all(batch.map((value) => producer.send({ topic: name, value })));
      values.push(...batch);
      offsets.push(...acks.map((a) => a.offset));
    };
    for (let round = 0; round < 5; round++) await sendRound(round);
    const leader = (await cluster.waitForLeader(name, 0)).leaderId;
    const killedAt = Date.now();
    await cluster.kill(leader);
    // The first round after the kill waits out the session timeout and the election inside send().
    await sendRound(5);
    console.log(`first round after SIGKILL of leader ${leader} acknowledged after ${Date.now() - killedAt} ms`);
    for (let round = 6; round < 10; round++) await sendRound(round);
    expect(offsets).toEqual(values.map((_, i) => BigInt(i)));

    const consumer = runnel.consumer({ resetPolicy: "earliest", maxWaitMs: 100 });
    consumer.assign([{ topic: name, partition: 0 }]);
    const read: string[] = [];
    while (read.length < values.length) read.push((await consumer.next())!.value!.toString());
    await consumer.close();
    expect(read).toEqual(values);
  }, 60_000);
});
