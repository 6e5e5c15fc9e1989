// The record states of one share group on one partition (the "share partition"), as a pure state
// machine: no clocks, timers, I/O or randomness. Time is wall-clock ms since the Unix epoch, passed in
// (deadlines and delays are persisted, so the next leader must read them the same way; brokers are
// assumed to have synchronised clocks). The rules are those of share-design.md "Record lifecycle".
//
// Choices where the spec leaves room (the adapter may rely on them):
// - A lock is held while nowMs < lockDeadlineMs; at nowMs >= lockDeadlineMs it has expired.
// - acquire(), acknowledge() and hasAcquirable() run expire(nowMs) first, so expired locks are taken
//   back (a change: version moves) before anything is handed out or acknowledged.
// - A delayed record (available-after > 0) becomes acquirable at nowMs >= available-after.
// - An available record whose delivery count already reached maxDeliveryAttempts (possible only after
//   setSettings lowered it, or in a loaded state) is dead-lettered by acquire() instead of delivered, so
//   no record is ever delivered more than maxDeliveryAttempts times.
// - renew with lockDurationMs <= 0 reuses the duration given to acquire() (defaultLockDurationMs for a
//   lock loaded from a persisted state, whose duration is not persisted). Its outcome's lockDeadlineMs is
//   the earliest new deadline of the run.
// - Dead-letter reasons: reject -> reason or "rejected"; release at the last attempt -> reason, else the
//   previous failure, else "released after N deliveries"; expiry -> "acquisition lock expired".
// - summary() counts are disjoint and add up to endOffset - startOffset: `available` = acquirable now,
//   `delayed` = available but waiting for its available-after (as of the last call given a time).
// - nextWakeMs() is the earliest lock deadline or available-after not yet acted on (it may already be
//   in the past when the caller has not called expire()/acquire() since).
// - create() clamps a loaded state to the log: start = max(logStart, min(state.start, logEnd)),
//   end = max(start, min(state.end, logEnd)); ranges outside are dropped. A loaded window larger than
//   maxWindowRecords (the limit was lowered) is kept; windowRoom() is 0 until it shrinks. A malformed
//   loaded state (unsorted/overlapping ranges, unknown states) is a broken invariant: it throws.
// - version starts at 0 after create() (clamping a loaded state is not a change worth a write).
//
// Efficiency: records live in a ring of typed arrays indexed by "seq" = offset - origin (a safe
// integer). acquire() starts at a cursor below which no record is acquirable, and the cursor only moves
// back when a record becomes acquirable again; delays and lock deadlines sit in min-heaps, so expire()
// and the delay check touch only due records.
import { InvariantError } from "@runnel/common";
import { ShareRecordState, type ShareRecordRange, type SharePartitionState } from "@runnel/proto";
import {
  defaultShareLimits,
  type AckOutcome,
  type Acknowledgement,
  type AcquiredRun,
  type AdmittedRun,
  type DeadLetterCandidate,
  type ShareLimits,
  type ShareSettings,
} from "./types.js";

/** Lock duration assumed for renew (with no duration given) of a lock loaded from a persisted state. */
export const defaultLockDurationMs = 30_000;
/** Why the broker took a record back from a member. */
export const lockExpiredReason = "acquisition lock expired";
/** A heap may hold this many stale entries per window slot before it is rebuilt from live ones. */
const staleHeapEntriesPerSlot = 4;

const AVAILABLE = ShareRecordState.SHARE_RECORD_AVAILABLE;
const ACQUIRED = ShareRecordState.SHARE_RECORD_ACQUIRED;
const ARCHIVED = ShareRecordState.SHARE_RECORD_ARCHIVED;
const DEAD_LETTERING = ShareRecordState.SHARE_RECORD_DEAD_LETTERING;

export interface SharePartitionOptions {
  state: SharePartitionState | undefined;
  logStartOffset: bigint;
  logEndOffset: bigint;
  settings: ShareSettings;
  limits?: ShareLimits;
  /** "topic-0": names the partition in invariant messages. */
  partition: string;
}

export interface ShareSummary {
  available: number;
  acquired: number;
  archived: number;
  deadLettering: number;
  delayed: number;
}

/** A binary min-heap of (key, seq) pairs; entries may go stale and are checked when popped. */
class MinHeap {
  private keys: number[] = [];
  private seqs: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  peekKey(): number | undefined {
    return this.keys[0];
  }

