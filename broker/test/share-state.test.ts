// The share-partition record lifecycle (share-design.md "Record lifecycle"), rule by rule, then a seeded
// simulation with several members, random acknowledgements, lock expiries and failovers (toState() +
// create() on a "new leader") checked against a model of what each member was promised.
import { InvariantError } from "@runnel/common";
import { ShareRecordState, type SharePartitionState } from "@runnel/proto";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../src/replication/state/sim.js";
import {
  SharePartition,
  defaultLockDurationMs,
  lockExpiredReason,
  type Acknowledgement,
  type AckType,
  type AdmittedRun,
  type ShareLimits,
} from "../src/share/state/index.js";

const t0 = 1_700_000_000_000;
const lockMs = 30_000;

function make(
  opts: { maxDeliveryAttempts?: number; limits?: ShareLimits; state?: SharePartitionState; logStartOffset?: bigint; logEndOffset?: bigint } = {},
): SharePartition {
  return SharePartition.create({
    state: opts.state,
    logStartOffset: opts.logStartOffset ?? 0n,
    logEndOffset: opts.logEndOffset ?? 1_000_000n,
    settings: { maxDeliveryAttempts: opts.maxDeliveryAttempts ?? 5 },
    ...(opts.limits ? { limits: opts.limits } : {}),
    partition: "jobs-0",
  });
}

/** Admits [endOffset, endOffset + count) with one not-before time. */
function admit(sp: SharePartition, count: number, notBeforeMs = 0): void {
  const first = sp.endOffset;
  sp.admit([{ firstOffset: first, lastOffset: first + BigInt(count) - 1n, notBeforeMs }]);
}

function ack(type: AckType, first: bigint, last = first, more: Partial<Acknowledgement> = {}): Acknowledgement {
  return { firstOffset: first, lastOffset: last, type, releaseDelayMs: 0, reason: "", lockDurationMs: 0, ...more };
}

function offsets(runs: readonly { firstOffset: bigint; lastOffset: bigint }[]): bigint[] {
  const out: bigint[] = [];
  for (const r of runs) for (let o = r.firstOffset; o <= r.lastOffset; o++) out.push(o);
  return out;
}

/** Restores the state on a "new leader". */
function failover(sp: SharePartition, maxDeliveryAttempts = 5, limits?: ShareLimits): SharePartition {
  return make({ state: sp.toState(), maxDeliveryAttempts, ...(limits ? { limits } : {}) });
}

describe("acquire", () => {
  it("hands out the lowest available offsets first, at most maxRecords, with delivery count 1", () => {
    const sp = make();
    admit(sp, 10);
    expect(sp.acquire("a", 3, t0, lockMs)).toEqual([{ firstOffset: 0n, lastOffset: 2n, deliveryCount: 1 }]);
    expect(sp.acquire("b", 2, t0, lockMs)).toEqual([{ firstOffset: 3n, lastOffset: 4n, deliveryCount: 1 }]);
    expect(sp.acquiredBy("a")).toBe(3);
    expect(sp.acquiredBy("b")).toBe(2);
    expect(sp.summary()).toEqual({ available: 5, acquired: 5, archived: 0, deadLettering: 0, delayed: 0 });
  });

  it("splits runs where delivery counts differ and goes back for released lower offsets", () => {
    const sp = make();
    admit(sp, 6);
    sp.acquire("a", 2, t0, lockMs); // 0..1
    expect(sp.acknowledge("a", [ack("release", 0n, 1n)], t0)).toEqual([{ ok: true }, ]);
    expect(sp.acquire("b", 4, t0, lockMs)).toEqual([
      { firstOffset: 0n, lastOffset: 1n, deliveryCount: 2 },
      { firstOffset: 2n, lastOffset: 3n, deliveryCount: 1 },
    ]);
  });

  it("gives a member at most maxAcquiredRecordsPerMember minus what it holds", () => {
    const sp = make({ limits: { maxWindowRecords: 100, maxAcquiredRecordsPerMember: 4 } });
    admit(sp, 20);
    expect(offsets(sp.acquire("a", 3, t0, lockMs))).toEqual([0n, 1n, 2n]);
    expect(offsets(sp.acquire("a", 10, t0, lockMs))).toEqual([3n]);
    expect(sp.acquire("a", 10, t0, lockMs)).toEqual([]);
    expect(offsets(sp.acquire("b", 2, t0, lockMs))).toEqual([4n, 5n]);
    sp.acknowledge("a", [ack("accept", 0n, 1n)], t0);
    expect(offsets(sp.acquire("a", 10, t0, lockMs))).toEqual([6n, 7n]);
  });

  it("does not hand out a record before its not-before time", () => {
    const sp = make();
    admit(sp, 2, t0 + 5_000);
    admit(sp, 1);
    expect(sp.hasAcquirable(t0)).toBe(true);
    expect(offsets(sp.acquire("a", 10, t0, lockMs))).toEqual([2n]);
    expect(sp.summary().delayed).toBe(2);
    expect(sp.hasAcquirable(t0 + 4_999)).toBe(false);
    expect(sp.acquire("a", 10, t0 + 4_999, lockMs)).toEqual([]);
    expect(sp.nextWakeMs()).toBe(t0 + 5_000);
    expect(sp.hasAcquirable(t0 + 5_000)).toBe(true);
    expect(offsets(sp.acquire("a", 10, t0 + 5_000, lockMs))).toEqual([0n, 1n]);
  });

  it("never hands out a record another member holds, and nextWakeMs follows the earliest lock deadline", () => {
    const sp = make();
    admit(sp, 2);
    sp.acquire("a", 1, t0, 1_000);
    sp.acquire("b", 1, t0, 2_000);
    expect(sp.acquire("c", 10, t0 + 999, lockMs)).toEqual([]);
    expect(sp.hasAcquirable(t0 + 999)).toBe(false);
    expect(sp.nextWakeMs()).toBe(t0 + 1_000);
    expect(sp.acquire("c", 10, t0 + 1_000, lockMs)).toEqual([{ firstOffset: 0n, lastOffset: 0n, deliveryCount: 2 }]);
    expect(sp.nextWakeMs()).toBe(t0 + 2_000);
  });

  it("dead-letters instead of delivering a record whose count already reached a lowered maxDeliveryAttempts", () => {
    const sp = make({ maxDeliveryAttempts: 5 });
    admit(sp, 2);
    for (let i = 0; i < 3; i++) {
      sp.acquire("a", 1, t0, lockMs);
      sp.acknowledge("a", [ack("release", 0n, 0n, { reason: `try ${i}` })], t0);
    }
    sp.setSettings({ maxDeliveryAttempts: 3 });
    expect(sp.acquire("a", 10, t0, lockMs)).toEqual([{ firstOffset: 1n, lastOffset: 1n, deliveryCount: 1 }]);
    expect(sp.deadLetterCandidates()).toEqual([{ offset: 0n, deliveryCount: 3, reason: "try 2" }]);
  });
});

