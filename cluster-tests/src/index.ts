// @runnel/cluster-tests: tests that run real Runnel processes, kill, pause and restart them, and check
// what was promised. This package owns the harness that starts those clusters (src/harness).
export * from "./harness/index.js";
