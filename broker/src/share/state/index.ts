// Share-group record states as pure, deterministic code (no sockets, timers, disks or clocks): one
// SharePartition per (share group, partition) a broker leads keeps the window [startOffset, endOffset)
// of records, who holds which under a lock until when, delivery counts, delays, dead-lettering, and
// its range-compressed durable form (SharePartitionState). The broker's share adapters (../) feed it
// log reads, requests and the wall-clock time, persist toState() to the controller, and produce dead
// letters; the rules are in share-design.md "Record lifecycle" and in share-partition.ts.
export * from "./types.js";
export * from "./share-partition.js";
