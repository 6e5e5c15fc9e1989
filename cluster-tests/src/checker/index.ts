// Checkers: what a test reads back after its faults, and what it must find. replicas.ts compares the
// replicas on disk byte for byte; history.ts compares what clients were told with what the log holds.
export * from "./replicas.js";
export * from "./history.js";
