// The consumer-group state machine and assignors, with simulated time: tests are named after the rule
// they prove (KIP-848 reconciliation, stickiness, fencing, static membership, offsets).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, type TopicPartitions } from "@runnel/proto";
import { describe, expect, it } from "vitest";
import {
  type AssignorInput,
  checkNoDoubleOwnership,
  defaultGroupOffsetsRetentionMs,
  defaultMemberRebalanceTimeoutMs,
  describeGroup,
  emptyGroupsState,
  graceAfterLoad,
  type GroupConfig,
  type GroupsState,
  heartbeat,
  type HeartbeatInput,
  type HeartbeatResponse,
  listGroups,
  offsetCommit,
  offsetFetch,
  rangeAssign,
  tickGroups,
  uniformAssign,
} from "../src/groups/index.js";
import { MetadataStore } from "../src/store/index.js";

const config: GroupConfig = { sessionTimeoutMs: 3000, heartbeatIntervalMs: 300 };
const counts = new Map([["orders", 6], ["audit", 2]]);

function flat(a: TopicPartitions[] | undefined): string[] {
  return (a ?? []).flatMap((t) => t.partitions.map((p) => `${t.topic}-${p}`)).sort();
}

/** A simulated member that heartbeats and owns exactly what it was last told (revokes at once). */
class Sim {
  memberId = "";
  epoch = 0;
  owned: TopicPartitions[] = [];
  constructor(readonly name: string, readonly topics: string[] = ["orders"], readonly instanceId = "") {}

  input(overrides: Partial<HeartbeatInput> = {}): HeartbeatInput {
    return {
      groupId: "G", memberId: this.memberId, memberEpoch: this.epoch, instanceId: this.instanceId, rebalanceTimeoutMs: 1000,
      subscribedTopicNames: this.topics, subscribedTopicRegex: "", serverAssignor: "", ownedPartitions: this.owned, clientId: this.name,
      newMemberId: `${this.name}-id`, ...overrides,
    };
  }
}

class World {
  state: GroupsState = emptyGroupsState;
  now = 0;
  constructor(readonly cfg: GroupConfig = config, public counts: Map<string, number> = new Map([["orders", 6], ["audit", 2]])) {}
  beat(m: Sim, overrides: Partial<HeartbeatInput> = {}): HeartbeatResponse {
    const r = heartbeat(this.state, m.input(overrides), this.counts, this.now, this.cfg);
    this.state = r.state;
    const res = r.response;
    if (res.errorCode === ErrorCode.ERROR_CODE_NONE) {
      m.memberId = res.memberId;
      m.epoch = res.memberEpoch;
      m.owned = res.assignment ?? m.owned;
    }
    for (const g of this.state.groups.values()) checkNoDoubleOwnership(g);
    return res;
  }
  /** Heartbeats every member in turn until nothing changes. */
  settle(members: Sim[]): void {
    for (let round = 0; round < 10; round++) {
      const before = JSON.stringify(members.map((m) => [m.epoch, flat(m.owned)]));
      for (const m of members) this.beat(m);
      if (JSON.stringify(members.map((m) => [m.epoch, flat(m.owned)])) === before) return;
    }
    throw new Error("group did not settle in 10 rounds");
  }
  tick() {
    const t = tickGroups(this.state, this.counts, this.now, this.cfg);
    this.state = t.state;
    for (const g of this.state.groups.values()) checkNoDoubleOwnership(g);
    return t.response;
  }
  commit(m: Sim, topic: string, partition: number, offset: bigint): ErrorCode {
    const r = offsetCommit(this.state, { groupId: "G", memberId: m.memberId, memberEpoch: m.epoch, topics: [{ topic, partitions: [{ partition, committedOffset: offset, committedLeaderEpoch: -1, metadata: "" }] }] }, this.counts, this.now);
    this.state = r.state;
    return r.response.errorCode !== ErrorCode.ERROR_CODE_NONE ? r.response.errorCode : r.response.topics[0]!.partitions[0]!.errorCode;
  }
}

