import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FakeCluster } from "./fakes/fake-cluster.js";
import { ConnectionError, InvalidReplicationFactorError, Runnel, TopicAlreadyExistsError, UnknownTopicError } from "../src/index.js";

let fake: FakeCluster;
let client: Runnel;

beforeEach(async () => {
  fake = await FakeCluster.start({ brokers: 3 });
  client = new Runnel({ bootstrap: fake.bootstrap, retry: { initialBackoffMs: 5, maxBackoffMs: 20 } });
});

afterEach(async () => {
  await client.close();
  await fake.stop();
});

describe("admin", () => {
  it("creates topics and reports per-topic outcomes with typed errors", async () => {
    const admin = client.admin();
    await admin.createTopic({ name: "a", partitions: 3, replicationFactor: 2, configs: { "min.insync.replicas": "2" } });
    const outcomes = await admin.createTopics([{ name: "a" }, { name: "b", replicationFactor: 9 }, { name: "c" }]);
    expect(outcomes[0]!.error).toBeInstanceOf(TopicAlreadyExistsError);
    expect(outcomes[1]!.error).toBeInstanceOf(InvalidReplicationFactorError);
    expect(outcomes[2]!.error).toBeUndefined();
    expect(await admin.listTopics()).toEqual(["a", "c"]);
    const d = await admin.describeTopic("a");
    expect(d.partitions.map((p) => p.leaderId)).toEqual([1, 2, 3]);
    expect(d.partitions[0]).toMatchObject({ partition: 0, leaderEpoch: 0, replicas: [1, 2, 3], isr: [1, 2, 3] });
    expect(d.configs).toEqual({ "min.insync.replicas": "2" });
  });

  it("alters configuration, deletes topics, and says when a topic is unknown", async () => {
    const admin = client.admin();
    await admin.createTopic({ name: "a" });
    await admin.alterTopicConfig("a", { set: { "retention.ms": "1000" } });
    expect((await admin.describeTopic("a")).configs).toEqual({ "retention.ms": "1000" });
    await admin.alterTopicConfig("a", { remove: ["retention.ms"] });
    expect((await admin.describeTopic("a")).configs).toEqual({});
    await admin.deleteTopic("a");
    await expect(admin.describeTopic("a")).rejects.toBeInstanceOf(UnknownTopicError);
    await expect(admin.deleteTopic("a")).rejects.toBeInstanceOf(UnknownTopicError);
  });

  it("describes the cluster and lists offsets per partition", async () => {
    fake.createTopic("t", 2);
    fake.append("t", 1, [{ value: new Uint8Array([1]), timestamp: 10 }, { value: new Uint8Array([2]), timestamp: 20 }]);
    const admin = client.admin();
    const cluster = await admin.describeCluster();
    expect(cluster).toMatchObject({ clusterId: "fake-cluster", topicCount: 1, partitionCount: 2 });
    expect(cluster.brokers.map((b) => b.brokerId)).toEqual([1, 2, 3]);
    expect((await admin.listOffsets("t", "latest")).map((o) => o.offset)).toEqual([0n, 2n]);
    expect((await admin.listOffsets("t", "earliest")).map((o) => o.offset)).toEqual([0n, 0n]);
    expect((await admin.listOffsets("t", { timestamp: 15 }, [1]))[0]).toMatchObject({ partition: 1, offset: 1n, timestamp: 20n });
  });

  it("bootstraps from the next address when the first broker is down", async () => {
    fake.downBrokers.add(1);
    const other = new Runnel({ bootstrap: [fake.brokerAddress(1), fake.brokerAddress(2)] });
    try {
      expect(await other.admin().listTopics()).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it("throws ConnectionError when no bootstrap broker answers", async () => {
    const nowhere = new Runnel({ bootstrap: "127.0.0.1:1", retry: { maxAttempts: 1 } });
    try {
      await expect(nowhere.connect()).rejects.toBeInstanceOf(ConnectionError);
    } finally {
      await nowhere.close();
    }
  });
});
