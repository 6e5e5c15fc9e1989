// The task API's pure rules: what a handler failure at a given attempt means (release with
// exponential backoff, or reject = dead-letter at the last attempt), the headers an enqueue writes,
// and how a share record becomes a Job. Time comes in as numbers; nothing here reads a clock.
import { notBeforeHeader } from "@runnel/proto";
import type { ConsumerHeader } from "../consumer/index.js";

/** Header with the job's own attempt limit (decimal); the topic's max.delivery.attempts still caps it. */
export const maxAttemptsHeader = "runnel.task.max-attempts";

export interface BackoffOptions {
  /** Delay after the first failed attempt, in milliseconds. */
  initialMs: number;
  /** Largest delay, in milliseconds. */
  maxMs: number;
}

export const defaultBackoff: Readonly<BackoffOptions> = Object.freeze({ initialMs: 1_000, maxMs: 300_000 });

/** Delay before the next attempt after attempt `attempt` (1-based) failed: min(maxMs, initialMs * 2^(attempt-1)). */
export function backoffDelayMs(attempt: number, backoff: BackoffOptions): number {
  const exponent = Math.max(0, attempt - 1);
  // 2^exponent overflows to Infinity for large attempts; min() still gives maxMs.
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** exponent);
}

/** The attempts a job gets: its own limit (when set and valid) capped by the topic's max.delivery.attempts. */
export function effectiveMaxAttempts(jobMaxAttempts: number | undefined, topicMaxDeliveryAttempts: number): number {
  if (jobMaxAttempts === undefined || !Number.isInteger(jobMaxAttempts) || jobMaxAttempts < 1) return topicMaxDeliveryAttempts;
  return Math.min(jobMaxAttempts, topicMaxDeliveryAttempts);
}

export type FailureDecision = { action: "reject" } | { action: "release"; delayMs: number };

/** A handler failed at `attempt` of `maxAttempts`: dead-letter at the last attempt, else retry after a backoff. */
export function decideOnFailure(attempt: number, maxAttempts: number, backoff: BackoffOptions): FailureDecision {
  if (attempt >= maxAttempts) return { action: "reject" };
  return { action: "release", delayMs: backoffDelayMs(attempt, backoff) };
}

export interface EnqueueHeaderOptions {
  delayMs?: number | undefined;
  maxAttempts?: number | undefined;
  headers?: Record<string, string> | undefined;
}

/** The record headers of an enqueued job: the caller's, plus runnel.not-before and runnel.task.max-attempts when asked. */
export function buildTaskHeaders(options: EnqueueHeaderOptions, nowMs: number): Record<string, string> {
  const out: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.delayMs !== undefined) {
    if (!(Number.isFinite(options.delayMs) && options.delayMs >= 0)) throw new RangeError(`delayMs must be a number >= 0, got ${options.delayMs}`);
    if (options.delayMs > 0) out[notBeforeHeader] = String(Math.round(nowMs + options.delayMs));
  }
  if (options.maxAttempts !== undefined) {
    if (!(Number.isInteger(options.maxAttempts) && options.maxAttempts >= 1)) throw new RangeError(`maxAttempts must be an integer >= 1, got ${options.maxAttempts}`);
    out[maxAttemptsHeader] = String(options.maxAttempts);
  }
  return out;
}

/** A job's headers as strings (the last value wins for repeated keys). */
export function headersToRecord(headers: readonly ConsumerHeader[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of headers) out[h.key] = h.value.toString("utf8");
  return out;
}

/** The job's own attempt limit from its headers, if it has a valid one. */
export function jobMaxAttemptsOf(headers: Record<string, string>): number | undefined {
  const v = headers[maxAttemptsHeader];
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}

/** The job's payload: its value parsed as JSON (undefined for an empty value; the raw text when it is not JSON). */
export function parsePayload(value: Buffer | null): unknown {
  if (value === null || value.length === 0) return undefined;
  const text = value.toString("utf8");
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** When to renew a running job's lock: halfway through each lock period. */
export function renewIntervalMs(lockDurationMs: number): number {
  return Math.max(1, Math.floor(lockDurationMs / 2));
}
