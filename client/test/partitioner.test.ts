import { describe, expect, it } from "vitest";
import { murmur2, partitionForKey, StickyPartitioner, toPositive } from "../src/producer/partitioner.js";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("murmur2 matches Kafka's Utils.murmur2", () => {
  // Kafka clients UtilsTest.testMurmur2.
  it.each([
    ["21", -973932308],
    ["foobar", -790332482],
    ["a-little-bit-long-string", -985981536],
    ["a-little-bit-longer-string", -1486304829],
    ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
    ["abc", 479470107],
    // Values checked against Kafka's implementation by Akka's Murmur2Spec (every tail length 1..5).
    ["1", -1993445489],
    ["12", 126087238],
    ["123", -267702483],
    ["1234", -1614185708],
    ["12345", -1188365604],
  ])("murmur2(%j) = %d", (input, expected) => {
    expect(murmur2(bytes(input))).toBe(expected);
  });
});

describe("default partitioner: toPositive(murmur2(key)) % numPartitions", () => {
  it("toPositive clears the sign bit instead of negating", () => {
    expect(toPositive(-1)).toBe(0x7fffffff);
    expect(toPositive(-2147483648)).toBe(0);
    expect(toPositive(5)).toBe(5);
  });

  it("places keys where a Java producer would", () => {
    // toPositive(-790332482) = 1357151166; 1357151166 % 3 = 0, % 7 = 6
    expect(partitionForKey(bytes("foobar"), 3)).toBe(1357151166 % 3);
    expect(partitionForKey(bytes("foobar"), 7)).toBe(1357151166 % 7);
    // toPositive(479470107) = 479470107 (already positive)
    expect(partitionForKey(bytes("abc"), 10)).toBe(479470107 % 10);
    expect(partitionForKey(bytes("21"), 1)).toBe(0);
  });

  it("rejects a partition count below 1", () => {
    expect(() => partitionForKey(bytes("x"), 0)).toThrow(RangeError);
  });
});

describe("sticky partitioner for keyless records (KIP-480)", () => {
  it("keeps one partition until its batch is sealed, then moves to a different one", () => {
    let seed = 0.3;
    const sticky = new StickyPartitioner(() => (seed = (seed * 9301 + 0.49297) % 1));
    const first = sticky.partition("t", 4);
    for (let i = 0; i < 50; i++) expect(sticky.partition("t", 4)).toBe(first);
    sticky.onBatchSealed("t", first, 4);
    const second = sticky.partition("t", 4);
    expect(second).not.toBe(first);
    expect(second).toBeGreaterThanOrEqual(0);
    expect(second).toBeLessThan(4);
    // Sealing a batch of some other partition does not move the sticky choice.
    sticky.onBatchSealed("t", (second + 1) % 4, 4);
    expect(sticky.partition("t", 4)).toBe(second);
  });
});
