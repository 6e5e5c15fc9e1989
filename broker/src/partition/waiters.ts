// Long-poll support: a fetch that finds too little data parks a callback on each partition it reads;
// the partition wakes them all when its high watermark (consumers) or log end offset (followers)
// moves. Bounded: a partition refuses more parked fetches than maxParkedFetchesPerPartition.

/** Fetches that may wait on one partition at once; more are answered at once, without waiting. */
export const maxParkedFetchesPerPartition = 10_000;

export class Waiters {
  private readonly callbacks = new Set<() => void>();

  /** Parks `wake`; returns a function that unparks it, or undefined when the partition is full. */
  park(wake: () => void): (() => void) | undefined {
    if (this.callbacks.size >= maxParkedFetchesPerPartition) return undefined;
    this.callbacks.add(wake);
    return () => this.callbacks.delete(wake);
  }

  wakeAll(): void {
    if (this.callbacks.size === 0) return;
    const all = [...this.callbacks];
    this.callbacks.clear();
    for (const wake of all) wake();
  }

  get size(): number {
    return this.callbacks.size;
  }
}

/**
 * An AbortSignal that fires when the gRPC client cancels `call`, for waitForAny. Call release() once
 * the handler has its answer: grpc-js (1.14) emits "cancelled" after every finished call too, and an
 * abort then would build a DOMException per request for nothing (3% of a busy leader's CPU).
 */
export function abortOnCancel(call: NodeJS.EventEmitter): { signal: AbortSignal; release: () => void } {
  const abort = new AbortController();
  const onCancel = () => abort.abort();
  call.on("cancelled", onCancel);
  return { signal: abort.signal, release: () => call.removeListener("cancelled", onCancel) };
}

/**
 * Waits until any of `waiters` wakes or `timeoutMs` passes. Resolves either way (the caller reads again
 * to see what changed); also resolves at once when `signal` is aborted (the client went away).
 */
export function waitForAny(waiters: readonly Waiters[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
  if (timeoutMs <= 0 || waiters.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const unparks: Array<() => void> = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", finish);
      for (const u of unparks) u();
      resolve();
    };
    const timer = setTimeout(finish, timeoutMs);
    signal?.addEventListener("abort", finish);
    for (const w of waiters) {
      const unpark = w.park(finish);
      if (unpark === undefined) {
        finish();
        return;
      }
      unparks.push(unpark);
    }
  });
}
