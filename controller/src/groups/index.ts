// controller/src/groups: the consumer-group state machine (pure and deterministic), KIP-848 style: the
// controller computes each group's target assignment (assignors.ts), members only heartbeat, and
// partitions move incrementally (revoked and confirmed before they are given to another member). It
// also owns committed offsets, the group descriptions and the group timers run by tickGroups (session
// timeout, rebalance timeout, offsets retention). Time is an input; member ids come from the
// adapter. The adapter's duty per command: run it, persist the new state, then answer.
export * from "./assignors.js";
export * from "./state.js";
export * from "./commands.js";
