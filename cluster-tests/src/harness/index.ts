// The cluster-test harness: real controller and broker processes in a temp dir, with process control
// and deadline-bounded waits. See cluster.ts for the vitest pattern (startClusterForTest).
export * from "./cluster.js";
export { ManagedProcess, describeExit, procStateLetter, type ExitInfo, type ProcessState } from "./process.js";
export { findFreePorts } from "./ports.js";
export { pollUntil, sleep, WaitTimeoutError, pollIntervalMs, type PollOptions } from "./wait.js";
export { callUnary, harnessRpcTimeoutMs } from "./rpc.js";
export { trackedPids, watchdogPid } from "./reaper.js";
