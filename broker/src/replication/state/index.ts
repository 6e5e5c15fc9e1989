// Replication protocol rules as pure, deterministic code (no sockets, timers, disks or clocks):
// the leader epoch cache and its lookups (KIP-101, KIP-279), the leader's follower tracking, high
// watermark, ISR shrink/expand proposals and acks=all completion (KIP-320 fencing included), and the
// follower's truncation and high watermark. The broker's replication adapters are thin shells around
// it; sim.ts drives it in-process for tests.
export * from "./errors.js";
export * from "./epochs.js";
export * from "./leader.js";
export * from "./follower.js";
export * from "./sim.js";