  peekSeq(): number | undefined {
    return this.seqs[0];
  }

  push(key: number, seq: number): void {
    const keys = this.keys;
    const seqs = this.seqs;
    let i = keys.length;
    keys.push(key);
    seqs.push(seq);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pk = keys[parent]!;
      if (pk < key || (pk === key && seqs[parent]! <= seq)) break;
      keys[i] = pk;
      seqs[i] = seqs[parent]!;
      i = parent;
    }
    keys[i] = key;
    seqs[i] = seq;
  }

  pop(): void {
    const keys = this.keys;
    const seqs = this.seqs;
    const lastKey = keys.pop()!;
    const lastSeq = seqs.pop()!;
    const n = keys.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && (keys[r]! < keys[l]! || (keys[r] === keys[l] && seqs[r]! < seqs[l]!))) c = r;
      if (lastKey < keys[c]! || (lastKey === keys[c] && lastSeq <= seqs[c]!)) break;
      keys[i] = keys[c]!;
      seqs[i] = seqs[c]!;
      i = c;
    }
    keys[i] = lastKey;
    seqs[i] = lastSeq;
  }

  /** Keeps only the entries `live` accepts. */
  rebuild(live: (key: number, seq: number) => boolean): void {
    const keys = this.keys;
    const seqs = this.seqs;
    this.keys = [];
    this.seqs = [];
    for (let i = 0; i < keys.length; i++) if (live(keys[i]!, seqs[i]!)) this.push(keys[i]!, seqs[i]!);
  }
}

export class SharePartition {
  readonly partition: string;
  private settings: ShareSettings;
  private readonly limits: ShareLimits;
  /** Ring capacity: at least maxWindowRecords. */
  private readonly capacity: number;
  /** The offset of seq 0. */
  private readonly origin: bigint;
  private startSeq: number;
  private endSeq: number;
  /** No acquirable (ready) record has a seq below it; >= startSeq. */
  private cursorSeq: number;
  private versionValue = 0;

  // Per record, indexed by seq % capacity.
  private readonly stateOf: Uint8Array;
  /** 1 when available but waiting for its available-after (not yet promoted by a call given a time). */
  private readonly delayedOf: Uint8Array;
  private readonly deliveriesOf: Int32Array;
  private readonly deadlineOf: Float64Array;
  private readonly availableAfterOf: Float64Array;
  /** Lock duration of the current acquisition (for renew without a duration); not persisted. */
  private readonly lockDurationOf: Float64Array;
  private readonly memberOf: string[];
  private readonly failureOf: string[];

  private readyCount = 0;
  private delayedCount = 0;
  private acquiredCount = 0;
  private archivedCount = 0;
  private deadLetteringCount = 0;
  private readonly acquiredByMember = new Map<string, number>();
  private readonly delayHeap = new MinHeap();
  private readonly deadlineHeap = new MinHeap();

  private constructor(opts: {
    partition: string;
    settings: ShareSettings;
    limits: ShareLimits;
    capacity: number;
    start: bigint;
  }) {
    this.partition = opts.partition;
    this.settings = { ...opts.settings };
    this.limits = { ...opts.limits };
    this.capacity = opts.capacity;
    this.origin = opts.start;
    this.startSeq = 0;
    this.endSeq = 0;
    this.cursorSeq = 0;
    const n = opts.capacity;
    this.stateOf = new Uint8Array(n);
    this.delayedOf = new Uint8Array(n);
    this.deliveriesOf = new Int32Array(n);
    this.deadlineOf = new Float64Array(n);
    this.availableAfterOf = new Float64Array(n);
    this.lockDurationOf = new Float64Array(n);
    this.memberOf = new Array<string>(n).fill("");
    this.failureOf = new Array<string>(n).fill("");
  }

