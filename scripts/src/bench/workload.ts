// The produce loop: sends records as fast as acknowledgements allow, with at most `windowRecords`
// unacknowledged at a time, until `maxRecords` are sent or `durationMs` has passed, then waits for
// every outstanding acknowledgement. Send latency is measured per record from the send() call to its
// acknowledgement, so it includes time queued in the producer (as Kafka's producer-perf-test does).
// The producer and the clock are passed in, so the loop runs against a fake in a test.

/** Yield to the event loop at least this often while the window has room, so acks and timers run. */
export const yieldEveryRecords = 512;

export interface WorkloadOptions {
  /** Stop sending after this many records. */
  maxRecords: number;
  /** Stop sending once this much time has passed since the first send. */
  durationMs: number;
  /** Unacknowledged records allowed at once. */
  windowRecords: number;
  /** Record values, used round-robin and never mutated (the producer may hold them until encoded). */
  values: readonly Uint8Array[];
}

export interface WorkloadResult {
  sent: number;
  acked: number;
  failed: number;
  firstError: unknown;
  /** From the first send() to the last acknowledgement, in ms. */
  elapsedMs: number;
  /** When sending stopped (limit reached), relative to the first send, in ms. */
  sendingStoppedAtMs: number;
  /** Per acknowledged record, in ms, in acknowledgement order. */
  latenciesMs: Float64Array;
}

export type SendFn = (value: Uint8Array) => Promise<unknown>;

export async function runWorkload(send: SendFn, options: WorkloadOptions, now: () => number): Promise<WorkloadResult> {
  const { maxRecords, durationMs, windowRecords, values } = options;
  if (!(Number.isInteger(maxRecords) && maxRecords >= 1)) throw new RangeError(`maxRecords must be a positive integer, got ${maxRecords}`);
  if (!(Number.isInteger(windowRecords) && windowRecords >= 1)) throw new RangeError(`windowRecords must be a positive integer, got ${windowRecords}`);
  if (!(durationMs > 0)) throw new RangeError(`durationMs must be > 0, got ${durationMs}`);
  if (values.length === 0) throw new RangeError("values must not be empty");

  const latenciesMs = new Float64Array(maxRecords);
  let sent = 0;
  let acked = 0;
  let failed = 0;
  let firstError: unknown;
  let outstanding = 0;
  let lastAckAt = 0;
  let slotWaiter: (() => void) | undefined;
  let drainWaiter: (() => void) | undefined;

  const settle = () => {
    outstanding -= 1;
    if (slotWaiter !== undefined && outstanding < windowRecords) {
      const w = slotWaiter;
      slotWaiter = undefined;
      w();
    }
    if (drainWaiter !== undefined && outstanding === 0) {
      const w = drainWaiter;
      drainWaiter = undefined;
      w();
    }
  };

  const start = now();
  let sendingStoppedAt = start;
  while (sent < maxRecords && failed === 0) {
    const t = now();
    if (t - start >= durationMs) break;
    if (outstanding >= windowRecords) {
      await new Promise<void>((resolve) => (slotWaiter = resolve));
      continue;
    }
    const value = values[sent % values.length]!;
    sent += 1;
    outstanding += 1;
    send(value).then(
      () => {
        const at = now();
        latenciesMs[acked] = at - t;
        acked += 1;
        lastAckAt = at;
        settle();
      },
      (err: unknown) => {
        failed += 1;
        firstError ??= err;
        lastAckAt = now();
        settle();
      },
    );
    if (sent % yieldEveryRecords === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  sendingStoppedAt = now();
  if (outstanding > 0) await new Promise<void>((resolve) => (drainWaiter = resolve));

  return {
    sent,
    acked,
    failed,
    firstError,
    elapsedMs: Math.max(lastAckAt, sendingStoppedAt) - start,
    sendingStoppedAtMs: sendingStoppedAt - start,
    latenciesMs: latenciesMs.subarray(0, acked),
  };
}

/** Sends `count` records one at a time (each waits for the previous acknowledgement): unloaded latency. */
export async function runProbe(send: SendFn, count: number, value: Uint8Array, now: () => number): Promise<Float64Array> {
  const latenciesMs = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t = now();
    await send(value);
    latenciesMs[i] = now() - t;
  }
  return latenciesMs;
}

/** `count` distinct values of `bytes` bytes each, filled from `random` (incompressible-looking payloads). */
export function makeValues(count: number, bytes: number, random: () => number): Uint8Array[] {
  return Array.from({ length: count }, () => {
    const v = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i++) v[i] = Math.floor(random() * 256);
    return v;
  });
}

export interface PacedOptions {
  ratePerSec: number;
  durationMs: number;
  /** Unacknowledged records allowed at once; past it the loop waits (and falls behind the schedule). */
  windowRecords: number;
  /** Builds the value of record `i` (called at its send time, so it can carry a timestamp). */
  makeValue: (i: number) => Uint8Array;
}

export interface PacedResult {
  sent: number;
  acked: number;
  failed: number;
  firstError: unknown;
  elapsedMs: number;
}

/**
 * Sends at a fixed rate: by elapsed time t, round(t × rate) records are due; each wake-up sends the
 * ones due (a catch-up burst after a late timer keeps the average rate). Waits for every
 * acknowledgement at the end. `sleep` is passed in so the loop can run against a fake clock.
 */
export async function runPaced(send: SendFn, options: PacedOptions, now: () => number, sleep: (ms: number) => Promise<void>): Promise<PacedResult> {
  const { ratePerSec, durationMs, windowRecords, makeValue } = options;
  if (!(ratePerSec > 0)) throw new RangeError(`ratePerSec must be > 0, got ${ratePerSec}`);
  const total = Math.floor((ratePerSec * durationMs) / 1000);
  let sent = 0;
  let acked = 0;
  let failed = 0;
  let firstError: unknown;
  let outstanding = 0;
  const start = now();
  while (sent < total && failed === 0) {
    const due = Math.min(total, Math.floor(((now() - start) * ratePerSec) / 1000) + 1);
    while (sent < due && outstanding < windowRecords) {
      const value = makeValue(sent);
      sent += 1;
      outstanding += 1;
      send(value).then(
        () => { acked += 1; outstanding -= 1; },
        (err: unknown) => { failed += 1; firstError ??= err; outstanding -= 1; },
      );
    }
    await sleep(1);
  }
  while (outstanding > 0) await sleep(1);
  return { sent, acked, failed, firstError, elapsedMs: now() - start };
}

/** Counts deliveries and lets a workload wait (bounded) until a number is reached. */
export class DeliveryCounter {
  count = 0;
  /** Time of the latest delivery (by the clock passed to deliver). */
  lastAtMs = 0;
  private waiters: Array<{ target: number; resolve: () => void }> = [];

  deliver(atMs: number): void {
    this.count += 1;
    this.lastAtMs = atMs;
    if (this.waiters.length > 0) {
      this.waiters = this.waiters.filter((w) => {
        if (this.count < w.target) return true;
        w.resolve();
        return false;
      });
    }
  }

  /** Resolves true once `target` deliveries have been counted, false after `timeoutMs`. */
  waitFor(target: number, timeoutMs: number): Promise<boolean> {
    if (this.count >= target) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = { target, resolve: () => { clearTimeout(timer); resolve(true); } };
      this.waiters.push(waiter);
    });
  }
}
