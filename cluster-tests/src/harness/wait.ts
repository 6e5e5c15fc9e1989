// Polling with a deadline: every wait in the harness ends, and when it ends in failure it says what
// it waited for, what it saw last, and where the logs are.

/** Pause between polls of cluster state. */
export const pollIntervalMs = 50;

export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
}

export interface PollOptions {
  timeoutMs: number;
  /** Completes the sentence "... within N ms", e.g. "broker 2 did not register"; a function is evaluated at the deadline. */
  what: string | (() => string);
  /** Appended to the error, e.g. "logs: /tmp/runnel-test-x/broker-2.log". */
  hint?: () => string;
  intervalMs?: number;
}

/**
 * Calls `attempt` until it returns a value other than undefined or the deadline passes. An attempt that
 * throws counts as "not yet"; its error is quoted if the wait times out. `describeLast` says what the
 * last attempt saw ("alive brokers: [1, 3]").
 */
export async function pollUntil<T>(
  attempt: () => Promise<T | undefined> | T | undefined,
  options: PollOptions & { describeLast?: () => string | undefined },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
      lastError = undefined;
    } catch (err) {
      if (err instanceof FatalWaitError) throw err.cause;
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const what = typeof options.what === "string" ? options.what : options.what();
      const parts = [`${what} within ${options.timeoutMs} ms`];
      const last = options.describeLast?.();
      if (last !== undefined) parts.push(last);
      if (lastError !== undefined) parts.push(`last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
      const hint = options.hint?.();
      if (hint !== undefined && hint !== "") parts.push(hint);
      throw new WaitTimeoutError(parts.join("; "));
    }
    await sleep(options.intervalMs ?? pollIntervalMs);
  }
}

/** Thrown from an attempt to stop waiting at once (e.g. the process being waited on has exited). */
export class FatalWaitError extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