describe("acknowledge", () => {
  it("accept archives and the start offset advances over the archived prefix only", () => {
    const sp = make();
    admit(sp, 5);
    sp.acquire("a", 5, t0, lockMs);
    const v = sp.version;
    expect(sp.acknowledge("a", [ack("accept", 2n, 3n)], t0)).toEqual([{ ok: true }]);
    expect(sp.version).toBeGreaterThan(v);
    expect(sp.startOffset).toBe(0n);
    expect(sp.summary()).toMatchObject({ archived: 2, acquired: 3 });
    expect(sp.acknowledge("a", [ack("accept", 0n, 1n)], t0)).toEqual([{ ok: true }]);
    expect(sp.startOffset).toBe(4n);
    expect(sp.summary()).toEqual({ available: 0, acquired: 1, archived: 0, deadLettering: 0, delayed: 0 });
    expect(sp.acknowledge("a", [ack("accept", 2n)], t0)).toEqual([{ ok: false, message: expect.stringContaining("offset 2 of jobs-0 is settled") }]);
  });

  it("release makes records available after the delay with the reason as last failure", () => {
    const sp = make();
    admit(sp, 3);
    sp.acquire("a", 3, t0, lockMs);
    expect(sp.acknowledge("a", [ack("release", 0n, 1n, { releaseDelayMs: 1_000, reason: "busy" }), ack("release", 2n, 2n)], t0)).toEqual([
      { ok: true },
      { ok: true },
    ]);
    const state = sp.toState();
    expect(state.ranges).toEqual([
      { firstOffset: 0n, lastOffset: 1n, state: ShareRecordState.SHARE_RECORD_AVAILABLE, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: BigInt(t0 + 1_000), lastFailure: "busy" },
      { firstOffset: 2n, lastOffset: 2n, state: ShareRecordState.SHARE_RECORD_AVAILABLE, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: "" },
    ]);
    expect(sp.acquire("b", 10, t0 + 999, lockMs)).toEqual([{ firstOffset: 2n, lastOffset: 2n, deliveryCount: 2 }]);
    expect(sp.acquire("b", 10, t0 + 1_000, lockMs)).toEqual([{ firstOffset: 0n, lastOffset: 1n, deliveryCount: 2 }]);
  });

  it("release at the last attempt dead-letters with the reason given", () => {
    const sp = make({ maxDeliveryAttempts: 2 });
    admit(sp, 1);
    sp.acquire("a", 1, t0, lockMs);
    sp.acknowledge("a", [ack("release", 0n, 0n, { reason: "first" })], t0);
    expect(sp.acquire("a", 1, t0, lockMs)).toEqual([{ firstOffset: 0n, lastOffset: 0n, deliveryCount: 2 }]);
    expect(sp.acknowledge("a", [ack("release", 0n, 0n, { reason: "second", releaseDelayMs: 5 })], t0)).toEqual([{ ok: true }]);
    expect(sp.deadLetterCandidates()).toEqual([{ offset: 0n, deliveryCount: 2, reason: "second" }]);
    expect(sp.acquire("a", 1, t0 + 10, lockMs)).toEqual([]);
  });

  it("reject dead-letters now; deadLettered archives only dead-lettering records and moves the start", () => {
    const sp = make();
    admit(sp, 4);
    sp.acquire("a", 4, t0, lockMs);
    expect(sp.acknowledge("a", [ack("reject", 0n, 1n, { reason: "bad json" }), ack("reject", 3n)], t0)).toEqual([{ ok: true }, { ok: true }]);
    expect(sp.deadLetterCandidates()).toEqual([
      { offset: 0n, deliveryCount: 1, reason: "bad json" },
      { offset: 1n, deliveryCount: 1, reason: "bad json" },
      { offset: 3n, deliveryCount: 1, reason: "rejected" },
    ]);
    expect(sp.summary()).toMatchObject({ deadLettering: 3, acquired: 1 });
    sp.deadLettered([0n, 2n, 99n]); // 2 is acquired, 99 outside: ignored
    expect(sp.startOffset).toBe(1n);
    expect(sp.summary()).toMatchObject({ deadLettering: 2, acquired: 1 });
    sp.deadLettered([1n, 3n]);
    expect(sp.startOffset).toBe(2n);
    expect(sp.deadLetterCandidates()).toEqual([]);
    sp.acknowledge("a", [ack("accept", 2n)], t0);
    expect(sp.startOffset).toBe(4n);
    expect(sp.startOffset).toBe(sp.endOffset);
  });

  it("renew moves the deadline from now (0 reuses the acquire duration, or the default after a failover)", () => {
    const sp = make();
    admit(sp, 2);
    sp.acquire("a", 2, t0, 1_000);
    expect(sp.acknowledge("a", [ack("renew", 0n, 0n, { lockDurationMs: 5_000 })], t0 + 900)).toEqual([{ ok: true, lockDeadlineMs: t0 + 5_900 }]);
    expect(sp.acknowledge("a", [ack("renew", 1n)], t0 + 900)).toEqual([{ ok: true, lockDeadlineMs: t0 + 1_900 }]);
    expect(sp.acquire("b", 10, t0 + 1_000, lockMs)).toEqual([]); // the old deadline no longer counts
    expect(sp.acknowledge("a", [ack("accept", 1n)], t0 + 1_899)).toEqual([{ ok: true }]);
    const next = failover(sp);
    expect(next.acknowledge("a", [ack("renew", 0n)], t0 + 5_000)).toEqual([{ ok: true, lockDeadlineMs: t0 + 5_000 + defaultLockDurationMs }]);
  });

  it("applies each acknowledgement to its whole run or not at all", () => {
    const sp = make();
    admit(sp, 6);
    sp.acquire("a", 3, t0, lockMs); // 0..2
    sp.acquire("b", 2, t0, lockMs); // 3..4
    const before = sp.toState();
    const v = sp.version;
    const outcomes = sp.acknowledge("a", [ack("accept", 1n, 3n), ack("reject", 0n, 5n), ack("release", 2n, 2n)], t0);
    expect(outcomes[0]).toEqual({ ok: false, message: "offset 3 of jobs-0 is not acquired by member a: it is acquired by another member" });
    expect(outcomes[1]).toMatchObject({ ok: false, message: expect.stringContaining("offset 3") });
    expect(outcomes[2]).toEqual({ ok: true });
    expect(sp.acquiredBy("a")).toBe(2);
    expect(sp.version).toBeGreaterThan(v);
    // Offsets 0 and 1 untouched by the failed runs: still held by a, as before.
    expect(before.ranges[0]).toMatchObject({ firstOffset: 0n, lastOffset: 2n, memberId: "a" });
    expect(sp.toState().ranges[0]).toEqual({ ...before.ranges[0], lastOffset: 1n });
  });

  it("refuses a wrong member, unknown offsets and an empty run; a refused batch is not a change", () => {
    const sp = make();
    admit(sp, 3);
    sp.acquire("a", 2, t0, lockMs);
    const v = sp.version;
    const outcomes = sp.acknowledge("b", [ack("accept", 0n), ack("accept", 2n), ack("accept", 3n, 9n), ack("accept", 1n, 0n)], t0);
    expect(outcomes.map((o) => o.ok)).toEqual([false, false, false, false]);
    expect(outcomes[1]).toEqual({ ok: false, message: "offset 2 of jobs-0 is not acquired by member b: it is available" });
    expect(outcomes[2]).toMatchObject({ message: expect.stringContaining("never delivered") });
    expect(sp.version).toBe(v);
    expect(sp.acquiredBy("a")).toBe(2);
  });

  it("a late acknowledgement after the lock deadline fails, even before anyone called expire()", () => {
    const sp = make();
    admit(sp, 1);
    sp.acquire("a", 1, t0, 1_000);
    expect(sp.acknowledge("a", [ack("accept", 0n)], t0 + 1_000)).toEqual([
      { ok: false, message: "offset 0 of jobs-0 is not acquired by member a: its lock expired and it went back" },
    ]);
    expect(sp.summary()).toMatchObject({ available: 1, acquired: 0 });
    expect(sp.acknowledge("a", [ack("renew", 0n, 0n, { lockDurationMs: 1_000 })], t0 + 1_000)[0]?.ok).toBe(false);
  });
});

