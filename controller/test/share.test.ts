// Share groups on the controller: membership (pure, simulated time), share-state fencing (pure), the
// share-state store (real LMDB: round trip, reload after restart, group commit order, flush failure),
// request validation, and the four RPCs through real gRPC against a controller started in-process.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { Database } from "lmdb";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { channelOptions, createLogger, InvalidRequest } from "@runnel/common";
import {
  type ClusterSnapshot,
  ControllerServiceClient,
  ControllerServiceService,
  ErrorCode,
  type MetadataEvent,
  type SharePartitionState,
  ShareRecordState,
} from "@runnel/proto";
import { type ClusterState, createTopics, deleteTopics, initialState, type MetadataConfig, registerBroker } from "../src/metadata/index.js";
import {
  decodeStoredShareState,
  encodeStoredShareState,
  fenceShareStateCall,
  maxMembersPerShareGroup,
  maxShareGroups,
  ShareMembership,
  ShareStateCorruption,
  ShareStateStore,
} from "../src/share/index.js";
import { maxShareStateRanges, validateDescribeShareGroups, validateShareGroupHeartbeat, validateWriteShareState } from "../src/server/validate.js";
import { startController, type RunningController } from "../src/index.js";
import { ControllerCore } from "../src/server/index.js";
import { MetadataStore } from "../src/store/index.js";

const A = ShareRecordState.SHARE_RECORD_AVAILABLE;
const Q = ShareRecordState.SHARE_RECORD_ACQUIRED;
const X = ShareRecordState.SHARE_RECORD_ARCHIVED;

