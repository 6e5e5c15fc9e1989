import { describe, expect, it } from "vitest";
import { ErrorCode, type MetadataRequest, type MetadataResponse, type TopicMetadata } from "@runnel/proto";
import { ClusterMetadata } from "../src/metadata/index.js";
import type { ChannelPool } from "../src/network/index.js";

function topic(name: string): TopicMetadata {
  return {
    name, topicId: `id-${name}`, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", configs: {},
    partitions: [{ partition: 0, leaderId: 1, leaderEpoch: 0, replicas: [1], isr: [1], offlineReplicas: [], errorCode: ErrorCode.ERROR_CODE_NONE }],
  } as unknown as TopicMetadata;
}

/** A pool whose Metadata answers wait until the test releases them, recording what was asked. */
function stubPool(allTopics: string[]) {
  const requests: string[][] = [];
  const pending: Array<() => void> = [];
  const pool = {
    broker: (_address: string, method: string, request: MetadataRequest) => {
      if (method !== "metadata") throw new Error(`unexpected ${method}`);
      requests.push([...request.topics]);
      const names = request.topics.length === 0 ? allTopics : request.topics;
      const response = {
        clusterId: "c", metadataVersion: 1n, controller: { brokerId: 0, host: "127.0.0.1", port: 7400, rack: "" },
        brokers: [{ brokerId: 1, host: "127.0.0.1", port: 7401, rack: "" }], topics: names.map(topic),
      } as unknown as MetadataResponse;
      return new Promise<MetadataResponse>((resolve) => pending.push(() => resolve(response)));
    },
  } as unknown as ChannelPool;
  const releaseAll = async () => {
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { pool, requests, releaseAll };
}

describe("metadata cache", () => {
  it("a refresh of all topics does not settle for a running refresh of some topics", async () => {
    const { pool, requests, releaseAll } = stubPool(["orders", "payments", "audit"]);
    const metadata = new ClusterMetadata(pool, "127.0.0.1:7401");
    const some = metadata.refresh(["orders"]);
    const all = metadata.refresh([], true);
    await releaseAll();
    await Promise.all([some, all]);
    expect(requests).toEqual([["orders"], []]);
    expect(metadata.allTopics().map((t) => t.name).sort()).toEqual(["audit", "orders", "payments"]);
  });

  it("coalesces concurrent refreshes that the running one covers", async () => {
    const { pool, requests, releaseAll } = stubPool(["orders"]);
    const metadata = new ClusterMetadata(pool, "127.0.0.1:7401");
    const all = metadata.refresh([], true);
    const some = metadata.refresh(["orders"]);
    await releaseAll();
    await Promise.all([all, some]);
    expect(requests).toEqual([[]]);
  });

  it("does not go back to an older metadata version, and asks another broker next time", async () => {
    // Broker 1 was cut off from the controller and still answers version 5; broker 2 knows version 9.
    const asked: string[] = [];
    const versions: Record<string, bigint> = { "127.0.0.1:7401": 5n, "127.0.0.1:7402": 9n };
    const pool = {
      broker: async (address: string) => {
        asked.push(address);
        return {
          clusterId: "c", metadataVersion: versions[address], controller: { brokerId: -1, host: "127.0.0.1", port: 7400, rack: "" },
          brokers: [{ brokerId: 1, host: "127.0.0.1", port: 7401, rack: "" }, { brokerId: 2, host: "127.0.0.1", port: 7402, rack: "" }],
          topics: [{ ...topic("orders"), partitions: [{ ...topic("orders").partitions[0]!, leaderId: address.endsWith("7401") ? 1 : 2 }] }],
        } as unknown as MetadataResponse;
      },
    } as unknown as ChannelPool;
    const metadata = new ClusterMetadata(pool, ["127.0.0.1:7401", "127.0.0.1:7402"]);
    await metadata.refresh([], true); // asks 7401 first: version 5, leader 1
    expect(metadata.topic("orders")!.partitions[0]!.leaderId).toBe(1);
    await metadata.refresh([], true); // rotates to 7402: version 9, leader 2
    expect(metadata.topic("orders")!.partitions[0]!.leaderId).toBe(2);
    await metadata.refresh([], true); // back at 7401: its version 5 is older, so 7402 is asked again
    expect(metadata.topic("orders")!.partitions[0]!.leaderId).toBe(2);
    expect(metadata.metadataVersion).toBe(9n);
    expect(asked).toEqual(["127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7401", "127.0.0.1:7402"]);
  });
});
