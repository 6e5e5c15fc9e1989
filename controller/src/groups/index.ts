// controller/src/groups: the consumer-group state machine (pure and deterministic), KIP-848 style: the
// controller computes each group's target assignment (assignors.ts), members only heartbeat, and
// partitions move incrementally (revoked and confirmed before they are given to another member). It
// also owns committed offsets and the group descriptions. Time is an input; member ids come from the
// adapter. The adapter's duty per command: run it, persist the new state, then answer.
export * from "./assignors.js";
export * from "./state.js";
export * from "./commands.js";
