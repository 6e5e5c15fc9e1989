// The client's one retry policy: exponential backoff with jitter, bounded by a number of attempts and
// by total time. The decision is pure (attempt, elapsed time and a random number in, a delay or "give
// up" out); `withRetry` is the thin async loop every request path uses.
import { RunnelError } from "../errors/index.js";

export interface RetryOptions {
  /** Most attempts in total, the first included (default: unlimited; maxTotalMs bounds retries). */
  maxAttempts?: number;
  /** Delay before the first retry, in milliseconds. */
  initialBackoffMs?: number;
  /** Largest delay between attempts, in milliseconds. */
  maxBackoffMs?: number;
  /** Growth of the delay per attempt. */
  multiplier?: number;
  /** Fraction of the delay randomised (0.2 = ±20 %), so clients do not retry in lockstep. */
  jitter?: number;
  /** Give up once this much time has passed since the first attempt, in milliseconds. */
  maxTotalMs?: number;
}

export type RetryPolicy = Required<RetryOptions>;

/**
 * Retries are bounded by time (maxTotalMs), not by a count: a refused connection fails in a
 * millisecond, so any fixed count is spent in a few seconds of backoff, before a cluster with the
 * default 6 s broker session timeout has even elected a new leader. A count stays available for
 * callers who want one.
 */
export const defaultRetryPolicy: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: Number.POSITIVE_INFINITY,
  initialBackoffMs: 100,
  maxBackoffMs: 1000,
  multiplier: 2,
  jitter: 0.2,
  maxTotalMs: 30_000,
});

export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  const policy = { ...defaultRetryPolicy, ...options };
  if (!(policy.maxAttempts >= 1)) throw new RangeError(`retry.maxAttempts must be >= 1, got ${policy.maxAttempts}`);
  if (!(policy.initialBackoffMs >= 0) || !(policy.maxBackoffMs >= policy.initialBackoffMs)) {
    throw new RangeError(`retry backoff must satisfy 0 <= initialBackoffMs (${policy.initialBackoffMs}) <= maxBackoffMs (${policy.maxBackoffMs})`);
  }
  if (!(policy.jitter >= 0 && policy.jitter <= 1)) throw new RangeError(`retry.jitter must be in 0..1, got ${policy.jitter}`);
  return policy;
}

/** Delay before retry number `retry` (1 = first retry), given `random` in [0, 1). */
export function backoffMs(policy: RetryPolicy, retry: number, random: number): number {
  const base = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * policy.multiplier ** Math.max(0, retry - 1));
  const spread = base * policy.jitter * (2 * random - 1);
  return Math.max(0, Math.round(Math.min(policy.maxBackoffMs, base + spread)));
}

export type RetryDecision = { retry: true; delayMs: number } | { retry: false };

/**
 * Whether to retry after `attempts` failed attempts (the last failing with `err`), `elapsedMs` after
 * the first one started. Only RunnelErrors marked retriable are retried.
 */
export function decideRetry(policy: RetryPolicy, err: unknown, attempts: number, elapsedMs: number, random: number): RetryDecision {
  if (!(err instanceof RunnelError) || !err.retriable) return { retry: false };
  if (attempts >= policy.maxAttempts) return { retry: false };
  const delayMs = backoffMs(policy, attempts, random);
  if (elapsedMs + delayMs > policy.maxTotalMs) return { retry: false };
  return { retry: true, delayMs };
}

/** Time and randomness, injectable so tests control them. */
export interface RetryEnvironment {
  nowMs: () => number;
  random: () => number;
  sleep: (ms: number) => Promise<void>;
}

export const realRetryEnvironment: RetryEnvironment = {
  nowMs: () => Date.now(),
  random: () => Math.random(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** Runs `attempt` until it succeeds or the policy gives up; `beforeRetry` runs before each retry (refresh metadata). */
export async function withRetry<T>(
  policy: RetryPolicy,
  attempt: (attemptNumber: number) => Promise<T>,
  options: { env?: RetryEnvironment; beforeRetry?: (err: unknown) => Promise<void> | void } = {},
): Promise<T> {
  const env = options.env ?? realRetryEnvironment;
  const startedMs = env.nowMs();
  for (let attempts = 1; ; attempts += 1) {
    try {
      return await attempt(attempts);
    } catch (err) {
      const decision = decideRetry(policy, err, attempts, env.nowMs() - startedMs, env.random());
      if (!decision.retry) throw err;
      await env.sleep(decision.delayMs);
      await options.beforeRetry?.(err);
    }
  }
}
