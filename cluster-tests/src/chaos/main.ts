#!/usr/bin/env node
// `npm run chaos -- --minutes 30 --seed S`: a long soak of random faults against a local cluster,
// ending with the checker's report. Exits 1 when any promise was broken (the logs are kept).
import { parseFlags, intFlag } from "@runnel/common";
import { newSeed } from "../faults/random.js";
import { formatReport, reportViolations, runChaos } from "./run.js";

const flags = parseFlags("runnel-chaos", "Fault-injection soak: random broker/controller kills, pauses, isolation and rolling restarts under load, then a full check.", {
  minutes: { name: "minutes", env: "RUNNEL_CHAOS_MINUTES", description: "how long faults keep coming", default: 5, parse: intFlag(0, 24 * 60) },
  seed: { name: "seed", env: "RUNNEL_CHAOS_SEED", description: "random seed (default: a new one, printed)", default: -1, parse: intFlag(-1, 0xffffffff) },
  partitions: { name: "partitions", env: "RUNNEL_CHAOS_PARTITIONS", description: "partitions of the chaos topic", default: 6, parse: intFlag(1, 64) },
  rate: { name: "rate", env: "RUNNEL_CHAOS_RATE", description: "records per second per producer", default: 200, parse: intFlag(1, 100_000) },
  sessionTimeoutMs: { name: "session-timeout-ms", env: "RUNNEL_CHAOS_SESSION_TIMEOUT_MS", description: "broker session timeout of the cluster", default: 2_000, parse: intFlag(500, 60_000) },
});

const seed = flags.seed >= 0 ? flags.seed : newSeed();
const report = await runChaos({
  seed,
  durationMs: flags.minutes * 60_000,
  partitions: flags.partitions,
  recordsPerSecond: flags.rate,
  sessionTimeoutMs: flags.sessionTimeoutMs,
  log: (line) => console.log(`${new Date().toISOString()} ${line}`),
});
console.log(formatReport(report));
process.exit(reportViolations(report).length === 0 ? 0 : 1);
