// The cluster-test harness: real controller and broker processes (built dist/ code) in a temp dir,
// with process control and deadline-bounded waits. The vitest pattern:
//
//   it("fails over", async (ctx) => {
//     const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs: 2000 });
//     ... cluster.kill(2); await cluster.waitForBrokersAlive(2); ...
//   });
//
// startClusterForTest closes the cluster when the test finishes (also on failure or timeout) and keeps
// the temp dir, printing its path, when the test failed. RUNNEL_KEEP_TEST_DIRS=1 keeps it always;
// RUNNEL_TEST_LOG_LEVEL=debug raises the processes' log level.
export * from "./cluster.js";
export { ManagedProcess, describeExit, procStateLetter, type ExitInfo, type ProcessState } from "./process.js";
export { findFreePorts } from "./ports.js";
export { pollUntil, sleep, WaitTimeoutError, pollIntervalMs, type PollOptions } from "./wait.js";
export { callUnary, harnessRpcTimeoutMs } from "./rpc.js";
export { trackedPids, watchdogPid } from "./reaper.js";