  static create(opts: SharePartitionOptions): SharePartition {
    const limits = opts.limits ?? defaultShareLimits;
    const name = opts.partition;
    check(Number.isSafeInteger(limits.maxWindowRecords) && limits.maxWindowRecords > 0, name, () => `maxWindowRecords must be a positive integer, got ${limits.maxWindowRecords}`);
    check(Number.isSafeInteger(limits.maxAcquiredRecordsPerMember) && limits.maxAcquiredRecordsPerMember > 0, name, () => `maxAcquiredRecordsPerMember must be a positive integer, got ${limits.maxAcquiredRecordsPerMember}`);
    checkSettings(opts.settings, name);
    check(opts.logStartOffset >= 0n && opts.logStartOffset <= opts.logEndOffset, name, () => `log start offset ${opts.logStartOffset} must be in [0, log end offset ${opts.logEndOffset}]`);
    const loaded = opts.state;
    if (loaded === undefined) {
      return new SharePartition({ partition: name, settings: opts.settings, limits, capacity: limits.maxWindowRecords, start: opts.logStartOffset });
    }
    check(loaded.startOffset <= loaded.endOffset, name, () => `loaded state has start offset ${loaded.startOffset} above end offset ${loaded.endOffset}`);
    const start = maxBig(opts.logStartOffset, minBig(loaded.startOffset, opts.logEndOffset));
    const end = maxBig(start, minBig(loaded.endOffset, opts.logEndOffset));
    const windowRecords = end - start;
    check(windowRecords <= BigInt(Number.MAX_SAFE_INTEGER), name, () => `loaded window [${start}, ${end}) is too large`);
    const sp = new SharePartition({
      partition: name,
      settings: opts.settings,
      limits,
      capacity: Math.max(limits.maxWindowRecords, Number(windowRecords)),
      start,
    });
    sp.endSeq = Number(windowRecords);
    for (let seq = 0; seq < sp.endSeq; seq++) sp.initAvailable(seq, 0);
    let previousLast = -1n;
    for (const r of loaded.ranges) {
      check(r.firstOffset <= r.lastOffset, name, () => `loaded range [${r.firstOffset}, ${r.lastOffset}] is empty`);
      check(r.firstOffset > previousLast, name, () => `loaded ranges are not sorted or overlap at offset ${r.firstOffset} (previous range ends at ${previousLast})`);
      check(r.firstOffset >= loaded.startOffset && r.lastOffset < loaded.endOffset, name, () => `loaded range [${r.firstOffset}, ${r.lastOffset}] is outside the loaded window [${loaded.startOffset}, ${loaded.endOffset})`);
      check(r.deliveryCount >= 0, name, () => `loaded range [${r.firstOffset}, ${r.lastOffset}] has delivery count ${r.deliveryCount}`);
      check(r.state === AVAILABLE || r.state === ACQUIRED || r.state === ARCHIVED || r.state === DEAD_LETTERING, name, () => `loaded range [${r.firstOffset}, ${r.lastOffset}] has unknown state ${r.state}`);
      check(r.state !== ACQUIRED || r.memberId !== "", name, () => `loaded range [${r.firstOffset}, ${r.lastOffset}] is acquired by no member`);
      previousLast = r.lastOffset;
      const first = maxBig(r.firstOffset, start);
      const last = minBig(r.lastOffset, end - 1n);
      if (first > last) continue;
      for (let seq = sp.seqOf(first), lastSeq = sp.seqOf(last); seq <= lastSeq; seq++) sp.loadRecord(seq, r);
    }
    sp.advanceOverArchived();
    return sp;
  }

  get startOffset(): bigint {
    return this.origin + BigInt(this.startSeq);
  }

  get endOffset(): bigint {
    return this.origin + BigInt(this.endSeq);
  }

  /** Bumped by every change; the adapter persists when it differs from the last persisted version. */
  get version(): number {
    return this.versionValue;
  }

  setSettings(settings: ShareSettings): void {
    checkSettings(settings, this.partition);
    this.settings = { ...settings };
  }

  /** Records admit() may still take. */
  windowRoom(): number {
    return Math.max(0, this.limits.maxWindowRecords - (this.endSeq - this.startSeq));
  }

  /** Runs contiguous, starting at endOffset; total <= windowRoom() (throws InvariantError otherwise). */
  admit(runs: readonly AdmittedRun[]): void {
    if (runs.length === 0) return;
    let expected = this.endOffset;
    let total = 0n;
    for (const run of runs) {
      check(run.firstOffset === expected, this.partition, () => `admitted run [${run.firstOffset}, ${run.lastOffset}] does not start at ${expected} (end offset ${this.endOffset})`);
      check(run.lastOffset >= run.firstOffset, this.partition, () => `admitted run [${run.firstOffset}, ${run.lastOffset}] is empty`);
      total += run.lastOffset - run.firstOffset + 1n;
      expected = run.lastOffset + 1n;
    }
    const room = this.windowRoom();
    check(total <= BigInt(room), this.partition, () => `admitting ${total} records at ${this.endOffset} exceeds the window room ${room} (window [${this.startOffset}, ${this.endOffset}), maxWindowRecords ${this.limits.maxWindowRecords})`);
    check(Number.isSafeInteger(this.endSeq + Number(total)), this.partition, () => `offset ${expected} is too far from the origin ${this.origin}`);
    for (const run of runs) {
      const notBeforeMs = run.notBeforeMs > 0 && Number.isFinite(run.notBeforeMs) ? run.notBeforeMs : 0;
      for (let n = Number(run.lastOffset - run.firstOffset) + 1; n > 0; n--) {
        this.initAvailable(this.endSeq, notBeforeMs);
        this.endSeq++;
      }
    }
    this.assertWindow();
    this.versionValue++;
  }