describe("programmer errors throw InvariantError naming the partition", () => {
  it("refuses an acquire without member or lock duration, and bad limits or settings", () => {
    const sp = make();
    admit(sp, 1);
    expect(() => sp.acquire("", 1, t0, lockMs)).toThrow(/share partition jobs-0/);
    expect(() => sp.acquire("a", 1, t0, 0)).toThrow(InvariantError);
    expect(() => sp.setSettings({ maxDeliveryAttempts: 0 })).toThrow(InvariantError);
    expect(() => make({ limits: { maxWindowRecords: 0, maxAcquiredRecordsPerMember: 1 } })).toThrow(InvariantError);
    expect(sp.summary().acquired).toBe(0);
  });
});

describe("expire", () => {
  it("takes back expired locks with attempts left as available, with the reason", () => {
    const sp = make({ maxDeliveryAttempts: 3 });
    admit(sp, 2);
    sp.acquire("a", 2, t0, 1_000);
    sp.expire(t0 + 999);
    expect(sp.summary().acquired).toBe(2);
    const v = sp.version;
    sp.expire(t0 + 1_000);
    expect(sp.version).toBeGreaterThan(v);
    expect(sp.summary()).toMatchObject({ available: 2, acquired: 0 });
    expect(sp.acquiredBy("a")).toBe(0);
    expect(sp.toState().ranges).toEqual([
      { firstOffset: 0n, lastOffset: 1n, state: ShareRecordState.SHARE_RECORD_AVAILABLE, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: lockExpiredReason },
    ]);
  });

  it("dead-letters an expired lock without attempts left", () => {
    const sp = make({ maxDeliveryAttempts: 2 });
    admit(sp, 1);
    sp.acquire("a", 1, t0, 1_000);
    sp.expire(t0 + 1_000);
    expect(sp.acquire("b", 1, t0 + 1_000, 1_000)).toEqual([{ firstOffset: 0n, lastOffset: 0n, deliveryCount: 2 }]);
    sp.expire(t0 + 2_000);
    expect(sp.deadLetterCandidates()).toEqual([{ offset: 0n, deliveryCount: 2, reason: lockExpiredReason }]);
    expect(sp.hasAcquirable(t0 + 10_000)).toBe(false);
    expect(sp.nextWakeMs()).toBeUndefined();
  });
});

