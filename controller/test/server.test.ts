import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { MetadataEvent } from "@runnel/proto";
import { CommandQueue, QueueFull } from "../src/server/queue.js";
import { MetadataSubscriber, maxSubscriberBacklogEvents } from "../src/server/watch.js";

/** A server stream whose client never reads: every write reports a full buffer. */
class StuckStream extends EventEmitter {
  written: MetadataEvent[] = [];
  status: { code: number; details: string } | undefined;
  accepting = false;
  constructor() {
    super();
    this.on("error", (err: { code: number; details: string }) => {
      this.status = err;
    });
  }
  write(event: MetadataEvent): boolean {
    this.written.push(event);
    return this.accepting;
  }
}

const delta = (v: bigint): MetadataEvent => ({ metadataVersion: v, event: { $case: "delta", value: { brokers: [], topics: [], deletedTopicIds: [], partitions: [] } } });

describe("metadata subscriber backlog", () => {
  it("buffers while the stream is full, flushes in order on drain", () => {
    const stream = new StuckStream();
    const closed: MetadataSubscriber[] = [];
    const s = new MetadataSubscriber(stream as never, (x) => closed.push(x));
    s.offer({ metadataVersion: 5n, event: { $case: "snapshot", value: { clusterId: "c", brokers: [], topics: [] } } });
    for (let v = 6n; v < 10n; v++) s.offer(delta(v));
    expect(stream.written.map((e) => e.metadataVersion)).toEqual([5n]);
    stream.accepting = true;
    stream.emit("drain");
    expect(stream.written.map((e) => e.metadataVersion)).toEqual([5n, 6n, 7n, 8n, 9n]);
    expect(closed).toHaveLength(0);
  });

  it("disconnects a subscriber that falls too far behind, with RESOURCE_EXHAUSTED", () => {
    const stream = new StuckStream();
    const closed: MetadataSubscriber[] = [];
    const s = new MetadataSubscriber(stream as never, (x) => closed.push(x));
    s.offer({ metadataVersion: 0n, event: { $case: "snapshot", value: { clusterId: "c", brokers: [], topics: [] } } });
    for (let v = 1; v <= maxSubscriberBacklogEvents + 1; v++) s.offer(delta(BigInt(v)));
    expect(s.isClosed).toBe(true);
    expect(closed).toEqual([s]);
    expect(stream.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    s.offer(delta(BigInt(maxSubscriberBacklogEvents + 2))); // ignored once closed
    expect(stream.written).toHaveLength(1);
  });

  it("refuses a delta that would leave a gap", () => {
    const s = new MetadataSubscriber(new StuckStream() as never, () => undefined);
    s.offer({ metadataVersion: 3n, event: { $case: "snapshot", value: { clusterId: "c", brokers: [], topics: [] } } });
    expect(() => s.offer(delta(5n))).toThrow(/gap/);
  });
});

describe("command queue", () => {
  it("runs commands one at a time in order and refuses beyond its bound", async () => {
    const queue = new CommandQueue(2);
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const a = queue.run(async () => {
      order.push("a start");
      await gate;
      order.push("a end");
    });
    const b = queue.run(async () => {
      order.push("b");
    });
    await expect(queue.run(async () => undefined)).rejects.toBeInstanceOf(QueueFull);
    release();
    await Promise.all([a, b]);
    expect(order).toEqual(["a start", "a end", "b"]);
    const failing = queue.run(async () => {
      throw new Error("boom");
    });
    await expect(failing).rejects.toThrow("boom");
    await expect(queue.run(async () => 7)).resolves.toBe(7);
  });
});