describe("assignors", () => {
  const input = (ids: string[], previous: AssignorInput["previous"] = new Map()): AssignorInput => ({
    members: ids.map((memberId) => ({ memberId, topics: new Set(["orders"]) })),
    partitionCounts: new Map([["orders", 6]]),
    previous,
  });

  it("uniform: balanced within one partition and every partition owned exactly once", () => {
    for (let n = 1; n <= 7; n++) {
      const ids = Array.from({ length: n }, (_, i) => `m${i}`);
      const out = uniformAssign(input(ids));
      const sizes = [...out.values()].map((a) => a.get("orders")?.length ?? 0);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      const all = [...out.values()].flatMap((a) => a.get("orders") ?? []).sort();
      expect(all).toEqual([0, 1, 2, 3, 4, 5]);
    }
  });

  it("uniform: sticky, a joining member takes partitions only from others, nothing else moves", () => {
    const first = uniformAssign(input(["a", "b"]));
    const second = uniformAssign(input(["a", "b", "c"], first));
    for (const id of ["a", "b"]) {
      const before = new Set(first.get(id)!.get("orders"));
      for (const p of second.get(id)!.get("orders") ?? []) expect(before.has(p)).toBe(true);
    }
    expect(second.get("c")!.get("orders")).toHaveLength(2);
  });

  it("uniform: a leaving member's partitions go to the others, who keep theirs", () => {
    const first = uniformAssign(input(["a", "b", "c"]));
    const second = uniformAssign(input(["a", "b"], first));
    for (const id of ["a", "b"]) for (const p of first.get(id)!.get("orders")!) expect(second.get(id)!.get("orders")).toContain(p);
  });

  it("range: contiguous ranges, the first members get the extra partitions", () => {
    const out = rangeAssign({ ...input(["b", "a", "c", "d"]) });
    expect(out.get("a")!.get("orders")).toEqual([0, 1]);
    expect(out.get("b")!.get("orders")).toEqual([2, 3]);
    expect(out.get("c")!.get("orders")).toEqual([4]);
    expect(out.get("d")!.get("orders")).toEqual([5]);
  });

  it("only subscribers of a topic get its partitions", () => {
    const out = uniformAssign({
      members: [{ memberId: "a", topics: new Set(["orders"]) }, { memberId: "b", topics: new Set(["audit"]) }],
      partitionCounts: counts,
      previous: new Map(),
    });
    expect([...out.get("a")!.keys()]).toEqual(["orders"]);
    expect(out.get("b")!.get("audit")).toEqual([0, 1]);
  });
});

