import { describe, expect, it } from "vitest";
import { ErrorCode } from "@runnel/proto";
import { placeReplicas, type PlacementBroker } from "../src/placement/index.js";

function counts(replicas: number[][]): { leaders: Map<number, number>; held: Map<number, number> } {
  const leaders = new Map<number, number>();
  const held = new Map<number, number>();
  for (const r of replicas) {
    leaders.set(r[0]!, (leaders.get(r[0]!) ?? 0) + 1);
    for (const b of r) held.set(b, (held.get(b) ?? 0) + 1);
  }
  return { leaders, held };
}

function placed(brokers: PlacementBroker[], partitions: number, rf: number, seed: number): number[][] {
  const result = placeReplicas(brokers, partitions, rf, seed);
  if (!result.ok) throw new Error(result.message);
  return result.replicas;
}

const three = [1, 2, 3].map((id) => ({ id, rack: "" }));

describe("replica placement", () => {
  it("3 brokers, 6 partitions, RF 3: every broker is preferred leader of 2 and holds 6 replicas, for every start offset", () => {
    for (let seed = 0; seed < 9; seed++) {
      const replicas = placed(three, 6, 3, seed);
      expect(replicas).toHaveLength(6);
      for (const r of replicas) expect(new Set(r).size).toBe(3);
      const { leaders, held } = counts(replicas);
      expect([...leaders.entries()].sort()).toEqual([[1, 2], [2, 2], [3, 2]]);
      expect([...held.entries()].sort()).toEqual([[1, 6], [2, 6], [3, 6]]);
    }
  });

  it("spreads leaders and replicas evenly when RF is below the broker count", () => {
    const six = [1, 2, 3, 4, 5, 6].map((id) => ({ id, rack: "" }));
    const replicas = placed(six, 12, 2, 5);
    const { leaders, held } = counts(replicas);
    for (const b of [1, 2, 3, 4, 5, 6]) {
      expect(leaders.get(b)).toBe(2);
      expect(held.get(b)).toBe(4);
    }
    for (const r of replicas) expect(new Set(r).size).toBe(2);
  });

  it("consecutive topics start on different brokers (the seed moves the start offset)", () => {
    const firstLeaders = [0, 1, 2].map((seed) => placed(three, 1, 1, seed)[0]![0]);
    expect(new Set(firstLeaders).size).toBe(3);
  });

  it("with racks, each partition's replicas are on different racks", () => {
    const brokers = [
      { id: 1, rack: "a" },
      { id: 2, rack: "a" },
      { id: 3, rack: "b" },
      { id: 4, rack: "b" },
      { id: 5, rack: "c" },
      { id: 6, rack: "c" },
    ];
    const rackOf = new Map(brokers.map((b) => [b.id, b.rack]));
    for (let seed = 0; seed < 6; seed++) {
      const replicas = placed(brokers, 12, 3, seed);
      for (const r of replicas) expect(new Set(r.map((b) => rackOf.get(b))).size).toBe(3);
      const { leaders, held } = counts(replicas);
      for (const b of brokers) {
        expect(leaders.get(b.id)).toBe(2);
        expect(held.get(b.id)).toBe(6);
      }
    }
  });

  it("with fewer racks than replicas, racks are used as evenly as possible", () => {
    const brokers = [
      { id: 1, rack: "a" },
      { id: 2, rack: "a" },
      { id: 3, rack: "b" },
      { id: 4, rack: "b" },
    ];
    const rackOf = new Map(brokers.map((b) => [b.id, b.rack]));
    for (const r of placed(brokers, 8, 3, 1)) {
      expect(new Set(r).size).toBe(3);
      expect(new Set(r.map((b) => rackOf.get(b))).size).toBe(2);
    }
  });

  it("RF above the live broker count is INVALID_REPLICATION_FACTOR", () => {
    const result = placeReplicas(three, 3, 4, 0);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.errorCode).toBe(ErrorCode.INVALID_REPLICATION_FACTOR);
      expect(result.message).toContain("live brokers (3)");
    }
    const none = placeReplicas([], 1, 1, 0);
    expect(none.ok).toBe(false);
  });

  it("RF 1 on a single broker works", () => {
    expect(placed([{ id: 7, rack: "" }], 3, 1, 4)).toEqual([[7], [7], [7]]);
  });
});