  /** Records below logStartOffset are no longer retained: they count as archived. */
  advanceLogStart(logStartOffset: bigint): void {
    if (logStartOffset <= this.startOffset) return;
    const newStartSeq = this.seqOf(logStartOffset);
    check(Number.isSafeInteger(newStartSeq), this.partition, () => `log start offset ${logStartOffset} is too far from the origin ${this.origin}`);
    const dropUntil = Math.min(newStartSeq, this.endSeq);
    for (let seq = this.startSeq; seq < dropUntil; seq++) this.uncount(this.pos(seq));
    this.startSeq = newStartSeq;
    if (this.endSeq < newStartSeq) this.endSeq = newStartSeq;
    if (this.cursorSeq < this.startSeq) this.cursorSeq = this.startSeq;
    this.advanceOverArchived();
    this.assertWindow();
    this.versionValue++;
  }

  /**
   * Hands out the lowest-offset acquirable records (expire(nowMs) first): at most maxRecords and at
   * most maxAcquiredRecordsPerMember minus what the member already holds.
   */
  acquire(memberId: string, maxRecords: number, nowMs: number, lockDurationMs: number): AcquiredRun[] {
    check(memberId !== "", this.partition, () => "acquire needs a member id");
    check(Number.isFinite(nowMs), this.partition, () => `acquire at non-finite time ${nowMs}`);
    check(lockDurationMs > 0 && Number.isFinite(lockDurationMs), this.partition, () => `acquire with lock duration ${lockDurationMs} ms`);
    this.expire(nowMs);
    this.promoteDelayed(nowMs);
    const limit = Math.min(maxRecords, this.limits.maxAcquiredRecordsPerMember - this.acquiredBy(memberId));
    const runs: AcquiredRun[] = [];
    if (limit <= 0 || this.readyCount === 0) return runs;
    const deadline = nowMs + lockDurationMs;
    const maxAttempts = this.settings.maxDeliveryAttempts;
    let taken = 0;
    let changed = false;
    let runFirstSeq = -1;
    let runLastSeq = -1;
    let runCount = 0;
    let seq = this.cursorSeq;
    // Everything this loop passes ends up not acquirable now (handed out, dead-lettered, held, settled
    // or delayed), so the cursor may move to where it stops; a delayed record lowers it again when its
    // time comes (promoteDelayed), as does any record that becomes available (setAvailableAfter).
    for (; seq < this.endSeq && taken < limit && this.readyCount > 0; seq++) {
      const p = this.pos(seq);
      if (this.stateOf[p] !== AVAILABLE || this.delayedOf[p] === 1) continue;
      changed = true;
      if (this.deliveriesOf[p]! >= maxAttempts) {
        const reason = this.failureOf[p] || `delivered ${this.deliveriesOf[p]} times (max.delivery.attempts ${maxAttempts})`;
        this.toDeadLettering(p, reason);
        continue;
      }
      const count = this.deliveriesOf[p]! + 1;
      this.toAcquired(seq, p, memberId, deadline, lockDurationMs);
      this.deliveriesOf[p] = count;
      taken++;
      if (runCount === count && runLastSeq === seq - 1) {
        runLastSeq = seq;
      } else {
        if (runFirstSeq >= 0) runs.push(this.acquiredRun(runFirstSeq, runLastSeq, runCount));
        runFirstSeq = seq;
        runLastSeq = seq;
        runCount = count;
      }
    }
    if (runFirstSeq >= 0) runs.push(this.acquiredRun(runFirstSeq, runLastSeq, runCount));
    this.cursorSeq = seq;
    if (changed) this.versionValue++;
    return runs;
  }

