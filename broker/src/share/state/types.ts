// The contract between the pure share-partition state machine (./share-partition.ts) and the broker
// code around it (../). Time is wall-clock milliseconds since the Unix epoch, passed in: lock deadlines
// and delays are persisted and must mean the same on the next leader.
import type { SharePartitionState } from "@runnel/proto";

/** Limits of one share group on one partition. */
export interface ShareLimits {
  /** Most records in the window [startOffset, endOffset) (acquired, available again, delayed, settled above the start). */
  maxWindowRecords: number;
  /** Most records one member may hold acquired on this partition at once. */
  maxAcquiredRecordsPerMember: number;
}

export const defaultShareLimits: Readonly<ShareLimits> = Object.freeze({
  maxWindowRecords: 10_000,
  maxAcquiredRecordsPerMember: 2_000,
});

/** Topic settings the state machine obeys (from the topic config; may change while running). */
export interface ShareSettings {
  /** Deliveries after which the next release or lock expiry dead-letters a record (max.delivery.attempts). */
  maxDeliveryAttempts: number;
}

/** Records entering the window, as read from the log: consecutive offsets with one not-before time. */
export interface AdmittedRun {
  firstOffset: bigint;
  lastOffset: bigint;
  /** Not handed out before this time (the runnel.not-before header); 0 for no delay. */
  notBeforeMs: number;
}

/** Records handed to a member by acquire(): consecutive offsets with the same delivery count. */
export interface AcquiredRun {
  firstOffset: bigint;
  lastOffset: bigint;
  /** Deliveries so far, this one included (1 the first time). */
  deliveryCount: number;
}

export type AckType = "accept" | "release" | "reject" | "renew";

export interface Acknowledgement {
  firstOffset: bigint;
  lastOffset: bigint;
  type: AckType;
  /** release: not available again before nowMs + releaseDelayMs. */
  releaseDelayMs: number;
  /** release/reject: why; kept as lastFailure and used as the dead letter's reason. */
  reason: string;
  /** renew: new lock duration from nowMs. */
  lockDurationMs: number;
}

/** Outcome of one acknowledgement: all of its run applied, or none of it. */
export type AckOutcome =
  | { ok: true; /** renew: the new deadline */ lockDeadlineMs?: number }
  | { ok: false; /** which offset is not acquired by the member, and why */ message: string };

/** A record that must be produced to the dead-letter topic, then marked with deadLettered(). */
export interface DeadLetterCandidate {
  offset: bigint;
  deliveryCount: number;
  reason: string;
}

/** What the adapter may read back for persistence and describe. */
export type { SharePartitionState };
