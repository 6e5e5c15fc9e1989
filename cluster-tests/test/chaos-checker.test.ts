// The history checker and the seeded schedule, without processes: each count of issue 7 is produced
// by a history built to contain exactly that fault, and a seed replays the same fault schedule.
import { describe, expect, it } from "vitest";
import { checkHistory, historyViolations, type LogRecord } from "../src/checker/index.js";
import { planFault, type ClusterView } from "../src/chaos/schedule.js";
import { SeededRandom } from "../src/faults/index.js";
import { type ConsumedRecord, type SentRecord } from "../src/workload/chaos.js";

function acked(value: string, partition: number, offset: bigint): SentRecord {
  return { value, partition, state: "acked", offset };
}

function log(...values: string[]): LogRecord[] {
  return values.map((value, i) => ({ offset: BigInt(i), value }));
}

describe("history checker", () => {
  it("finds nothing wrong in a clean history", () => {
    const sent = [acked("w0:0:0", 0, 0n), acked("w0:0:1", 0, 1n), { value: "w0:0:2", partition: 0, state: "failed" as const }];
    const consumed: ConsumedRecord[] = [
      { partition: 0, offset: 0n, value: "w0:0:0", member: 0 },
      { partition: 0, offset: 1n, value: "w0:0:1", member: 1 },
    ];
    const r = checkHistory({ logs: [log("w0:0:0", "w0:0:1")], sent, consumed });
    expect(historyViolations(r)).toEqual([]);
    expect(r).toMatchObject({ acknowledged: 2, unacknowledged: 1, unacknowledgedPresent: 0, recordsInLog: 2 });
  });

  it("counts an acknowledged record missing from the log as lost, and one at another offset as misplaced", () => {
    const r = checkHistory({ logs: [log("w0:0:0", "w0:0:2")], sent: [acked("w0:0:0", 0, 0n), acked("w0:0:1", 0, 1n), acked("w0:0:2", 0, 2n)] });
    expect(r.lost).toBe(1);
    expect(r.misplaced).toBe(1);
    expect(r.examples[0]).toContain("w0:0:1");
  });

  it("counts duplicates and reordering per producer within a partition", () => {
    const sent = ["w0:0:0", "w0:0:1", "w1:0:0"].map((v, i) => acked(v, 0, BigInt(i)));
    const r = checkHistory({ logs: [log("w0:0:0", "w1:0:0", "w0:0:1", "w0:0:1")], sent });
    expect(r.duplicated).toBe(1);
    const reordered = checkHistory({ logs: [log("w0:0:1", "w0:0:0")], sent: [acked("w0:0:0", 0, 1n), acked("w0:0:1", 0, 0n)] });
    expect(reordered.reordered).toBe(1);
  });

  it("allows unacknowledged records in the log but counts them; flags records no one sent", () => {
    const r = checkHistory({ logs: [log("w0:0:0", "x")], sent: [{ value: "w0:0:0", partition: 0, state: "failed" }] });
    expect(r.unacknowledgedPresent).toBe(1);
    expect(r.unknownInLog).toBe(1);
    expect(historyViolations(r)).toEqual(["1 unknown in the log"]);
  });

  it("counts offsets the group never handed out, up to where it was drained, and records it read that the log does not hold", () => {
    const sent = ["a:0:0", "a:0:1", "a:0:2"].map((v, i) => acked(v, 0, BigInt(i)));
    const consumed: ConsumedRecord[] = [
      { partition: 0, offset: 0n, value: "a:0:0", member: 0 },
      { partition: 0, offset: 0n, value: "a:0:0", member: 1 },
      { partition: 0, offset: 2n, value: "a:0:9", member: 1 },
    ];
    const r = checkHistory({ logs: [log("a:0:0", "a:0:1", "a:0:2")], sent, consumed, groupEnd: [3n] });
    expect(r.skippedByGroup).toBe(1);
    expect(r.redeliveredByGroup).toBe(1);
    expect(r.consumedNotInLog).toBe(1);
  });
});

describe("fault schedule", () => {
  const view: ClusterView = { brokers: [1, 2, 3], leaders: new Map([[0, 1], [1, 2], [2, 1]]), sessionTimeoutMs: 2_000 };

  it("replays the same faults from the same seed", () => {
    const plan = (seed: number) => {
      const rng = new SeededRandom(seed);
      return Array.from({ length: 20 }, () => planFault(rng, view));
    };
    expect(plan(42)).toEqual(plan(42));
    expect(plan(42)).not.toEqual(plan(43));
  });

  it("pauses and isolates for longer than the session timeout, and prefers leaders as victims", () => {
    const rng = new SeededRandom(7);
    let leaderVictims = 0;
    let kills = 0;
    for (let i = 0; i < 500; i++) {
      const f = planFault(rng, view);
      if (f.kind === "pause-leader" || f.kind === "isolate-leader") {
        expect(f.durationMs).toBeGreaterThan(view.sessionTimeoutMs);
        expect([...view.leaders.values()]).toContain(f.broker);
      }
      if (f.kind === "kill-broker") {
        kills++;
        if (f.partition !== undefined) leaderVictims++;
      }
    }
    expect(kills).toBeGreaterThan(0);
    expect(leaderVictims / kills).toBeGreaterThan(0.6);
  });
});
