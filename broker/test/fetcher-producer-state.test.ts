// Regression (found by the chaos suite, issue 7): a follower that became leader while a replica fetch
// was being written kept the fetched batches in its log but not in its idempotent-producer state, so a
// producer's retry of one of them (its ack was lost with the old leader) was appended again: the
// record was stored twice under idempotence. The follower now records fetched batches in the producer
// state as soon as the log takes them, before the write commits, as the leader does.
import { afterEach, describe, expect, it } from "vitest";
import { buildBatch, defaultTopicConfig, type PartitionState } from "@runnel/proto";
import { createLogger } from "@runnel/common";
import { LogStore } from "../src/log/index.js";
import { Partition } from "../src/partition/partition.js";
import { appendFetchedBatches } from "../src/replication/fetcher.js";
import { keepForever, tempDir } from "./log-helpers.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function openPartition(label: string, brokerId: number): Partition {
  const { dir, cleanup } = tempDir(label);
  const store = LogStore.open({ dir });
  cleanups.push(cleanup, () => store.close());
  const log = store.openPartition("t-id", "t", 0, keepForever);
  return new Partition(log, brokerId, { ...defaultTopicConfig }, {
    nowMs: () => 0,
    requestFlush: () => undefined,
    proposeIsr: () => undefined,
    logger: createLogger({ role: "test", level: "silent" }),
  });
}

const producerId = 7n;

/** The leader's stored bytes of one idempotent batch (what a replica fetch carries). */
async function leaderBatch(leader: Partition, baseSequence: number, value: string): Promise<Uint8Array> {
  const batch = buildBatch([{ value: Buffer.from(value) }], { producerId, producerEpoch: 0, baseSequence });
  const at = leader.log.logEndOffset;
  await leader.log.appendAsLeader(batch, 0);
  return leader.log.read(at, 1 << 20, at + 1n).batches[0]!;
}

describe("follower producer state across a leader change during a replica fetch", () => {
  it("a batch fetched while the follower becomes leader is a duplicate when the producer retries it", async () => {
    const oldLeader = openPartition("old-leader", 1);
    const follower = openPartition("follower", 2);
    const epoch0: PartitionState = { topic: "t", partition: 0, replicas: [1, 2, 3], isr: [1, 2, 3], leaderId: 1, leaderEpoch: 0, partitionEpoch: 0 };
    follower.becomeFollower(epoch0);
    const first = await leaderBatch(oldLeader, 0, "a");
    expect(await appendFetchedBatches(follower, follower.follower!, [first])).toBe(true);

    // The fetch of the next batch is being written when the controller makes this replica leader.
    const second = await leaderBatch(oldLeader, 1, "b");
    const writing = appendFetchedBatches(follower, follower.follower!, [second]);
    follower.becomeLeader({ ...epoch0, leaderId: 2, leaderEpoch: 1, partitionEpoch: 1, isr: [2, 3] }, 10_000);
    const retry = buildBatch([{ value: Buffer.from("b") }], { producerId, producerEpoch: 0, baseSequence: 1 }).header!;
    // Already before the write commits, and after it: the retry is known, not new.
    expect(follower.producers.check(retry)).toEqual({ kind: "duplicate", baseOffset: 1n });
    expect(await writing).toBe(false);
    expect(follower.producers.check(retry)).toEqual({ kind: "duplicate", baseOffset: 1n });
    expect(follower.log.logEndOffset).toBe(2n);
  });
});