describe("window and retention", () => {
  it("admits only up to maxWindowRecords and only contiguously from the end offset", () => {
    const sp = make({ limits: { maxWindowRecords: 5, maxAcquiredRecordsPerMember: 100 } });
    expect(sp.windowRoom()).toBe(5);
    admit(sp, 3);
    expect(sp.windowRoom()).toBe(2);
    expect(() => admit(sp, 3)).toThrow(InvariantError);
    expect(() => sp.admit([{ firstOffset: 4n, lastOffset: 4n, notBeforeMs: 0 }])).toThrow(/jobs-0.*does not start at 3/);
    expect(() =>
      sp.admit([
        { firstOffset: 3n, lastOffset: 3n, notBeforeMs: 0 },
        { firstOffset: 5n, lastOffset: 5n, notBeforeMs: 0 },
      ]),
    ).toThrow(InvariantError);
    expect(sp.endOffset).toBe(3n);
    admit(sp, 2);
    expect(sp.windowRoom()).toBe(0);
    sp.acquire("a", 2, t0, lockMs);
    sp.acknowledge("a", [ack("accept", 0n, 1n)], t0);
    expect(sp.windowRoom()).toBe(2);
  });

  it("advanceLogStart drops records below the log start (held ones too) and never goes back", () => {
    const sp = make({ logStartOffset: 10n });
    expect(sp.startOffset).toBe(10n);
    admit(sp, 5); // 10..14
    sp.acquire("a", 3, t0, lockMs); // 10..12
    sp.advanceLogStart(12n);
    expect(sp.startOffset).toBe(12n);
    expect(sp.acquiredBy("a")).toBe(1);
    expect(sp.summary()).toEqual({ available: 2, acquired: 1, archived: 0, deadLettering: 0, delayed: 0 });
    sp.advanceLogStart(11n);
    expect(sp.startOffset).toBe(12n);
    sp.advanceLogStart(20n);
    expect(sp.startOffset).toBe(20n);
    expect(sp.endOffset).toBe(20n);
    expect(sp.summary()).toEqual({ available: 0, acquired: 0, archived: 0, deadLettering: 0, delayed: 0 });
    expect(sp.acquiredBy("a")).toBe(0);
    admit(sp, 1);
    expect(sp.acquire("a", 5, t0, lockMs)).toEqual([{ firstOffset: 20n, lastOffset: 20n, deliveryCount: 1 }]);
  });

  it("advanceLogStart also moves over an archived run just above the new start", () => {
    const sp = make();
    admit(sp, 4);
    sp.acquire("a", 4, t0, lockMs);
    sp.acknowledge("a", [ack("accept", 1n, 2n)], t0);
    sp.advanceLogStart(1n);
    expect(sp.startOffset).toBe(3n);
  });
});

