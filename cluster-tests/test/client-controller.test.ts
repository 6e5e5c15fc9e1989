// The client library while the controller is down: calls that need it (describing the cluster, a new
// idempotent producer's InitProducerId) wait inside their retry budget and succeed once the controller
// is back, and calls that do not need it (producing with a producer id already granted, fetching) go on.
import { describe, expect, it } from "vitest";
import { Runnel } from "@runnel/client";
import { startClusterForTest } from "../src/harness/index.js";

/** Deadline for reading back the two records written around the controller's death. */
const readTimeoutMs = 20_000;

describe("client library across a controller restart", () => {
  it("waits for the controller inside the retry budget and keeps producing and consuming without it", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200 });
    const runnel = new Runnel({ bootstrap: cluster.bootstrap, clientId: "client-controller-test" });
    ctx.onTestFinished(() => runnel.close());
    const admin = runnel.admin();
    await admin.createTopic({ name: "ctl-a", partitions: 2, replicationFactor: 3 });
    for (const p of [0, 1]) await cluster.waitForLeader("ctl-a", p, (m) => m.isr.length === 3);
    const early = runnel.producer();
    expect((await early.send({ topic: "ctl-a", partition: 0, value: "before" })).offset).toBe(0n);

    await cluster.kill("controller");
    // Brokers keep leading what they led: a producer that has its id writes on.
    expect((await early.send({ topic: "ctl-a", partition: 0, value: "without controller" })).offset).toBe(1n);
    // These need the controller: they wait.
    const late = runnel.producer();
    const lateSend = late.send({ topic: "ctl-a", partition: 1, value: "new producer" });
    const describe = admin.describeCluster();
    let settled = false;
    void Promise.allSettled([lateSend, describe]).then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 1_500));
    expect(settled).toBe(false);

    await cluster.restart("controller");
    expect((await lateSend).offset).toBe(0n);
    expect((await describe).brokers.map((b) => b.brokerId)).toEqual([1, 2, 3]);
    // A restarted controller counts a broker live only once it registers again; placement needs all three.
    await cluster.waitForBrokersAlive(3);
    await admin.createTopic({ name: "ctl-b", partitions: 1, replicationFactor: 3 });
    await cluster.waitForLeader("ctl-b", 0);
    expect((await late.send({ topic: "ctl-b", value: "on the new topic" })).offset).toBe(0n);

    const consumer = runnel.consumer({ resetPolicy: "earliest", maxWaitMs: 100 });
    consumer.assign([{ topic: "ctl-a", partition: 0 }]);
    const values: string[] = [];
    const giveUp = setTimeout(() => void consumer.close(), readTimeoutMs);
    while (values.length < 2) {
      const r = await consumer.next();
      if (r === undefined) break; // closed by giveUp: the assertion below says what was read
      values.push(r.value!.toString());
    }
    clearTimeout(giveUp);
    await consumer.close();
    expect(values).toEqual(["before", "without controller"]);
  }, 120_000);
});
