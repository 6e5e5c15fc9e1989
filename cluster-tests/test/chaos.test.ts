// Issue 7's short fault suite, part of npm test: one fault of each kind (leader SIGKILL, controller
// SIGKILL, a leader paused past the session timeout, a leader isolated from brokers, controller and
// clients, a rolling SIGTERM restart) under an idempotent acks=all workload with a consumer group; then
// the checker's counts, printed, and asserted. The seed is printed; RUNNEL_CHAOS_SEED=S replays it.
import { describe, expect, it } from "vitest";
import { newSeed } from "../src/faults/index.js";
import { faultKinds } from "../src/chaos/schedule.js";
import { formatReport, reportViolations, runChaos } from "../src/chaos/run.js";

// Failover times are printed, not asserted: a timed assertion flakes on a loaded 2-core machine. The
// p99 budget (session timeout + 2 s) is checked by the soak (npm run chaos) and recorded in docs/chaos.md.
const sessionTimeoutMs = 2_000;

describe("chaos (short suite)", () => {
  it("loses, duplicates, reorders and skips nothing through one fault of each kind; replicas agree", async (ctx) => {
    const seedText = process.env["RUNNEL_CHAOS_SEED"];
    const seed = seedText === undefined ? newSeed() : Number(seedText);
    console.log(`chaos short suite: seed ${seed} (replay: RUNNEL_CHAOS_SEED=${seed})`);
    const report = await runChaos({
      seed,
      durationMs: 0,
      faults: faultKinds,
      sessionTimeoutMs,
      partitions: 4,
      recordsPerSecond: 150,
      log: (line) => console.log(line),
      // Even if the test times out mid-run, every process is killed and the logs are kept.
      onStarted: (cluster, network) => {
        cluster.keepLogsOnFailure(ctx);
        ctx.onTestFinished(() => network.close());
      },
    });
    console.log(formatReport(report));
    expect(reportViolations(report)).toEqual([]);
    expect(report.history.lost).toBe(0);
    expect(report.history.duplicated).toBe(0);
    expect(report.history.reordered).toBe(0);
    expect(report.replicas.divergences).toEqual([]);
    expect(report.history.skippedByGroup).toBe(0);
    expect(report.produceErrorsDuringRollingRestarts).toBe(0);
    expect(report.zombieAcks).toBe(0);
    expect(report.history.acknowledged).toBeGreaterThan(1_000);
    // The leader SIGKILL was measured: a probe write on its partition was acknowledged by the new leader.
    expect(report.failoverMs.length).toBeGreaterThan(0);
  }, 240_000);
});