  /** One outcome per ack, in order; each ack applies to its whole run or not at all (expire(nowMs) first). */
  acknowledge(memberId: string, acks: readonly Acknowledgement[], nowMs: number): AckOutcome[] {
    check(Number.isFinite(nowMs), this.partition, () => `acknowledge at non-finite time ${nowMs}`);
    this.expire(nowMs);
    const outcomes: AckOutcome[] = [];
    let changed = false;
    for (const ack of acks) {
      const problem = this.ackProblem(memberId, ack, nowMs);
      if (problem !== undefined) {
        outcomes.push({ ok: false, message: problem });
        continue;
      }
      changed = true;
      outcomes.push(this.applyAck(ack, nowMs));
    }
    if (changed) {
      this.advanceOverArchived();
      this.versionValue++;
    }
    return outcomes;
  }

  /** Acquired records whose lock deadline has come go back (or to dead-lettering when out of attempts). */
  expire(nowMs: number): void {
    const heap = this.deadlineHeap;
    let changed = false;
    for (let key = heap.peekKey(); key !== undefined && key <= nowMs; key = heap.peekKey()) {
      const seq = heap.peekSeq()!;
      heap.pop();
      if (!this.liveDeadline(key, seq)) continue;
      const p = this.pos(seq);
      changed = true;
      if (this.deliveriesOf[p]! >= this.settings.maxDeliveryAttempts) this.toDeadLettering(p, lockExpiredReason);
      else this.toAvailable(seq, p, 0, lockExpiredReason);
    }
    if (changed) this.versionValue++;
  }

  /** Every dead-lettering record, offset order. */
  deadLetterCandidates(): DeadLetterCandidate[] {
    const out: DeadLetterCandidate[] = [];
    for (let seq = this.startSeq; seq < this.endSeq && out.length < this.deadLetteringCount; seq++) {
      const p = this.pos(seq);
      if (this.stateOf[p] !== DEAD_LETTERING) continue;
      out.push({ offset: this.offsetOf(seq), deliveryCount: this.deliveriesOf[p]!, reason: this.failureOf[p]! });
    }
    return out;
  }

  /** Dead-lettering -> archived (ignores offsets no longer dead-lettering). */
  deadLettered(offsets: readonly bigint[]): void {
    let changed = false;
    for (const offset of offsets) {
      if (offset < this.startOffset || offset >= this.endOffset) continue;
      const seq = this.seqOf(offset);
      const p = this.pos(seq);
      if (this.stateOf[p] !== DEAD_LETTERING) continue;
      this.toArchived(p);
      changed = true;
    }
    if (changed) {
      this.advanceOverArchived();
      this.versionValue++;
    }
  }

  acquiredBy(memberId: string): number {
    return this.acquiredByMember.get(memberId) ?? 0;
  }

  /**
   * Some available record with available-after <= nowMs (expire(nowMs) first). May say true when
   * acquire() would dead-letter that record instead (only after maxDeliveryAttempts was lowered).
   */
  hasAcquirable(nowMs: number): boolean {
    this.expire(nowMs);
    this.promoteDelayed(nowMs);
    return this.readyCount > 0;
  }

  /** Earliest lock deadline or available-after not yet acted on, for timers and long polls. */
  nextWakeMs(): number | undefined {
    this.dropStaleTops();
    const a = this.deadlineHeap.peekKey();
    const b = this.delayHeap.peekKey();
    if (a === undefined) return b;
    if (b === undefined) return a;
    return Math.min(a, b);
  }

  /** Range-compressed; available + count 0 + no delay + no failure is left out. */
  toState(): SharePartitionState {
    const ranges: ShareRecordRange[] = [];
    // The open run, as raw fields (compared per record; converted to bigints once per run).
    let runFirst = -1;
    let runLast = -1;
    let state = 0;
    let deliveryCount = 0;
    let member = "";
    let deadline = 0;
    let availableAfter = 0;
    let failure = "";
    const close = (): void => {
      if (runFirst < 0) return;
      ranges.push({
        firstOffset: this.offsetOf(runFirst),
        lastOffset: this.offsetOf(runLast),
        state,
        deliveryCount,
        memberId: member,
        lockDeadlineMs: BigInt(deadline),
        availableAfterMs: BigInt(availableAfter),
        lastFailure: failure,
      });
      runFirst = -1;
    };
    for (let seq = this.startSeq; seq < this.endSeq; seq++) {
      const p = this.pos(seq);
      const s = this.stateOf[p]!;
      const c = this.deliveriesOf[p]!;
      const a = this.availableAfterOf[p]!;
      const f = this.failureOf[p]!;
      if (s === AVAILABLE && c === 0 && a === 0 && f === "") {
        close();
        continue;
      }
      const m = this.memberOf[p]!;
      const d = this.deadlineOf[p]!;
      if (runFirst >= 0 && s === state && c === deliveryCount && m === member && d === deadline && a === availableAfter && f === failure) {
        runLast = seq;
        continue;
      }
      close();
      runFirst = seq;
      runLast = seq;
      state = s;
      deliveryCount = c;
      member = m;
      deadline = d;
      availableAfter = a;
      failure = f;
    }
    close();
    return { startOffset: this.startOffset, endOffset: this.endOffset, ranges };
  }