describe("toState / create", () => {
  it("range-compresses equal runs and leaves out fresh available records", () => {
    const sp = make();
    admit(sp, 10);
    admit(sp, 2, t0 + 60_000);
    sp.acquire("a", 3, t0, lockMs); // 0..2
    sp.acquire("b", 2, t0, lockMs); // 3..4
    sp.acknowledge("a", [ack("accept", 1n)], t0);
    const state = sp.toState();
    expect(state.startOffset).toBe(0n);
    expect(state.endOffset).toBe(12n);
    expect(state.ranges.map((r) => [r.firstOffset, r.lastOffset, r.state, r.memberId])).toEqual([
      [0n, 0n, ShareRecordState.SHARE_RECORD_ACQUIRED, "a"],
      [1n, 1n, ShareRecordState.SHARE_RECORD_ARCHIVED, ""],
      [2n, 2n, ShareRecordState.SHARE_RECORD_ACQUIRED, "a"],
      [3n, 4n, ShareRecordState.SHARE_RECORD_ACQUIRED, "b"],
      [10n, 11n, ShareRecordState.SHARE_RECORD_AVAILABLE, ""],
    ]);
    expect(state.ranges[4]?.availableAfterMs).toBe(BigInt(t0 + 60_000));
  });

  it("a state restored on a new leader behaves the same: locks kept until their deadline", () => {
    const sp = make({ maxDeliveryAttempts: 2 });
    admit(sp, 8);
    admit(sp, 1, t0 + 50_000);
    sp.acquire("a", 3, t0, 10_000); // 0..2
    sp.acquire("b", 2, t0, 20_000); // 3..4
    sp.acknowledge("b", [ack("reject", 4n, 4n, { reason: "poison" })], t0);
    sp.acknowledge("a", [ack("accept", 0n)], t0);
    const next = failover(sp, 2);
    expect(next.toState()).toEqual(sp.toState());
    expect(next.summary()).toEqual(sp.summary());
    expect(next.startOffset).toBe(1n);
    expect(next.acquiredBy("a")).toBe(2);
    expect(next.deadLetterCandidates()).toEqual([{ offset: 4n, deliveryCount: 1, reason: "poison" }]);
    // Nobody else gets the held records before the deadline; the holder may still settle them.
    expect(offsets(next.acquire("c", 100, t0 + 9_999, 100_000))).toEqual([5n, 6n, 7n]);
    expect(next.acknowledge("a", [ack("accept", 1n)], t0 + 9_999)).toEqual([{ ok: true }]);
    expect(next.nextWakeMs()).toBe(t0 + 10_000);
    expect(next.acquire("c", 100, t0 + 10_000, lockMs)).toEqual([{ firstOffset: 2n, lastOffset: 2n, deliveryCount: 2 }]);
    expect(next.acknowledge("b", [ack("accept", 3n)], t0 + 19_999)).toEqual([{ ok: true }]);
    expect(next.acquire("c", 100, t0 + 49_999, lockMs)).toEqual([]);
    expect(next.acquire("c", 100, t0 + 50_000, lockMs)).toEqual([{ firstOffset: 8n, lastOffset: 8n, deliveryCount: 1 }]);
  });

  it("clamps a loaded state to the log: start up to the log start, ranges above the log end dropped", () => {
    const sp = make();
    admit(sp, 10);
    sp.acquire("a", 10, t0, lockMs);
    sp.acknowledge("a", [ack("accept", 4n)], t0);
    const state = sp.toState();
    const next = make({ state, logStartOffset: 3n, logEndOffset: 7n });
    expect(next.startOffset).toBe(3n);
    expect(next.endOffset).toBe(7n);
    expect(next.acquiredBy("a")).toBe(3); // 3, 5, 6
    expect(next.toState().ranges.map((r) => [r.firstOffset, r.lastOffset, r.state])).toEqual([
      [3n, 3n, ShareRecordState.SHARE_RECORD_ACQUIRED],
      [4n, 4n, ShareRecordState.SHARE_RECORD_ARCHIVED],
      [5n, 6n, ShareRecordState.SHARE_RECORD_ACQUIRED],
    ]);
    expect(next.windowRoom()).toBe(10_000 - 4);
    expect(next.version).toBe(0);
  });

  it("after an unclean election below the state's start, offsets past the new log end are new records", () => {
    const state: SharePartitionState = { startOffset: 50n, endOffset: 60n, ranges: [] };
    const next = make({ state, logStartOffset: 0n, logEndOffset: 40n });
    expect(next.startOffset).toBe(40n);
    expect(next.endOffset).toBe(40n);
    admit(next, 1);
    expect(offsets(next.acquire("a", 5, t0, lockMs))).toEqual([40n]);
  });

  it("starts an unknown state at the log start offset, and a settled loaded prefix moves the start", () => {
    expect(make({ logStartOffset: 7n, logEndOffset: 9n }).startOffset).toBe(7n);
    const archived = { state: ShareRecordState.SHARE_RECORD_ARCHIVED, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: "" };
    const next = make({ state: { startOffset: 0n, endOffset: 5n, ranges: [{ firstOffset: 0n, lastOffset: 2n, ...archived }] } });
    expect(next.startOffset).toBe(3n);
    expect(next.endOffset).toBe(5n);
  });

  it("refuses a malformed loaded state loudly", () => {
    const r = { state: ShareRecordState.SHARE_RECORD_ARCHIVED, deliveryCount: 1, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: "" };
    const bad: SharePartitionState[] = [
      { startOffset: 0n, endOffset: 9n, ranges: [{ firstOffset: 3n, lastOffset: 4n, ...r }, { firstOffset: 4n, lastOffset: 5n, ...r }] },
      { startOffset: 0n, endOffset: 9n, ranges: [{ firstOffset: 3n, lastOffset: 12n, ...r }] },
      { startOffset: 0n, endOffset: 9n, ranges: [{ firstOffset: 3n, lastOffset: 4n, ...r, state: ShareRecordState.UNRECOGNIZED }] },
      { startOffset: 0n, endOffset: 9n, ranges: [{ firstOffset: 3n, lastOffset: 4n, ...r, state: ShareRecordState.SHARE_RECORD_ACQUIRED }] },
      { startOffset: 9n, endOffset: 3n, ranges: [] },
    ];
    for (const state of bad) expect(() => make({ state }), JSON.stringify(state, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).toThrow(/share partition jobs-0/);
  });
});

// ---------------------------------------------------------------------------------------------
// Seeded simulation


interface Held {
  member: string;
  deadlineMs: number;
}

/** A plain assertion for the simulation's hot loop (vitest's expect is too slow for a million checks). */
function must(condition: boolean, message: () => string): void {
  if (!condition) throw new Error(message());
}

function stateText(state: SharePartitionState): string {
  return JSON.stringify(state, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value));
}

