// The consumer-group state machine and assignors, with simulated time: tests are named after the rule
// they prove (KIP-848 reconciliation, stickiness, fencing, static membership, offsets).
import { ErrorCode, type TopicPartitions } from "@runnel/proto";
import { describe, expect, it } from "vitest";
import {
  type AssignorInput,
  checkNoDoubleOwnership,
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
  beat(m: Sim, overrides: Partial<HeartbeatInput> = {}): HeartbeatResponse {
    const r = heartbeat(this.state, m.input(overrides), counts, this.now, config);
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

  it("a static member restarting within the session timeout keeps its partitions, and nobody else moves", () => {
    const w = new World();
    const a = new Sim("a", ["orders"], "inst-a");
    const b = new Sim("b", ["orders"], "inst-b");
    w.settle([a, b]);
    const aOwned = flat(a.owned);
    const bOwned = flat(b.owned);
    const epoch = w.state.groups.get("G")!.groupEpoch;
    const restarted = new Sim("a2", ["orders"], "inst-a");
    const res = w.beat(restarted);
    expect(flat(res.assignment)).toEqual(aOwned);
    expect(w.state.groups.get("G")!.groupEpoch).toBe(epoch);
    w.beat(b);
    expect(flat(b.owned)).toEqual(bOwned);
    expect(w.state.groups.get("G")!.members.has(a.memberId)).toBe(false);
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