/** A state with `end - start` records; the first is acquired by m1, the second archived. */
function stateOf(start: bigint, end: bigint): SharePartitionState {
  const ranges = [];
  if (end > start) ranges.push({ firstOffset: start, lastOffset: start, state: Q, deliveryCount: 1, memberId: "m1", lockDeadlineMs: 1_700_000_030_000n, availableAfterMs: 0n, lastFailure: "" });
  if (end > start + 1n) ranges.push({ firstOffset: start + 1n, lastOffset: start + 1n, state: X, deliveryCount: 2, memberId: "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: "boom" });
  return { startOffset: start, endOffset: end, ranges };
}

// ---------------------------------------------------------------------------------------------
describe("share membership (simulated time)", () => {
  const config = { sessionTimeoutMs: 1000, heartbeatIntervalMs: 100 };
  const join = (m: ShareMembership, groupId: string, newMemberId: string, nowMs: number, memberId = "") =>
    m.heartbeat({ groupId, memberId, memberEpoch: 0, subscribedTopicNames: ["jobs"], clientId: "c", newMemberId }, nowMs);

  it("joins with epoch 0 (controller-given id, epoch 1), heartbeats, and leaves with -1", () => {
    const m = new ShareMembership(config);
    const joined = join(m, "g", "id-1", 0);
    expect(joined).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, memberId: "id-1", memberEpoch: 1, heartbeatIntervalMs: 100, event: "joined" });
    const hb = m.heartbeat({ groupId: "g", memberId: "id-1", memberEpoch: 1, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 50);
    expect(hb).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, memberEpoch: 1 });
    // Empty subscription and client id in a heartbeat mean unchanged.
    expect(m.members("g")).toEqual([{ memberId: "id-1", memberEpoch: 1, clientId: "c", subscribedTopicNames: ["jobs"], lastHeartbeatMs: 50 }]);
    expect(m.heartbeat({ groupId: "g", memberId: "id-1", memberEpoch: -1, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 60).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(m.members("g")).toEqual([]);
    expect(m.groupIds()).toEqual([]);
    // A retried leave is not an error.
    expect(m.heartbeat({ groupId: "g", memberId: "id-1", memberEpoch: -1, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 70).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  });

  it("answers UNKNOWN_MEMBER_ID for unknown ids and FENCED_MEMBER_EPOCH for a wrong epoch", () => {
    const m = new ShareMembership(config);
    join(m, "g", "id-1", 0);
    expect(m.heartbeat({ groupId: "g", memberId: "nobody", memberEpoch: 1, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 1).errorCode).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
    expect(m.heartbeat({ groupId: "other", memberId: "id-1", memberEpoch: 1, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 1).errorCode).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
    expect(m.heartbeat({ groupId: "g", memberId: "id-1", memberEpoch: 7, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 1).errorCode).toBe(ErrorCode.FENCED_MEMBER_EPOCH);
  });

  it("a member that rejoins under its own id keeps it; an unknown id on join gets a new one", () => {
    const m = new ShareMembership(config);
    join(m, "g", "id-1", 0);
    expect(join(m, "g", "id-2", 10, "id-1").memberId).toBe("id-1");
    expect(join(m, "g", "id-3", 20, "gone").memberId).toBe("id-3");
    expect(m.members("g").map((x) => x.memberId)).toEqual(["id-1", "id-3"]);
  });

  it("expires a member exactly after one session timeout without heartbeats", () => {
    const m = new ShareMembership(config);
    join(m, "g", "a", 0);
    join(m, "g", "b", 0);
    m.heartbeat({ groupId: "g", memberId: "b", memberEpoch: 1, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 500);
    expect(m.expire(1000)).toEqual([]);
    expect(m.expire(1001)).toEqual([{ groupId: "g", memberId: "a" }]);
    expect(m.memberCount).toBe(1);
    expect(m.expire(1501)).toEqual([{ groupId: "g", memberId: "b" }]);
    expect(m.groupCount).toBe(0);
    expect(m.heartbeat({ groupId: "g", memberId: "b", memberEpoch: 1, subscribedTopicNames: [], clientId: "", newMemberId: "" }, 1600).errorCode).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
  });

  it("bounds members per group and the number of groups (THROTTLED, nothing changes)", () => {
    const m = new ShareMembership(config);
    for (let i = 0; i < maxMembersPerShareGroup; i++) expect(join(m, "big", `m${i}`, 0).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    const refused = join(m, "big", "one-too-many", 0);
    expect(refused.errorCode).toBe(ErrorCode.THROTTLED);
    expect(refused.errorMessage).toContain(`at most ${maxMembersPerShareGroup}`);
    expect(m.members("big")).toHaveLength(maxMembersPerShareGroup);
    for (let i = 1; i < maxShareGroups; i++) expect(join(m, `g${i}`, `x${i}`, 0).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(join(m, "g-new", "y", 0).errorCode).toBe(ErrorCode.THROTTLED);
    expect(m.groupCount).toBe(maxShareGroups);
    // Joining an existing group is still possible.
    expect(join(m, "g1", "z", 0).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
  });
});

// ---------------------------------------------------------------------------------------------
describe("share-state fencing", () => {
  const config: MetadataConfig = { sessionTimeoutMs: 1000, autoLeaderRebalance: false, leaderImbalanceCheckMs: 100 };
  const cluster = () => {
    let s: ClusterState = initialState("c", 0);
    const epochs = new Map<number, bigint>();
    for (const id of [1, 2]) {
      const r = registerBroker(s, { brokerId: id, host: "h", port: 1000 + id, rack: "", incarnationId: `d${id}` }, 0, config);
      s = r.state;
      epochs.set(id, r.response.brokerEpoch);
    }
    s = createTopics(s, [{ name: "jobs", partitions: 1, replicationFactor: 2, configs: {} }], false).state;
    const p = s.topics.get("jobs")!.partitions[0]!;
    const follower = p.leader === 1 ? 2 : 1;
    return { s, epochs, leader: p.leader, follower, leaderEpoch: p.leaderEpoch, topicId: s.topics.get("jobs")!.topicId };
  };

  it("lets the current leader in its current epoch and registration through, with the topic id", () => {
    const c = cluster();
    expect(fenceShareStateCall(c.s, { brokerId: c.leader, brokerEpoch: c.epochs.get(c.leader)!, topic: "jobs", partition: 0, leaderEpoch: c.leaderEpoch })).toEqual({ ok: true, topicId: c.topicId });
  });

  it("refuses a stale or unknown broker registration (STALE_BROKER_EPOCH)", () => {
    const c = cluster();
    const stale = fenceShareStateCall(c.s, { brokerId: c.leader, brokerEpoch: c.epochs.get(c.leader)! + 100n, topic: "jobs", partition: 0, leaderEpoch: c.leaderEpoch });
    expect(stale).toMatchObject({ ok: false, errorCode: ErrorCode.STALE_BROKER_EPOCH });
    expect(fenceShareStateCall(c.s, { brokerId: 9, brokerEpoch: 1n, topic: "jobs", partition: 0, leaderEpoch: 0 })).toMatchObject({ ok: false, errorCode: ErrorCode.STALE_BROKER_EPOCH });
  });

  it("refuses unknown topics and partitions (UNKNOWN_TOPIC_OR_PARTITION), deleted topics included", () => {
    const c = cluster();
    const call = { brokerId: c.leader, brokerEpoch: c.epochs.get(c.leader)!, leaderEpoch: c.leaderEpoch };
    expect(fenceShareStateCall(c.s, { ...call, topic: "nope", partition: 0 })).toMatchObject({ ok: false, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION });
    expect(fenceShareStateCall(c.s, { ...call, topic: "jobs", partition: 1 })).toMatchObject({ ok: false, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION });
    const deleted = deleteTopics(c.s, ["jobs"]).state;
    expect(fenceShareStateCall(deleted, { ...call, topic: "jobs", partition: 0 })).toMatchObject({ ok: false, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION });
  });

  it("an older leader epoch is FENCED_LEADER_EPOCH; a non-leader or a newer epoch is NOT_LEADER naming the leader and epoch", () => {
    const c = cluster();
    // Move the leader epoch on so that an older one exists.
    const topic = c.s.topics.get("jobs")!;
    const p = topic.partitions[0]!;
    const s: ClusterState = { ...c.s, topics: new Map([["jobs", { ...topic, partitions: [{ ...p, leaderEpoch: p.leaderEpoch + 2 }] }]]) };
    const e = p.leaderEpoch + 2;
    const leaderCall = { brokerId: c.leader, brokerEpoch: c.epochs.get(c.leader)!, topic: "jobs", partition: 0 };
    expect(fenceShareStateCall(s, { ...leaderCall, leaderEpoch: e - 1 })).toMatchObject({ ok: false, errorCode: ErrorCode.FENCED_LEADER_EPOCH });
    const newer = fenceShareStateCall(s, { ...leaderCall, leaderEpoch: e + 1 });
    expect(newer).toMatchObject({ ok: false, errorCode: ErrorCode.NOT_LEADER });
    const notLeader = fenceShareStateCall(s, { brokerId: c.follower, brokerEpoch: c.epochs.get(c.follower)!, topic: "jobs", partition: 0, leaderEpoch: e });
    expect(notLeader).toMatchObject({ ok: false, errorCode: ErrorCode.NOT_LEADER });
    if (!notLeader.ok) expect(notLeader.errorMessage).toContain(`current leader broker ${c.leader}, leader epoch ${e}`);
  });
});

// ---------------------------------------------------------------------------------------------
describe("share-state validation", () => {
  const write = (state: SharePartitionState | undefined, over: Record<string, unknown> = {}) => () =>
    validateWriteShareState({ brokerId: 1, brokerEpoch: 1n, groupId: "g", topic: "jobs", partition: 0, leaderEpoch: 0, state, writeSequence: 0n, ...over });
  const range = (first: bigint, last: bigint, state = A) => ({ firstOffset: first, lastOffset: last, state, deliveryCount: 0, memberId: state === Q ? "m" : "", lockDeadlineMs: 0n, availableAfterMs: 0n, lastFailure: "" });

  it("accepts a well-formed state", () => {
    expect(write(stateOf(10n, 20n))).not.toThrow();
    expect(write({ startOffset: 5n, endOffset: 5n, ranges: [] })).not.toThrow();
  });

  it("refuses malformed requests with a readable reason", () => {
    const cases: [() => void, RegExp][] = [
      [write(undefined), /state is missing/],
      [write(stateOf(0n, 2n), { groupId: "" }), /group_id is 0 characters/],
      [write(stateOf(0n, 2n), { groupId: "x".repeat(256) }), /1 to 255/],
      [write(stateOf(0n, 2n), { partition: -1 }), /partition -1/],
      [write(stateOf(0n, 2n), { leaderEpoch: -1 }), /leader_epoch -1/],
      [write(stateOf(0n, 2n), { brokerEpoch: 0n }), /broker_epoch/],
      [write({ startOffset: 9n, endOffset: 5n, ranges: [] }), /start_offset 9 is after end_offset 5/],
      [write({ startOffset: 0n, endOffset: 10n, ranges: [range(3n, 2n)] }), /first_offset after last_offset/],
      [write({ startOffset: 0n, endOffset: 10n, ranges: [range(4n, 6n), range(6n, 7n)] }), /sorted and not overlap/],
      [write({ startOffset: 0n, endOffset: 10n, ranges: [range(6n, 7n), range(2n, 3n)] }), /sorted and not overlap/],
      [write({ startOffset: 5n, endOffset: 10n, ranges: [range(4n, 6n)] }), /starts before start_offset 5/],
      [write({ startOffset: 0n, endOffset: 10n, ranges: [range(8n, 10n)] }), /reaches end_offset 10/],
      [write({ startOffset: 0n, endOffset: 10n, ranges: [{ ...range(1n, 1n), state: 0 }] }), /has state 0/],
      [write({ startOffset: 0n, endOffset: 10n, ranges: [{ ...range(1n, 1n, Q), memberId: "" }] }), /ACQUIRED but names no member_id/],
      [write({ startOffset: 0n, endOffset: BigInt(maxShareStateRanges + 1), ranges: Array.from({ length: maxShareStateRanges + 1 }, (_, i) => range(BigInt(i), BigInt(i))) }), /at most 20000/],
      [() => validateShareGroupHeartbeat({ groupId: "g", memberId: "", memberEpoch: 1, subscribedTopicNames: [], clientId: "" }), /needs a member_id/],
      [() => validateShareGroupHeartbeat({ groupId: "g", memberId: "m", memberEpoch: -2, subscribedTopicNames: [], clientId: "" }), /member_epoch -2/],
      [() => validateDescribeShareGroups({ groupIds: [""] }), /group id is 0 characters/],
    ];
    for (const [call, reason] of cases) {
      expect(call).toThrow(InvalidRequest);
      expect(call).toThrow(reason);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("share-state store (LMDB)", () => {
  let dir: string;
  const stores: MetadataStore[] = [];
  const noFatal = { onFatal: (err: unknown) => expect.unreachable(String(err)) };
  const openStore = () => {
    const s = MetadataStore.open(dir);
    stores.push(s);
    return s;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "runnel-share-store-"));
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("encodes a state with its leader epoch and detects a flipped byte", () => {
    const value = encodeStoredShareState(7, stateOf(100n, 105n));
    expect(decodeStoredShareState("k", value)).toEqual({ leaderEpoch: 7, state: stateOf(100n, 105n) });
    const bad = Buffer.from(value);
    bad[bad.length - 1]! ^= 0x40;
    expect(() => decodeStoredShareState("k", bad)).toThrow(ShareStateCorruption);
  });

  it("round-trips states, reloads them after a restart, and keeps topic ids apart", async () => {
    let meta = openStore();
    let store = ShareStateStore.load(meta.shareStateDb, noFatal);
    await Promise.all([
      store.write("g", "topic-id-1", 0, 3, stateOf(0n, 2n)),
      store.write("g", "topic-id-1", 1, 3, stateOf(5n, 9n)),
      store.write("g\u0000odd", "topic-id-2", 0, 1, stateOf(1n, 1n)),
    ]);
    await store.write("g", "topic-id-1", 0, 4, stateOf(1n, 3n)); // replaces
    expect(store.get("g", "topic-id-1", 0)).toMatchObject({ leaderEpoch: 4, state: stateOf(1n, 3n) });
    await store.close();
    await meta.close();
    stores.splice(0);

    meta = openStore();
    store = ShareStateStore.load(meta.shareStateDb, noFatal);
    expect(store.stateCount).toBe(3);
    expect(store.get("g", "topic-id-1", 0)).toMatchObject({ leaderEpoch: 4, state: stateOf(1n, 3n) });
    expect(store.get("g", "topic-id-1", 1)).toMatchObject({ leaderEpoch: 3, state: stateOf(5n, 9n) });
    expect(store.get("g\u0000odd", "topic-id-2", 0)).toMatchObject({ leaderEpoch: 1, state: stateOf(1n, 1n) });
    expect(store.get("g", "topic-id-9", 0)).toBeUndefined();
    expect(store.groupIds().sort()).toEqual(["g", "g\u0000odd"]);
  });

  it("prunes the states of deleted topic ids, on disk too", async () => {
    let meta = openStore();
    let store = ShareStateStore.load(meta.shareStateDb, noFatal);
    await store.write("g1", "dead", 0, 0, stateOf(0n, 2n));
    await store.write("g2", "dead", 3, 0, stateOf(0n, 2n));
    await store.write("g2", "live", 0, 0, stateOf(0n, 2n));
    expect(store.prune(new Set(["live"]))).toBe(2);
    expect(store.prune(new Set(["live"]))).toBe(0);
    expect(store.groupIds()).toEqual(["g2"]);
    await store.whenFlushed();
    await store.close();
    await meta.close();
    stores.splice(0);
    meta = openStore();
    store = ShareStateStore.load(meta.shareStateDb, noFatal);
    expect(store.stateCount).toBe(1);
    expect(store.get("g2", "live", 0)).toBeDefined();
  });

  it("refuses to load a corrupted record", async () => {
    const meta = openStore();
    const bad = encodeStoredShareState(1, stateOf(0n, 2n));
    bad[10]! ^= 0xff;
    await meta.shareStateDb.put("g\u0000tid\u00000", bad);
    await meta.shareStateDb.flushed;
    expect(() => ShareStateStore.load(meta.shareStateDb, noFatal)).toThrow(/CRC32C/);
  });

  it("every write is visible to a read that starts after it was answered, under concurrent writes (group commit)", async () => {
    const meta = openStore();
    const store = ShareStateStore.load(meta.shareStateDb, noFatal);
    const checks: Promise<void>[] = [];
    for (let round = 0; round < 20; round++) {
      for (let key = 0; key < 10; key++) {
        const end = BigInt(round * 10 + key + 1);
        checks.push(
          store.write("g", "tid", key, round, stateOf(0n, end)).then(async () => {
            // A read: take the value now, answer when everything accepted before it is on disk.
            const seen = store.get("g", "tid", key)!;
            await store.whenFlushed();
            // Later rounds may have replaced it meanwhile, never an earlier one.
            expect(seen.state.endOffset >= end).toBe(true);
          }),
        );
      }
    }
    await Promise.all(checks);
    await store.close();
    await meta.close();
    stores.splice(0);
    const reopened = openStore();
    const reloaded = ShareStateStore.load(reopened.shareStateDb, noFatal);
    for (let key = 0; key < 10; key++) expect(reloaded.get("g", "tid", key)!.state.endOffset).toBe(BigInt(190 + key + 1));
  });
});

// ---------------------------------------------------------------------------------------------
/** An LMDB stand-in whose fsync the test releases by hand (or fails). */
class GatedDb {
  readonly written: string[][] = [];
  private gates: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushedPromise: Promise<void> = Promise.resolve();
  private batch: string[] = [];
  getRange() {
    return [];
  }
  putSync(key: string) {
    this.batch.push(`put ${key}`);
  }
  removeSync(key: string) {
    this.batch.push(`remove ${key}`);
  }
  async transaction(cb: () => void) {
    this.batch = [];
    cb();
    this.written.push(this.batch);
    this.flushedPromise = new Promise<void>((resolve, reject) => this.gates.push({ resolve, reject }));
    return true;
  }
  get flushed() {
    return this.flushedPromise;
  }
  get waiting() {
    return this.gates.length;
  }
  release() {
    this.gates.shift()!.resolve();
  }
  fail(err: Error) {
    this.gates.shift()!.reject(err);
  }
}

const settle = () => new Promise((r) => setImmediate(r));

describe("share-state store group commit (gated fsync)", () => {
  it("batches writes made during a flush into the next one; a read waits for every earlier write's flush", async () => {
    const db = new GatedDb();
    const store = ShareStateStore.load(db as unknown as Database<Buffer, string>, { onFatal: (err) => expect.unreachable(String(err)) });
    const done: string[] = [];
    void store.write("g", "t", 0, 0, stateOf(0n, 1n)).then(() => done.push("w1"));
    await settle();
    expect(db.written).toEqual([["put g\u0000t\u00000"]]);
    void store.write("g", "t", 1, 0, stateOf(0n, 1n)).then(() => done.push("w2"));
    void store.write("g", "t", 2, 0, stateOf(0n, 1n)).then(() => done.push("w3"));
    void store.whenFlushed().then(() => done.push("read"));
    await settle();
    expect(db.written).toHaveLength(1); // one flush at a time
    db.release();
    await settle();
    expect(done).toEqual(["w1"]);
    expect(db.written[1]).toEqual(["put g\u0000t\u00001", "put g\u0000t\u00002"]);
    db.release();
    await settle();
    expect(done).toEqual(["w1", "w2", "w3", "read"]);
    await store.close();
  });

  it("pipelined writes: an older sequence from the same writer and leader epoch is not applied and is answered once the newer state is on disk", async () => {
    const db = new GatedDb();
    const store = ShareStateStore.load(db as unknown as Database<Buffer, string>, { onFatal: (err) => expect.unreachable(String(err)) });
    const writer = (writeSequence: bigint, brokerEpoch = 7n) => ({ brokerId: 1, brokerEpoch, writeSequence });
    const done: string[] = [];
    void store.write("g", "t", 0, 3, stateOf(0n, 1n), writer(1n)).then(() => done.push("s1"));
    await settle();
    // Sequence 3 arrives before sequence 2 (several writes in flight): 2 must not replace 3.
    void store.write("g", "t", 0, 3, stateOf(0n, 3n), writer(3n)).then(() => done.push("s3"));
    void store.write("g", "t", 0, 3, stateOf(0n, 2n), writer(2n)).then(() => done.push("s2"));
    expect(store.get("g", "t", 0)!.state.endOffset).toBe(3n);
    db.release();
    await settle();
    expect(done).toEqual(["s1"]); // s2 waits for the flush that holds s3
    db.release();
    await settle();
    expect(done).toEqual(["s1", "s3", "s2"]);
    expect(db.written.flat().filter((w) => w.startsWith("put"))).toHaveLength(2);
    // A new registration (restarted broker) or a new leader epoch restarts the numbering; 0 is unordered.
    void store.write("g", "t", 0, 3, stateOf(0n, 4n), writer(1n, 8n));
    expect(store.get("g", "t", 0)!.state.endOffset).toBe(4n);
    void store.write("g", "t", 0, 4, stateOf(0n, 5n), writer(1n, 8n));
    expect(store.get("g", "t", 0)!.state.endOffset).toBe(5n);
    void store.write("g", "t", 0, 4, stateOf(0n, 6n), writer(0n, 8n));
    void store.write("g", "t", 0, 4, stateOf(0n, 7n));
    expect(store.get("g", "t", 0)!.state.endOffset).toBe(7n);
    db.release();
    await settle();
    db.release();
    await store.close();
  });

  it("a flush failure is fatal: the waiting writes fail, onFatal is called, later writes are refused", async () => {
    const db = new GatedDb();
    const fatal: unknown[] = [];
    const store = ShareStateStore.load(db as unknown as Database<Buffer, string>, { onFatal: (err) => fatal.push(err) });
    const w1 = store.write("g", "t", 0, 0, stateOf(0n, 1n));
    await settle();
    const w2 = store.write("g", "t", 1, 0, stateOf(0n, 1n));
    db.fail(new Error("disk on fire"));
    await expect(w1).rejects.toThrow(/share-state flush failed: disk on fire/);
    await expect(w2).rejects.toThrow(/disk on fire/);
    expect(fatal).toHaveLength(1);
    expect(() => store.write("g", "t", 2, 0, stateOf(0n, 1n))).toThrow(/failed to flush/);
  });
});

// ---------------------------------------------------------------------------------------------
type Service = typeof ControllerServiceService;
type UnaryMethod = { [K in keyof Service]: Service[K]["responseStream"] extends false ? K : never }[keyof Service];
type RequestOf<K extends UnaryMethod> = ReturnType<Service[K]["requestDeserialize"]>;
type ResponseOf<K extends UnaryMethod> = ReturnType<Service[K]["responseDeserialize"]>;

function rpc<K extends UnaryMethod>(c: ControllerServiceClient, method: K, request: RequestOf<K>): Promise<ResponseOf<K>> {
  const fn = c[method] as unknown as (req: RequestOf<K>, cb: (err: grpc.ServiceError | null, res: ResponseOf<K>) => void) => void;
  return new Promise((resolve, reject) => fn.call(c, request, (err, res) => (err ? reject(err) : resolve(res))));
}

/** The cluster as a metadata watch shows it now (one snapshot, then the stream is closed). */
function snapshot(c: ControllerServiceClient): Promise<ClusterSnapshot> {
  return new Promise((resolve, reject) => {
    const stream = c.watchMetadata({ brokerId: -1, brokerEpoch: 0n });
    stream.on("data", (e: MetadataEvent) => {
      if (e.event?.$case === "snapshot") {
        resolve(e.event.value);
        stream.cancel();
      }
    });
    stream.on("error", (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
  });
}

describe("share RPCs over gRPC with LMDB", () => {
  let dir: string;
  let controller: RunningController | undefined;
  let client: ControllerServiceClient | undefined;
  const timers: NodeJS.Timeout[] = [];

  const start = async () => {
    controller = await startController({
      listen: "127.0.0.1:0",
      http: "127.0.0.1:0",
      dataDir: dir,
      sessionTimeoutMs: 5000,
      heartbeatIntervalMs: 150,
      autoLeaderRebalance: false,
      leaderImbalanceCheckMs: 60_000,
      logger: createLogger({ role: "test", level: "silent" }),
      onFatal: (err) => {
        throw err;
      },
    });
    client?.close();
    client = new ControllerServiceClient(`127.0.0.1:${controller.grpcPort}`, grpc.credentials.createInsecure(), channelOptions);
    return client;
  };
  const stop = async () => {
    for (const t of timers.splice(0)) clearInterval(t);
    client?.close();
    client = undefined;
    await controller?.stop();
    controller = undefined;
  };
  const register = async (c: ControllerServiceClient, brokerId: number) => {
    const res = await rpc(c, "registerBroker", { brokerId, host: "127.0.0.1", port: 9000 + brokerId, rack: "", incarnationId: `disk-${brokerId}` });
    expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    heartbeatLoop(c, brokerId, res.brokerEpoch);
    return res.brokerEpoch;
  };
  const heartbeatLoop = (c: ControllerServiceClient, brokerId: number, brokerEpoch: bigint) => {
    timers.push(setInterval(() => c.brokerHeartbeat({ brokerId, brokerEpoch, metadataVersion: 0n }, () => undefined), 150));
  };
  /** Polls until every listed broker is alive again (a restarted controller hears their heartbeats). */
  const waitAlive = async (c: ControllerServiceClient, ids: number[]) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const brokers = (await rpc(c, "describeCluster", {})).brokers;
      if (ids.every((id) => brokers.some((b) => b.endpoint?.brokerId === id && b.alive))) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for brokers ${ids.join(",")} to be alive`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "runnel-share-grpc-"));
  });
  afterEach(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes, reads, describes, fences, survives a restart, and forgets a deleted topic", async () => {
    let c = await start();
    const epochs = new Map([
      [1, await register(c, 1)],
      [2, await register(c, 2)],
    ]);
    expect((await rpc(c, "createTopics", { topics: [{ name: "jobs", partitions: 2, replicationFactor: 2, configs: {} }], validateOnly: false })).topics[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    const p0 = (await snapshot(c)).topics.find((t) => t.name === "jobs")!.partitions[0]!;
    const leader = p0.leaderId;
    const follower = leader === 1 ? 2 : 1;
    const asLeader = { brokerId: leader, brokerEpoch: epochs.get(leader)!, groupId: "workers", topic: "jobs", partition: 0, leaderEpoch: p0.leaderEpoch };

    // Nothing yet.
    expect(await rpc(c, "readShareState", asLeader)).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, found: false });
    expect((await rpc(c, "describeShareGroups", { groupIds: ["workers"] })).groups[0]!.errorCode).toBe(ErrorCode.GROUP_ID_NOT_FOUND);

    expect(await rpc(c, "writeShareState", { ...asLeader, state: stateOf(0n, 2n), writeSequence: 0n })).toEqual({ errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "" });
    expect(await rpc(c, "readShareState", asLeader)).toEqual({ errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", found: true, state: stateOf(0n, 2n) });

    // Fencing through the RPCs.
    const notLeader = await rpc(c, "writeShareState", { ...asLeader, brokerId: follower, brokerEpoch: epochs.get(follower)!, state: stateOf(0n, 3n), writeSequence: 0n });
    expect(notLeader.errorCode).toBe(ErrorCode.NOT_LEADER);
    expect(notLeader.errorMessage).toContain(`current leader broker ${leader}`);
    expect((await rpc(c, "readShareState", { ...asLeader, brokerEpoch: 999n })).errorCode).toBe(ErrorCode.STALE_BROKER_EPOCH);
    expect((await rpc(c, "readShareState", { ...asLeader, partition: 5 })).errorCode).toBe(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    expect((await rpc(c, "readShareState", asLeader)).state).toEqual(stateOf(0n, 2n)); // the refused write changed nothing

    // Validation answers INVALID_ARGUMENT.
    const invalid = await rpc(c, "writeShareState", { ...asLeader, state: { startOffset: 5n, endOffset: 1n, ranges: [] }, writeSequence: 0n }).then(
      () => undefined,
      (err: grpc.ServiceError) => err,
    );
    expect(invalid?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(invalid?.details).toContain("start_offset 5 is after end_offset 1");

    // Membership and describe.
    const joined = await rpc(c, "shareGroupHeartbeat", { groupId: "workers", memberId: "", memberEpoch: 0, subscribedTopicNames: ["jobs"], clientId: "worker-a" });
    expect(joined).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, memberEpoch: 1 });
    expect(joined.memberId).toMatch(/^[0-9a-f-]{36}$/);
    expect(joined.heartbeatIntervalMs).toBeGreaterThan(0);
    const described = await rpc(c, "describeShareGroups", { groupIds: [] });
    expect(described.groups).toHaveLength(1);
    expect(described.groups[0]).toMatchObject({ groupId: "workers", errorCode: ErrorCode.ERROR_CODE_NONE, partitions: [{ topic: "jobs", partition: 0, state: stateOf(0n, 2n), leaderEpoch: p0.leaderEpoch }] });
    expect(described.groups[0]!.members).toMatchObject([{ memberId: joined.memberId, clientId: "worker-a", subscribedTopicNames: ["jobs"] }]);
    expect(described.groups[0]!.members[0]!.lastHeartbeatAgeMs).toBeGreaterThanOrEqual(0n);

    // Restart: the state is still there; the member must rejoin.
    await stop();
    c = await start();
    for (const [id, e] of epochs) heartbeatLoop(c, id, e);
    const stillThere = await rpc(c, "readShareState", asLeader);
    expect(stillThere).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, found: true, state: stateOf(0n, 2n) });
    const rejoin = await rpc(c, "shareGroupHeartbeat", { groupId: "workers", memberId: joined.memberId, memberEpoch: 1, subscribedTopicNames: [], clientId: "worker-a" });
    expect(rejoin.errorCode).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
    const afterRestart = (await rpc(c, "describeShareGroups", { groupIds: ["workers"] })).groups[0]!;
    expect(afterRestart.members).toEqual([]);
    expect(afterRestart.partitions).toHaveLength(1);

    // Delete and re-create the topic: the new one starts without state (topic id), and describe forgets the old.
    expect((await rpc(c, "deleteTopics", { names: ["jobs"] })).topics[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    await waitAlive(c, [1, 2]);
    expect((await rpc(c, "describeShareGroups", { groupIds: ["workers"] })).groups[0]!.errorCode).toBe(ErrorCode.GROUP_ID_NOT_FOUND);
    expect((await rpc(c, "createTopics", { topics: [{ name: "jobs", partitions: 1, replicationFactor: 1, configs: {} }], validateOnly: false })).topics[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    const q0 = (await snapshot(c)).topics.find((t) => t.name === "jobs")!.partitions[0]!;
    const brokerEpoch = epochs.get(q0.leaderId)!;
    expect(await rpc(c, "readShareState", { ...asLeader, brokerId: q0.leaderId, brokerEpoch, leaderEpoch: q0.leaderEpoch })).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, found: false });
  });

  it("a write answered OK is seen by every later read, with many concurrent writers", async () => {
    const c = await start();
    const epoch = await register(c, 1);
    expect((await rpc(c, "createTopics", { topics: [{ name: "q", partitions: 8, replicationFactor: 1, configs: {} }], validateOnly: false })).topics[0]!.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    const parts = (await snapshot(c)).topics.find((t) => t.name === "q")!.partitions;
    // Each (group, partition) has one writer issuing increasing states with three writes in flight at
    // once, numbered, as a leader does; all of them run at once so the controller's flushes carry many
    // writes. Once write i is answered, a read sees state i or a later one, never an earlier one.
    const writer = async (group: string, partition: number) => {
      const call = { brokerId: 1, brokerEpoch: epoch, groupId: group, topic: "q", partition, leaderEpoch: parts[partition]!.leaderEpoch };
      for (let i = 1n; i <= 15n; i += 3n) {
        await Promise.all([i, i + 1n, i + 2n].map(async (n) => {
          expect((await rpc(c, "writeShareState", { ...call, state: stateOf(0n, n), writeSequence: n })).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
          const read = await rpc(c, "readShareState", call);
          expect(read.found).toBe(true);
          expect(read.state!.endOffset >= n).toBe(true);
        }));
      }
    };
    const writers: Promise<void>[] = [];
    for (const group of ["a", "b", "c"]) for (let p = 0; p < 8; p++) writers.push(writer(group, p));
    await Promise.all(writers);
    const all = await rpc(c, "describeShareGroups", { groupIds: [] });
    expect(all.groups.map((g) => [g.groupId, g.partitions.length, g.partitions.every((p) => p.state!.endOffset === 15n)])).toEqual([
      ["a", 8, true],
      ["b", 8, true],
      ["c", 8, true],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
describe("ControllerCore share wiring (injected clock)", () => {
  it("on tick, removes the share states of deleted topics (also on disk) and expires silent share members", async () => {
    const dir = mkdtempSync(join(tmpdir(), "runnel-share-core-"));
    const config = { sessionTimeoutMs: 60_000, autoLeaderRebalance: false, leaderImbalanceCheckMs: 60_000 };
    const clock = { now: 0 };
    const makeCore = async (store: MetadataStore) => {
      const state = await store.load(() => "cluster", clock.now);
      return new ControllerCore({
        store,
        state,
        config,
        heartbeatIntervalMs: 200,
        groupConfig: { sessionTimeoutMs: 1_000, heartbeatIntervalMs: 100 },
        logger: createLogger({ role: "test", level: "silent" }),
        onFatal: (err) => {
          throw err;
        },
        nowMs: () => clock.now,
      });
    };
    let store = MetadataStore.open(dir);
    let core = await makeCore(store);
    try {
      await core.execute("register", (s, now) => registerBroker(s, { brokerId: 1, host: "h", port: 1, rack: "", incarnationId: "a" }, now, config));
      await core.execute("create", (s) => createTopics(s, [{ name: "a", partitions: 1, replicationFactor: 1, configs: {} }, { name: "b", partitions: 1, replicationFactor: 1, configs: {} }], false));
      const idOf = (name: string) => core.state.topics.get(name)!.topicId;
      await core.shareStates.write("g", idOf("a"), 0, 0, stateOf(0n, 2n));
      await core.shareStates.write("g", idOf("b"), 0, 0, stateOf(0n, 3n));
      const joined = core.shareMembers.heartbeat({ groupId: "g", memberId: "", memberEpoch: 0, subscribedTopicNames: ["a"], clientId: "", newMemberId: "m" }, clock.now);
      expect(joined.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);

      const keptId = idOf("b");
      await core.execute("delete", (s) => deleteTopics(s, ["a"]));
      clock.now = 1_001;
      core.requestTick();
      expect(core.shareStates.stateCount).toBe(1);
      expect(core.shareMembers.memberCount).toBe(0);
      await core.stop();
      await store.close();

      store = MetadataStore.open(dir);
      core = await makeCore(store);
      expect(core.shareStates.stateCount).toBe(1);
      expect(core.shareStates.get("g", keptId, 0)?.state).toEqual(stateOf(0n, 3n));
    } finally {
      await core.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