  summary(): ShareSummary {
    return {
      available: this.readyCount,
      acquired: this.acquiredCount,
      archived: this.archivedCount,
      deadLettering: this.deadLetteringCount,
      delayed: this.delayedCount,
    };
  }

  // ---------------------------------------------------------------------------------------------

  private pos(seq: number): number {
    return seq % this.capacity;
  }

  private seqOf(offset: bigint): number {
    return Number(offset - this.origin);
  }

  private offsetOf(seq: number): bigint {
    return this.origin + BigInt(seq);
  }

  private acquiredRun(firstSeq: number, lastSeq: number, deliveryCount: number): AcquiredRun {
    return { firstOffset: this.offsetOf(firstSeq), lastOffset: this.offsetOf(lastSeq), deliveryCount };
  }

  private ackProblem(memberId: string, ack: Acknowledgement, nowMs: number): string | undefined {
    const { firstOffset, lastOffset } = ack;
    const run = `[${firstOffset}, ${lastOffset}]`;
    if (ack.type !== "accept" && ack.type !== "release" && ack.type !== "reject" && ack.type !== "renew") {
      return `unknown acknowledgement type ${String(ack.type)} for ${run}`;
    }
    if (firstOffset > lastOffset) return `acknowledged run ${run} is empty`;
    if (firstOffset < this.startOffset) {
      return `offset ${firstOffset} of ${this.partition} is settled (below the share start offset ${this.startOffset}), not acquired by member ${memberId}`;
    }
    if (lastOffset >= this.endOffset) {
      const offset = maxBig(firstOffset, this.endOffset);
      return `offset ${offset} of ${this.partition} was never delivered (the share end offset is ${this.endOffset}), not acquired by member ${memberId}`;
    }
    for (let seq = this.seqOf(firstOffset), lastSeq = this.seqOf(lastOffset); seq <= lastSeq; seq++) {
      const p = this.pos(seq);
      const state = this.stateOf[p];
      if (state === ACQUIRED && this.memberOf[p] === memberId && this.deadlineOf[p]! > nowMs) continue;
      const offset = this.offsetOf(seq);
      let why: string;
      if (state === ACQUIRED) why = this.memberOf[p] === memberId ? "its lock has expired" : "it is acquired by another member";
      else if (state === AVAILABLE) why = this.failureOf[p] === lockExpiredReason ? "its lock expired and it went back" : "it is available";
      else if (state === ARCHIVED) why = "it is already settled";
      else why = "it is being dead-lettered";
      return `offset ${offset} of ${this.partition} is not acquired by member ${memberId}: ${why}`;
    }
    return undefined;
  }

  private applyAck(ack: Acknowledgement, nowMs: number): AckOutcome {
    const firstSeq = this.seqOf(ack.firstOffset);
    const lastSeq = this.seqOf(ack.lastOffset);
    const maxAttempts = this.settings.maxDeliveryAttempts;
    let earliestDeadline = Infinity;
    for (let seq = firstSeq; seq <= lastSeq; seq++) {
      const p = this.pos(seq);
      switch (ack.type) {
        case "accept":
          this.toArchived(p);
          break;
        case "release": {
          const count = this.deliveriesOf[p]!;
          if (count >= maxAttempts) {
            this.toDeadLettering(p, ack.reason || this.failureOf[p] || `released after ${count} deliveries (max.delivery.attempts ${maxAttempts})`);
          } else {
            const delayMs = ack.releaseDelayMs > 0 && Number.isFinite(ack.releaseDelayMs) ? ack.releaseDelayMs : 0;
            this.toAvailable(seq, p, delayMs > 0 ? nowMs + delayMs : 0, ack.reason);
          }
          break;
        }
        case "reject":
          this.toDeadLettering(p, ack.reason || "rejected");
          break;
        case "renew": {
          const durationMs = ack.lockDurationMs > 0 && Number.isFinite(ack.lockDurationMs) ? ack.lockDurationMs : this.lockDurationOf[p]! > 0 ? this.lockDurationOf[p]! : defaultLockDurationMs;
          const deadline = nowMs + durationMs;
          this.deadlineOf[p] = deadline;
          this.lockDurationOf[p] = durationMs;
          this.pushDeadline(deadline, seq);
          if (deadline < earliestDeadline) earliestDeadline = deadline;
          break;
        }
      }
    }
    return ack.type === "renew" ? { ok: true, lockDeadlineMs: earliestDeadline } : { ok: true };
  }