describe("membership and reconciliation (KIP-848)", () => {
  it("three members of six partitions each own two, with no partition owned twice", () => {
    const w = new World();
    const ms = [new Sim("a"), new Sim("b"), new Sim("c")];
    w.settle(ms);
    expect(ms.map((m) => flat(m.owned).length)).toEqual([2, 2, 2]);
    expect(new Set(ms.flatMap((m) => flat(m.owned))).size).toBe(6);
    expect(listGroups(w.state)[0]).toEqual({ groupId: "G", state: "stable", memberCount: 3 });
  });

  it("a partition is revoked from its owner and confirmed before the new owner gets it", () => {
    const w = new World();
    const a = new Sim("a");
    w.beat(a);
    expect(flat(a.owned)).toHaveLength(6);
    const b = new Sim("b");
    const joined = w.beat(b);
    // b is in the target for 3 partitions, but a still owns them: b gets nothing yet.
    expect(flat(joined.assignment)).toEqual([]);
    // a is told to give 3 up; until it confirms (its next heartbeat no longer lists them) b waits.
    const aOwnedBefore = a.owned;
    const toA = w.beat(a, { ownedPartitions: aOwnedBefore });
    expect(flat(toA.assignment)).toHaveLength(3);
    const aEpoch = toA.memberEpoch;
    expect(flat(w.beat(b).assignment)).toEqual([]);
    // a confirms by listing only what it kept.
    a.owned = toA.assignment!;
    const confirmed = w.beat(a);
    expect(confirmed.memberEpoch).toBeGreaterThan(aEpoch);
    expect(flat(w.beat(b).assignment)).toHaveLength(3);
    expect(new Set([...flat(a.owned), ...flat(b.owned)]).size).toBe(6);
  });

  it("members whose partitions do not move keep them through a rebalance", () => {
    const w = new World();
    const ms = [new Sim("a"), new Sim("b")];
    w.settle(ms);
    const before = ms.map((m) => new Set(flat(m.owned)));
    const c = new Sim("c");
    ms.push(c);
    // Every answer during the rebalance is a subset of what the member had: nothing is taken and given back.
    for (let round = 0; round < 5; round++) {
      for (const [i, m] of ms.entries()) {
        w.beat(m);
        if (i < 2) for (const tp of flat(m.owned)) expect(before[i]!.has(tp)).toBe(true);
      }
    }
    expect(ms.map((m) => flat(m.owned).length)).toEqual([2, 2, 2]);
  });

  it("a member that misses its session timeout is removed and its partitions move", () => {
    const w = new World();
    const ms = [new Sim("a"), new Sim("b"), new Sim("c")];
    w.settle(ms);
    const lost = flat(ms[2]!.owned);
    w.now = 2000;
    w.beat(ms[0]!);
    w.beat(ms[1]!);
    w.now = 3500;
    const t = tickGroups(w.state, counts, w.now, config);
    w.state = t.state;
    expect(t.response.expiredMembers).toEqual(["G/c-id"]);
    w.settle(ms.slice(0, 2));
    const owned = [...flat(ms[0]!.owned), ...flat(ms[1]!.owned)];
    for (const tp of lost) expect(owned).toContain(tp);
    expect(owned).toHaveLength(6);
  });

  it("heartbeats and commits from a removed or stale-epoch member are rejected (fencing)", () => {
    const w = new World();
    const a = new Sim("a");
    const b = new Sim("b");
    w.settle([a, b]);
    expect(w.beat(a, { memberEpoch: a.epoch + 7 }).errorCode).toBe(ErrorCode.FENCED_MEMBER_EPOCH);
    const commit = (m: Sim, epoch: number) =>
      offsetCommit(w.state, { groupId: "G", memberId: m.memberId, memberEpoch: epoch, topics: [{ topic: "orders", partitions: [{ partition: 0, committedOffset: 5n, committedLeaderEpoch: -1, metadata: "" }] }] }, counts, w.now).response.errorCode;
    expect(commit(a, a.epoch + 7)).toBe(ErrorCode.FENCED_MEMBER_EPOCH);
    w.beat(b, { memberEpoch: -1 });
    expect(commit(b, b.epoch)).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
    expect(w.beat(b, { memberEpoch: 1 }).errorCode).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
    expect(commit(a, a.epoch)).toBe(ErrorCode.ERROR_CODE_NONE);
  });

  it("a static member restarting (leave with epoch -2, rejoin within the session timeout) keeps its partitions, and nobody else moves", () => {
    const w = new World();
    const a = new Sim("a", ["orders"], "inst-a");
    const b = new Sim("b", ["orders"], "inst-b");
    w.settle([a, b]);
    const aOwned = flat(a.owned);
    const bOwned = flat(b.owned);
    const epoch = w.state.groups.get("G")!.groupEpoch;
    w.now = 1000;
    expect(w.commit(a, "orders", 0, 7n)).toBe(ErrorCode.ERROR_CODE_NONE);
    const oldEpoch = a.epoch;
    const left = w.beat(a, { memberEpoch: -2 });
    expect(left).toMatchObject({ errorCode: ErrorCode.ERROR_CODE_NONE, memberEpoch: -2 });
    // The old process is fenced: neither its commits (with its old epoch or -2) nor its heartbeats count any more.
    expect(w.commit(a, "orders", 0, 8n)).toBe(ErrorCode.FENCED_MEMBER_EPOCH);
    a.epoch = oldEpoch;
    expect(w.commit(a, "orders", 0, 8n)).toBe(ErrorCode.FENCED_MEMBER_EPOCH);
    expect(w.beat(a).errorCode).toBe(ErrorCode.FENCED_MEMBER_EPOCH);
    expect(offsetFetch(w.state, "G", [{ topic: "orders", partitions: [0] }])[0]!.committedOffset).toBe(7n);
    // Its partitions wait for it: b does not get them meanwhile.
    w.now = 1000 + config.sessionTimeoutMs;
    w.beat(b);
    expect(w.tick().expiredMembers).toEqual([]);
    expect(flat(b.owned)).toEqual(bOwned);
    const restarted = new Sim("a2", ["orders"], "inst-a");
    const res = w.beat(restarted);
    expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(flat(res.assignment)).toEqual(aOwned);
    expect(res.memberEpoch).toBe(epoch);
    expect(w.state.groups.get("G")!.groupEpoch).toBe(epoch);
    w.beat(b);
    expect(flat(b.owned)).toEqual(bOwned);
    expect(w.state.groups.get("G")!.members.has(a.memberId)).toBe(false);
    expect(listGroups(w.state)[0]!.state).toBe("stable");
  });

  it("KIP-848 UNRELEASED_INSTANCE_ID: a second live process with an instance id that a live member holds is refused (UNRELEASED_INSTANCE_ID, not FENCED_MEMBER_EPOCH) and takes nothing over", () => {
    const w = new World();
    const a = new Sim("a", ["orders"], "inst-a");
    const b = new Sim("b", ["orders"], "inst-b");
    w.settle([a, b]);
    const before = JSON.stringify(describeGroup(w.state, "G"));
    const intruder = new Sim("a2", ["orders"], "inst-a");
    const res = w.beat(intruder);
    expect(res.errorCode).toBe(ErrorCode.UNRELEASED_INSTANCE_ID);
    expect(res.errorMessage).toContain("which has not left");
    expect(res.errorMessage).toContain(a.memberId);
    expect(res.assignment).toBeUndefined();
    expect(JSON.stringify(describeGroup(w.state, "G"))).toBe(before);
    // The live member carries on undisturbed.
    const again = w.beat(a);
    expect(again.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(flat(again.assignment)).toHaveLength(3);
  });

  it("a crashed static member (no epoch -2 leave) frees its instance id when its session expires; the new process then joins", () => {
    const w = new World();
    const a = new Sim("a", ["orders"], "inst-a");
    const b = new Sim("b", ["orders"], "inst-b");
    w.settle([a, b]);
    const restarted = new Sim("a2", ["orders"], "inst-a");
    w.now = 1000;
    w.beat(b);
    expect(w.beat(restarted).errorCode).toBe(ErrorCode.UNRELEASED_INSTANCE_ID);
    w.now = config.sessionTimeoutMs + 1;
    w.beat(b);
    expect(w.tick().expiredMembers).toEqual([`G/${a.memberId}`]);
    expect(w.beat(restarted).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    w.settle([b, restarted]);
    expect([flat(b.owned).length, flat(restarted.owned).length]).toEqual([3, 3]);
  });

  it("a static member that left with epoch -2 and does not come back within the session timeout is removed; its partitions move", () => {
    const w = new World();
    const a = new Sim("a", ["orders"], "inst-a");
    const b = new Sim("b", ["orders"], "inst-b");
    w.settle([a, b]);
    w.now = 500;
    w.beat(a, { memberEpoch: -2 });
    w.beat(b);
    w.now = 500 + config.sessionTimeoutMs + 1;
    w.beat(b);
    expect(w.tick().expiredMembers).toEqual([`G/${a.memberId}`]);
    w.settle([b]);
    expect(flat(b.owned)).toHaveLength(6);
  });

  it("the same static incarnation (it knows its member id) may rejoin with epoch 0 after FENCED_MEMBER_EPOCH", () => {
    const w = new World();
    const a = new Sim("a", ["orders"], "inst-a");
    const b = new Sim("b", ["orders"], "inst-b");
    w.settle([a, b]);
    const aOwned = flat(a.owned);
    expect(w.beat(a, { memberEpoch: a.epoch + 5 }).errorCode).toBe(ErrorCode.FENCED_MEMBER_EPOCH);
    // As the client does after FENCED_MEMBER_EPOCH: drop everything, keep the member id, epoch 0.
    a.owned = [];
    const res = w.beat(a, { memberEpoch: 0 });
    expect(res.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(flat(res.assignment)).toEqual(aOwned);
  });

  it("a new topic matching a member's pattern triggers a new target assignment", () => {
    const w = new World();
    const a = new Sim("a", []);
    const beat = (c: Map<string, number>) => {
      const r = heartbeat(w.state, a.input({ subscribedTopicRegex: "ord.*" }), c, w.now, config);
      w.state = r.state;
      a.memberId = r.response.memberId;
      a.epoch = r.response.memberEpoch;
      a.owned = r.response.assignment ?? a.owned;
      return r.response;
    };
    expect(flat(beat(new Map([["orders", 2]])).assignment)).toEqual(["orders-0", "orders-1"]);
    expect(flat(beat(new Map([["orders", 2], ["ordinals", 1], ["audit", 3]])).assignment)).toEqual(["orders-0", "orders-1", "ordinals-0"]);
  });

  it("after a controller restart members keep epochs and assignments and get one session timeout of grace", () => {
    const w = new World();
    const ms = [new Sim("a"), new Sim("b")];
    w.settle(ms);
    const reloaded = graceAfterLoad({ ...w.state, lastHeartbeatMs: new Map() }, 100_000);
    expect(tickGroups(reloaded, counts, 100_000 + config.sessionTimeoutMs, config).response.expiredMembers).toEqual([]);
    w.state = reloaded;
    w.now = 100_500;
    const before = ms.map((m) => [m.epoch, flat(m.owned)]);
    w.settle(ms);
    expect(ms.map((m) => [m.epoch, flat(m.owned)])).toEqual(before);
  });
});

describe("offsets", () => {
  it("an admin commit works only while the group has no members; fetch returns -1 when nothing is committed", () => {
    const w = new World();
    const admin = (state: GroupsState) =>
      offsetCommit(state, { groupId: "G", memberId: "", memberEpoch: -1, topics: [{ topic: "orders", partitions: [{ partition: 1, committedOffset: 42n, committedLeaderEpoch: -1, metadata: "m" }] }] }, counts, 7);
    const first = admin(w.state);
    expect(first.response.errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    w.state = first.state;
    expect(offsetFetch(w.state, "G", [{ topic: "orders", partitions: [1, 2] }]).map((o) => o.committedOffset)).toEqual([42n, -1n]);
    w.settle([new Sim("a")]);
    expect(admin(w.state).response.errorCode).toBe(ErrorCode.NON_EMPTY_GROUP);
  });

  it("commits to unknown partitions and negative offsets are refused per partition", () => {
    const r = offsetCommit(emptyGroupsState, {
      groupId: "G", memberId: "", memberEpoch: -1,
      topics: [{ topic: "orders", partitions: [{ partition: 9, committedOffset: 1n, committedLeaderEpoch: -1, metadata: "" }, { partition: 0, committedOffset: -3n, committedLeaderEpoch: -1, metadata: "" }] }],
    }, counts, 0);
    expect(r.response.topics[0]!.partitions.map((p) => p.errorCode)).toEqual([ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_REQUEST]);
  });
});

describe("rebalance timeout (KIP-848: a member that does not complete its revocation in time is fenced)", () => {
  /** a owns all six partitions, then b joins: a is asked to revoke three at time `askedAt`. */
  function revocationAsked(askedAt: number) {
    const w = new World();
    const a = new Sim("a");
    const b = new Sim("b");
    w.beat(a);
    w.beat(b);
    w.now = askedAt;
    const stubborn = a.owned;
    const asked = w.beat(a, { ownedPartitions: stubborn });
    expect(flat(asked.assignment)).toHaveLength(3);
    return { w, a, b, stubborn };
  }

  it("a member that keeps heartbeating but never confirms is fenced once its rebalance timeout (counted from the ask) passes; its partitions go to others; its next heartbeat gets UNKNOWN_MEMBER_ID and it rejoins", () => {
    const { w, a, b, stubborn } = revocationAsked(100);
    const rebalanceTimeoutMs = 1000;
    // Heartbeats (still listing all six) keep its session alive but do not move the deadline.
    for (const t of [400, 800, 1100]) {
      w.now = t;
      expect(w.beat(a, { ownedPartitions: stubborn }).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
      w.beat(b);
      expect(flat(b.owned)).toEqual([]);
      expect(w.tick()).toMatchObject({ expiredMembers: [], revocationTimedOutMembers: [] });
    }
    w.now = 100 + rebalanceTimeoutMs + 1;
    const t = w.tick();
    expect(t.revocationTimedOutMembers).toEqual([`G/${a.memberId}`]);
    expect(t.expiredMembers).toEqual([]);
    expect(w.state.revocationDeadlineMs.size).toBe(0);
    expect(flat(w.beat(b).assignment)).toHaveLength(6);
    const fenced = w.beat(a, { ownedPartitions: stubborn });
    expect(fenced.errorCode).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
    // It rejoins as a new member and the group balances again.
    a.memberId = "";
    a.epoch = 0;
    a.owned = [];
    expect(w.beat(a).errorCode).toBe(ErrorCode.ERROR_CODE_NONE);
    w.settle([a, b]);
    expect([flat(a.owned).length, flat(b.owned).length]).toEqual([3, 3]);
  });

  it("a member that confirms its revocation within the rebalance timeout is not fenced, and its deadline is cleared", () => {
    const { w, a, b } = revocationAsked(100);
    expect(w.state.revocationDeadlineMs.size).toBe(1);
    w.now = 1000;
    // Confirm: report only what the last answer gave (Sim.beat already stored it).
    w.beat(a);
    expect(w.state.revocationDeadlineMs.size).toBe(0);
    w.beat(b);
    expect(flat(b.owned)).toHaveLength(3);
    for (const t of [2000, 3000, 4000]) {
      w.now = t;
      w.beat(a);
      w.beat(b);
      expect(w.tick()).toMatchObject({ expiredMembers: [], revocationTimedOutMembers: [] });
    }
    expect(listGroups(w.state)[0]!.state).toBe("stable");
  });

  it("confirming part of a revocation does not extend the deadline", () => {
    const { w, a, stubborn } = revocationAsked(100);
    const deadline = w.state.revocationDeadlineMs.get(`G\u0000${a.memberId}`);
    expect(deadline).toBe(1100);
    w.now = 600;
    // Release one of the three partitions being revoked, keep two.
    const kept = new Set(flat(a.owned));
    const revoking = flat(stubborn).filter((tp) => !kept.has(tp));
    const stillOwned = [...kept, ...revoking.slice(1)];
    const owned: TopicPartitions[] = [{ topic: "orders", partitions: stillOwned.map((tp) => Number(tp.split("-")[1])).sort((x, y) => x - y) }];
    w.beat(a, { ownedPartitions: owned });
    expect(w.state.revocationDeadlineMs.get(`G\u0000${a.memberId}`)).toBe(deadline);
    w.now = 1101;
    expect(w.tick().revocationTimedOutMembers).toEqual([`G/${a.memberId}`]);
  });

  it("rebalance_timeout_ms 0 (not sent) means the default rebalance timeout", () => {
    const w = new World();
    const a = new Sim("a");
    const b = new Sim("b");
    w.beat(a, { rebalanceTimeoutMs: 0 });
    w.beat(b);
    w.now = 50;
    w.beat(a, { ownedPartitions: a.owned });
    expect(w.state.revocationDeadlineMs.get(`G\u0000${a.memberId}`)).toBe(50 + defaultMemberRebalanceTimeoutMs);
  });

  it("after a controller restart a member that was revoking gets its whole rebalance timeout again", () => {
    const { w, a } = revocationAsked(100);
    const reloaded = graceAfterLoad({ ...w.state, lastHeartbeatMs: new Map(), revocationDeadlineMs: new Map() }, 50_000);
    expect(reloaded.revocationDeadlineMs.get(`G\u0000${a.memberId}`)).toBe(51_000);
    expect(reloaded.revocationDeadlineMs.size).toBe(1);
  });
});

describe("offsets retention (Kafka's offsets.retention.minutes)", () => {
  const retention: GroupConfig = { ...config, offsetsRetentionMs: 10_000 };

  /** One member commits orders-0 and audit-0, then leaves at time 1000. */
  function leftAt1000(cfg: GroupConfig = retention) {
    const w = new World(cfg);
    const a = new Sim("a", ["orders", "audit"]);
    w.settle([a]);
    expect(w.commit(a, "orders", 0, 11n)).toBe(ErrorCode.ERROR_CODE_NONE);
    expect(w.commit(a, "audit", 0, 5n)).toBe(ErrorCode.ERROR_CODE_NONE);
    w.now = 1000;
    w.beat(a, { memberEpoch: -1 });
    expect(w.state.groups.get("G")!.emptySinceMs).toBe(1000);
    return { w, a };
  }

  it("a group with no members for the retention is deleted with its offsets, not a millisecond earlier", () => {
    const { w } = leftAt1000();
    w.now = 1000 + 10_000 - 1;
    expect(w.tick().expiredGroups).toEqual([]);
    expect(offsetFetch(w.state, "G", []).map((o) => o.committedOffset)).toEqual([5n, 11n]);
    w.now = 1000 + 10_000;
    expect(w.tick().expiredGroups).toEqual(["G"]);
    expect(w.state.groups.has("G")).toBe(false);
    expect(offsetFetch(w.state, "G", [{ topic: "orders", partitions: [0] }])[0]!.committedOffset).toBe(-1n);
    expect(describeGroup(w.state, "G").errorCode).toBe(ErrorCode.GROUP_ID_NOT_FOUND);
  });

  it("the retention defaults to seven days", () => {
    expect(defaultGroupOffsetsRetentionMs).toBe(7 * 24 * 60 * 60 * 1000);
    const { w } = leftAt1000(config);
    w.now = 1000 + defaultGroupOffsetsRetentionMs - 1;
    expect(w.tick().expiredGroups).toEqual([]);
    w.now = 1000 + defaultGroupOffsetsRetentionMs;
    expect(w.tick().expiredGroups).toEqual(["G"]);
  });

  it("a group with members never expires, and a member joining stops the retention clock (it restarts when the group is empty again)", () => {
    const { w } = leftAt1000();
    w.now = 5000;
    const b = new Sim("b");
    w.settle([b]);
    expect(w.state.groups.get("G")!.emptySinceMs).toBeUndefined();
    for (let t = 5000; t <= 40_000; t += 1000) {
      w.now = t;
      w.beat(b);
      expect(w.tick().expiredGroups).toEqual([]);
    }
    w.beat(b, { memberEpoch: -1 });
    expect(w.state.groups.get("G")!.emptySinceMs).toBe(40_000);
    w.now = 40_000 + 9_999;
    expect(w.tick().expiredGroups).toEqual([]);
    expect(offsetFetch(w.state, "G", [{ topic: "orders", partitions: [0] }])[0]!.committedOffset).toBe(11n);
  });

  it("a group whose last member's session expired is empty from that tick on", () => {
    const w = new World(retention);
    const a = new Sim("a");
    w.settle([a]);
    w.now = config.sessionTimeoutMs + 1;
    expect(w.tick().expiredMembers).toEqual([`G/${a.memberId}`]);
    expect(w.state.groups.get("G")!.emptySinceMs).toBe(config.sessionTimeoutMs + 1);
  });

  it("a commit from outside to an empty group restarts its retention", () => {
    const { w } = leftAt1000();
    w.now = 8000;
    const r = offsetCommit(w.state, { groupId: "G", memberId: "", memberEpoch: -1, topics: [{ topic: "orders", partitions: [{ partition: 1, committedOffset: 3n, committedLeaderEpoch: -1, metadata: "" }] }] }, w.counts, w.now);
    w.state = r.state;
    w.now = 11_000;
    expect(w.tick().expiredGroups).toEqual([]);
    w.now = 18_000;
    expect(w.tick().expiredGroups).toEqual(["G"]);
  });

  it("committed offsets of a deleted topic are dropped on the next tick; the others stay", () => {
    const w = new World(retention);
    const a = new Sim("a", ["orders", "audit"]);
    w.settle([a]);
    w.commit(a, "orders", 0, 11n);
    w.commit(a, "audit", 1, 5n);
    expect(w.tick().droppedOffsetTopics).toEqual([]);
    w.counts = new Map([["orders", 6]]);
    const t = w.tick();
    expect(t.droppedOffsetTopics).toEqual(["G/audit"]);
    expect(offsetFetch(w.state, "G", []).map((o) => `${o.topic}-${o.partition}:${o.committedOffset}`)).toEqual(["orders-0:11"]);
    // A topic created later and then deleted is noticed too.
    w.counts = new Map([["orders", 6], ["late", 1]]);
    w.tick();
    w.beat(a, { subscribedTopicNames: ["orders", "late"] });
    w.settle([a]);
    expect(w.commit(a, "late", 0, 2n)).toBe(ErrorCode.ERROR_CODE_NONE);
    w.counts = new Map([["orders", 6]]);
    expect(w.tick().droppedOffsetTopics).toEqual(["G/late"]);
    expect(offsetFetch(w.state, "G", []).map((o) => o.topic)).toEqual(["orders"]);
  });

  it("a tick that has nothing to do returns the same state (nothing to persist)", () => {
    const w = new World(retention);
    const ms = [new Sim("a"), new Sim("b")];
    w.settle(ms);
    w.tick(); // the first tick records the topics it saw
    const before = w.state;
    w.now = 100;
    w.tick();
    expect(w.state).toBe(before);
  });

  it("the store removes an expired group's records and a deleted topic's offsets, and keeps emptySinceMs across a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "runnel-groups-retention-"));
    let store = MetadataStore.open(dir);
    try {
      const w = new World(retention);
      const a = new Sim("a", ["orders", "audit"]);
      w.settle([a]);
      w.commit(a, "orders", 0, 11n);
      w.commit(a, "audit", 0, 5n);
      w.now = 1000;
      w.beat(a, { memberEpoch: -1 });
      // A second group, still in use, must survive everything.
      const c = new Sim("c");
      w.beat(c, { groupId: "H" });
      const other = offsetCommit(w.state, { groupId: "H", memberId: c.memberId, memberEpoch: c.epoch, topics: [{ topic: "audit", partitions: [{ partition: 1, committedOffset: 9n, committedLeaderEpoch: -1, metadata: "" }] }] }, w.counts, w.now);
      w.state = other.state;
      await store.persistGroups(emptyGroupsState, w.state);
      await store.close();
      store = MetadataStore.open(dir);
      const loaded = store.loadGroups(50_000);
      expect(loaded.groups.get("G")!.emptySinceMs).toBe(1000);
      expect(loaded.groups.get("H")!.emptySinceMs).toBeUndefined();
      // Drop topic audit, then let G expire: both must reach the disk.
      w.counts = new Map([["orders", 6]]);
      let prev = w.state;
      w.tick();
      expect(await store.persistGroups(prev, w.state)).toBeGreaterThan(0);
      w.now = 11_000;
      prev = w.state;
      w.beat(c, { groupId: "H" });
      expect(w.tick().expiredGroups).toEqual(["G"]);
      await store.persistGroups(prev, w.state);
      await store.close();
      store = MetadataStore.open(dir);
      const after = store.loadGroups(60_000);
      expect([...after.groups.keys()]).toEqual(["H"]);
      expect(after.groups.get("H")!.offsets.size).toBe(0);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
