// controller/src/metadata: the cluster metadata state machine (pure and deterministic). It owns broker
// registrations and sessions, topics and their configuration, partition leaders, leader and partition
// epochs and ISRs, producer id allocation, and the MetadataDelta each change publishes. Time is an
// input (nowMs); no clocks, disks, sockets or randomness in here. The adapter's duty per command:
// run it, persist the new state, then publish the delta, then answer.
export * from "./state.js";
export * from "./snapshot.js";
export * from "./commands.js";
export * from "./describe.js";
export { removeFromPartitions, electOfflineLeaders, moveAwayForShutdown, balancePreferredLeaders } from "./elections.js";
