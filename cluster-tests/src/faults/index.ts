// Fault injection for cluster tests: network cuts through attributed TCP proxies (network.ts), the
// proxy itself (proxy.ts), connection attribution via /proc (attribution.ts), and the seeded random
// generator that makes every fault schedule replayable (random.ts).
export * from "./network.js";
export * from "./proxy.js";
export * from "./attribution.js";
export * from "./random.js";