function simulate(seed: number): { accepted: number; deadLettered: number; failovers: number; dropped: number } {
  const random = seededRandom(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const maxDeliveryAttempts = 1 + int(4);
  const limits: ShareLimits = { maxWindowRecords: 20 + int(60), maxAcquiredRecordsPerMember: 3 + int(20) };
  const members = ["m0", "m1", "m2", "m3"].slice(0, 2 + int(3));
  let now = t0;
  let logStart = 0n;
  let logEnd = 0n;
  const notBefore = new Map<bigint, number>(); // offset -> not handed out before (header or release delay)
  const held = new Map<bigint, Held>(); // the model's idea of who holds what
  const deliveries = new Map<bigint, number>();
  const accepted = new Set<bigint>();
  const rejected = new Set<bigint>();
  const deadLettered = new Set<bigint>();
  let dropped = 0;
  let failovers = 0;
  let sp = SharePartition.create({ state: undefined, logStartOffset: 0n, logEndOffset: 0n, settings: { maxDeliveryAttempts }, limits, partition: `sim-${seed}` });
  const where = (o: bigint): string => `seed ${seed} offset ${o} at ${now - t0}`;

  const checkWindow = (): void => {
    const s = sp.summary();
    must(s.available + s.acquired + s.archived + s.deadLettering + s.delayed === Number(sp.endOffset - sp.startOffset), () => `seed ${seed}: summary ${JSON.stringify(s)} does not add up to the window [${sp.startOffset}, ${sp.endOffset})`);
    must(sp.endOffset - sp.startOffset <= BigInt(limits.maxWindowRecords), () => `seed ${seed}: window [${sp.startOffset}, ${sp.endOffset}) over ${limits.maxWindowRecords}`);
  };

  const produce = (n: number): void => {
    for (let i = 0; i < n; i++) {
      if (random() < 0.2) notBefore.set(logEnd, now + int(3_000));
      logEnd++;
    }
  };

  const admitFromLog = (): void => {
    const room = BigInt(sp.windowRoom());
    const end = sp.endOffset + room < logEnd ? sp.endOffset + room : logEnd;
    const runs: AdmittedRun[] = [];
    for (let o = sp.endOffset; o < end; o++) {
      const nb = notBefore.get(o) ?? 0;
      const last = runs[runs.length - 1];
      if (last !== undefined && last.notBeforeMs === nb) last.lastOffset = o;
      else runs.push({ firstOffset: o, lastOffset: o, notBeforeMs: nb });
    }
    sp.admit(runs);
  };

  /** What acquire() must hand out, by the model: the lowest records nobody holds, due, with attempts left. */
  const modelAcquirable = (): bigint[] => {
    const out: bigint[] = [];
    for (let o = sp.startOffset; o < sp.endOffset; o++) {
      if (accepted.has(o) || rejected.has(o) || deadLettered.has(o)) continue;
      const h = held.get(o);
      if (h !== undefined && h.deadlineMs > now) continue;
      if ((notBefore.get(o) ?? 0) > now || (deliveries.get(o) ?? 0) >= maxDeliveryAttempts) continue;
      out.push(o);
    }
    return out;
  };

  const acquire = (member: string, max: number, lockDurationMs: number): bigint[] => {
    const before = sp.startOffset;
    let holds = 0;
    for (const h of held.values()) if (h.member === member && h.deadlineMs > now) holds++;
    const expected = modelAcquirable().slice(0, Math.max(0, Math.min(max, limits.maxAcquiredRecordsPerMember - holds)));
    const runs = sp.acquire(member, max, now, lockDurationMs);
    const handedOut = offsets(runs);
    must(handedOut.join() === expected.join(), () => `seed ${seed} at ${now - t0}: ${member} got [${handedOut.join()}], the lowest acquirable are [${expected.join()}]`);
    const got: bigint[] = [];
    for (const run of runs) {
      for (let o = run.firstOffset; o <= run.lastOffset; o++) {
        const h = held.get(o);
        must(h === undefined || h.deadlineMs <= now, () => `${where(o)}: delivered to ${member} while ${h?.member} holds it`);
        must(now >= (notBefore.get(o) ?? 0), () => `${where(o)}: delivered before its not-before`);
        must(!(accepted.has(o) || deadLettered.has(o)), () => `${where(o)}: delivered after it was settled`);
        const count = (deliveries.get(o) ?? 0) + 1;
        must(run.deliveryCount === count, () => `${where(o)}: delivery count ${run.deliveryCount}, expected ${count}`);
        must(count <= maxDeliveryAttempts, () => `${where(o)}: delivered ${count} > ${maxDeliveryAttempts} times`);
        deliveries.set(o, count);
        held.set(o, { member, deadlineMs: now + lockDurationMs });
        got.push(o);
      }
    }
    must(sp.startOffset >= before, () => `seed ${seed}: start offset went back from ${before} to ${sp.startOffset}`);
    return got;
  };

  const acknowledge = (member: string, first: bigint, last: bigint, type: AckType): void => {
    let expectOk = first <= last;
    for (let o = first; o <= last; o++) {
      const h = held.get(o);
      if (h === undefined || h.member !== member || h.deadlineMs <= now) expectOk = false;
    }
    const delay = int(2) === 0 ? 0 : int(2_000);
    const lockDurationMs = 200 + int(2_000);
    const outcomes = sp.acknowledge(member, [{ firstOffset: first, lastOffset: last, type, releaseDelayMs: delay, reason: `r${int(3)}`, lockDurationMs }], now);
    must(outcomes.length === 1 && outcomes[0]?.ok === expectOk, () => `seed ${seed}: ${type} [${first}, ${last}] by ${member} at ${now - t0}: ${JSON.stringify(outcomes)}, expected ok=${expectOk}`);
    if (!expectOk) return;
    for (let o = first; o <= last; o++) {
      switch (type) {
        case "accept":
          must(!(accepted.has(o)), () => `${where(o)}: accepted twice`);
          accepted.add(o);
          held.delete(o);
          break;
        case "reject":
          rejected.add(o);
          held.delete(o);
          break;
        case "release":
          held.delete(o);
          if (delay > 0) notBefore.set(o, now + delay);
          break;
        case "renew":
          held.set(o, { member, deadlineMs: now + lockDurationMs });
          break;
      }
    }
  };

  const flushDeadLetters = (): void => {
    const candidates = sp.deadLetterCandidates();
    for (const c of candidates) {
      must(!(accepted.has(c.offset)), () => `${where(c.offset)}: dead-lettering an accepted record`);
      must(rejected.has(c.offset) || c.deliveryCount >= maxDeliveryAttempts, () => `${where(c.offset)}: dead-lettered with attempts left`);
      must(c.reason !== "", () => `${where(c.offset)}: dead letter without a reason`);
      // After a failover the new leader may produce a dead letter again (at-least-once): a set.
      deadLettered.add(c.offset);
      held.delete(c.offset);
    }
    sp.deadLettered(candidates.map((c) => c.offset));
  };

  const restart = (): void => {
    const state = sp.toState();
    sp = SharePartition.create({ state, logStartOffset: logStart, logEndOffset: logEnd, settings: { maxDeliveryAttempts }, limits, partition: `sim-${seed}` });
    must(stateText(sp.toState()) === stateText(state), () => `seed ${seed}: the restored state differs from the one written`);
    failovers++;
  };

  // Each member remembers what it was handed (it may act on it late, after the lock expired).
  const handed = new Map<string, bigint[]>(members.map((m) => [m, []]));
  for (let step = 0; step < 1_500; step++) {
    const member = members[int(members.length)]!;
    const mine = handed.get(member)!;
    const action = random();
    if (action < 0.1) produce(1 + int(10));
    else if (action < 0.25) admitFromLog();
    else if (action < 0.45) mine.push(...acquire(member, 1 + int(8), 300 + int(3_000)));
    else if (action < 0.75 && mine.length > 0) {
      const i = int(mine.length);
      const n = 1 + int(Math.min(3, mine.length - i));
      const first = mine[i]!;
      const run = mine.slice(i, i + n);
      const contiguous = run.every((o, k) => o === first + BigInt(k));
      const last = contiguous ? run[run.length - 1]! : first;
      const r = random();
      const type: AckType = r < 0.55 ? "accept" : r < 0.75 ? "release" : r < 0.85 ? "reject" : "renew";
      acknowledge(member, first, last, type);
      if (type !== "renew" || random() < 0.3) mine.splice(i, Number(last - first) + 1);
    } else if (action < 0.85) now += int(1_500);
    else if (action < 0.9) sp.expire(now);
    else if (action < 0.95) flushDeadLetters();
    else if (action < 0.98) restart();
    else if (action < 0.99 && logEnd > logStart) {
      logStart += BigInt(int(Number(logEnd - logStart) / 4 + 1));
      const from = sp.startOffset;
      sp.advanceLogStart(logStart);
      for (let o = from; o < logStart; o++) if (!accepted.has(o) && !deadLettered.has(o)) dropped++;
      for (const o of [...held.keys()]) if (o < logStart) held.delete(o);
    }
    const wake = sp.nextWakeMs();
    must(wake === undefined || Number.isFinite(wake), () => `seed ${seed}: nextWakeMs ${wake}`);
    checkWindow();
  }

  // Members keep accepting: everything below the log end gets settled.
  for (let round = 0; round < 200 && sp.startOffset < logEnd; round++) {
    now += 5_000;
    admitFromLog();
    flushDeadLetters();
    for (const member of members) {
      for (const o of acquire(member, 1_000, 1_000)) acknowledge(member, o, o, "accept");
    }
    if (round % 7 === 3) restart();
    checkWindow();
  }
  flushDeadLetters();
  expect(sp.startOffset, `seed ${seed}: everything settled`).toBe(logEnd);
  for (let o = logStart; o < logEnd; o++) {
    must(accepted.has(o) || deadLettered.has(o), () => `${where(o)}: never settled`);
    must(!(accepted.has(o) && deadLettered.has(o)), () => `${where(o)}: both accepted and dead-lettered`);
  }
  return { accepted: accepted.size, deadLettered: deadLettered.size, failovers, dropped };
}

describe("seeded simulation: members, expiries, failovers", () => {
  it("keeps every promise over 40 seeds", () => {
    let accepted = 0;
    let deadLettered = 0;
    let failovers = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const r = simulate(seed);
      accepted += r.accepted;
      deadLettered += r.deadLettered;
      failovers += r.failovers;
    }
    // The simulation did exercise the paths it claims to check.
    expect(accepted).toBeGreaterThan(1_000);
    expect(deadLettered).toBeGreaterThan(50);
    expect(failovers).toBeGreaterThan(100);
  });
});
