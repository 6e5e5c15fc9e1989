// controller/src/share: share groups on the controller (issue 10). It owns share-group membership
// (pure, in memory: members rejoin after a controller restart), the fencing of share-state reads and
// writes against the cluster metadata (pure), the durable share-state store (LMDB, group commit) and
// DescribeShareGroups. Correctness of record delivery rests on the partition leaders' acquisition
// locks and on the fenced, flushed share state here, not on membership.
export * from "./membership.js";
export * from "./fencing.js";
export * from "./state-store.js";
export * from "./describe.js";