  /** Fresh record at seq: available, never delivered. */
  private initAvailable(seq: number, availableAfterMs: number): void {
    const p = this.pos(seq);
    this.stateOf[p] = AVAILABLE;
    this.deliveriesOf[p] = 0;
    this.deadlineOf[p] = 0;
    this.lockDurationOf[p] = 0;
    this.memberOf[p] = "";
    this.failureOf[p] = "";
    this.setAvailableAfter(seq, p, availableAfterMs);
  }

  private loadRecord(seq: number, r: ShareRecordRange): void {
    const p = this.pos(seq);
    this.uncount(p);
    this.deliveriesOf[p] = r.deliveryCount;
    this.failureOf[p] = r.lastFailure;
    this.memberOf[p] = "";
    this.deadlineOf[p] = 0;
    this.lockDurationOf[p] = 0;
    switch (r.state) {
      case AVAILABLE:
        this.stateOf[p] = AVAILABLE;
        this.setAvailableAfter(seq, p, r.availableAfterMs > 0n ? Number(r.availableAfterMs) : 0);
        break;
      case ACQUIRED:
        this.toAcquired(seq, p, r.memberId, Number(r.lockDeadlineMs), 0);
        break;
      case ARCHIVED:
        this.toArchived(p);
        break;
      default:
        this.toDeadLettering(p, r.lastFailure);
        break;
    }
  }

  /** Sets available-after of an AVAILABLE record (not yet counted) and counts it as ready or delayed. */
  private setAvailableAfter(seq: number, p: number, availableAfterMs: number): void {
    this.availableAfterOf[p] = availableAfterMs;
    if (availableAfterMs > 0) {
      this.delayedOf[p] = 1;
      this.delayedCount++;
      this.pushDelay(availableAfterMs, seq);
    } else {
      this.delayedOf[p] = 0;
      this.readyCount++;
      if (seq < this.cursorSeq) this.cursorSeq = seq;
    }
  }

  /** Takes the record at p out of the counters of its current state (before a transition or drop). */
  private uncount(p: number): void {
    switch (this.stateOf[p]) {
      case AVAILABLE:
        if (this.delayedOf[p] === 1) this.delayedCount--;
        else this.readyCount--;
        this.delayedOf[p] = 0;
        break;
      case ACQUIRED: {
        this.acquiredCount--;
        const member = this.memberOf[p]!;
        const held = (this.acquiredByMember.get(member) ?? 0) - 1;
        if (held > 0) this.acquiredByMember.set(member, held);
        else this.acquiredByMember.delete(member);
        break;
      }
      case ARCHIVED:
        this.archivedCount--;
        break;
      case DEAD_LETTERING:
        this.deadLetteringCount--;
        break;
    }
    this.stateOf[p] = 0;
  }

  private toAvailable(seq: number, p: number, availableAfterMs: number, failure: string): void {
    this.uncount(p);
    this.stateOf[p] = AVAILABLE;
    this.memberOf[p] = "";
    this.deadlineOf[p] = 0;
    this.lockDurationOf[p] = 0;
    this.failureOf[p] = failure;
    this.setAvailableAfter(seq, p, availableAfterMs);
  }

  private toAcquired(seq: number, p: number, memberId: string, deadlineMs: number, lockDurationMs: number): void {
    this.uncount(p);
    this.stateOf[p] = ACQUIRED;
    this.availableAfterOf[p] = 0;
    this.memberOf[p] = memberId;
    this.deadlineOf[p] = deadlineMs;
    this.lockDurationOf[p] = lockDurationMs;
    this.acquiredCount++;
    this.acquiredByMember.set(memberId, (this.acquiredByMember.get(memberId) ?? 0) + 1);
    this.pushDeadline(deadlineMs, seq);
  }

