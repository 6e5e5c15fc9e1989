// client/src/groups: consumer groups on the client side. GroupConsumer is a group member (heartbeats,
// follows the controller's assignment, commits); GroupAdmin lists, describes (with lag) and resets
// groups. Everything goes to the controller through the generated stubs, KIP-848 style.
export { GroupConsumer, diffAssignment, defaultAutoCommitIntervalMs, defaultRebalanceTimeoutMs, type GroupConsumerOptions, type RebalanceListeners } from "./consumer.js";
export { GroupAdmin, type GroupListing, type GroupDescription, type GroupMember, type GroupPartitionLag, type OffsetResetTarget } from "./admin.js";