  private toArchived(p: number): void {
    this.uncount(p);
    this.stateOf[p] = ARCHIVED;
    this.availableAfterOf[p] = 0;
    this.memberOf[p] = "";
    this.deadlineOf[p] = 0;
    this.lockDurationOf[p] = 0;
    this.failureOf[p] = "";
    this.archivedCount++;
  }

  private toDeadLettering(p: number, reason: string): void {
    this.uncount(p);
    this.stateOf[p] = DEAD_LETTERING;
    this.availableAfterOf[p] = 0;
    this.memberOf[p] = "";
    this.deadlineOf[p] = 0;
    this.lockDurationOf[p] = 0;
    this.failureOf[p] = reason;
    this.deadLetteringCount++;
  }

  /** The start offset moves over the settled prefix. */
  private advanceOverArchived(): void {
    const before = this.startSeq;
    while (this.startSeq < this.endSeq) {
      const p = this.pos(this.startSeq);
      if (this.stateOf[p] !== ARCHIVED) break;
      this.uncount(p);
      this.startSeq++;
    }
    check(this.startSeq >= before, this.partition, () => `start offset went back from ${this.offsetOf(before)} to ${this.startOffset}`);
    if (this.cursorSeq < this.startSeq) this.cursorSeq = this.startSeq;
  }

  /** Delayed records whose available-after has come become acquirable. */
  private promoteDelayed(nowMs: number): void {
    const heap = this.delayHeap;
    for (let key = heap.peekKey(); key !== undefined && key <= nowMs; key = heap.peekKey()) {
      const seq = heap.peekSeq()!;
      heap.pop();
      if (!this.liveDelay(key, seq)) continue;
      const p = this.pos(seq);
      this.delayedOf[p] = 0;
      this.delayedCount--;
      this.readyCount++;
      if (seq < this.cursorSeq) this.cursorSeq = seq;
    }
  }

  private liveDelay(key: number, seq: number): boolean {
    if (seq < this.startSeq || seq >= this.endSeq) return false;
    const p = this.pos(seq);
    return this.stateOf[p] === AVAILABLE && this.delayedOf[p] === 1 && this.availableAfterOf[p] === key;
  }

  private liveDeadline(key: number, seq: number): boolean {
    if (seq < this.startSeq || seq >= this.endSeq) return false;
    const p = this.pos(seq);
    return this.stateOf[p] === ACQUIRED && this.deadlineOf[p] === key;
  }

  private pushDelay(key: number, seq: number): void {
    this.delayHeap.push(key, seq);
    if (this.delayHeap.size > staleHeapEntriesPerSlot * this.capacity) this.delayHeap.rebuild((k, s) => this.liveDelay(k, s));
  }

  private pushDeadline(key: number, seq: number): void {
    this.deadlineHeap.push(key, seq);
    if (this.deadlineHeap.size > staleHeapEntriesPerSlot * this.capacity) this.deadlineHeap.rebuild((k, s) => this.liveDeadline(k, s));
  }

  private dropStaleTops(): void {
    for (let k = this.delayHeap.peekKey(); k !== undefined && !this.liveDelay(k, this.delayHeap.peekSeq()!); k = this.delayHeap.peekKey()) this.delayHeap.pop();
    for (let k = this.deadlineHeap.peekKey(); k !== undefined && !this.liveDeadline(k, this.deadlineHeap.peekSeq()!); k = this.deadlineHeap.peekKey()) this.deadlineHeap.pop();
  }

  private assertWindow(): void {
    check(this.startSeq <= this.endSeq, this.partition, () => `start offset ${this.startOffset} is above end offset ${this.endOffset}`);
    check(this.endSeq - this.startSeq <= this.capacity, this.partition, () => `window [${this.startOffset}, ${this.endOffset}) holds more than ${this.capacity} records`);
  }
}

function check(condition: boolean, partition: string, message: () => string): asserts condition {
  if (!condition) throw new InvariantError(`share partition ${partition}: ${message()}`);
}

function checkSettings(settings: ShareSettings, partition: string): void {
  check(Number.isSafeInteger(settings.maxDeliveryAttempts) && settings.maxDeliveryAttempts > 0, partition, () => `maxDeliveryAttempts must be a positive integer, got ${settings.maxDeliveryAttempts}`);
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
