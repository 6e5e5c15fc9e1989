// Client side of consumer groups: what an assignment change means for a member (revoke first, start
// the rest), and option checks. The end-to-end behaviour runs in cluster-tests/test/groups.test.ts.
import { describe, expect, it } from "vitest";
import { Runnel, diffAssignment } from "../src/index.js";

describe("diffAssignment", () => {
  it("revokes what the new assignment drops and starts only what is new; kept partitions are untouched", () => {
    const owned = [{ topic: "t", partition: 0 }, { topic: "t", partition: 1 }, { topic: "u", partition: 0 }];
    const { revoked, added } = diffAssignment(owned, [{ topic: "t", partitions: [1, 2] }, { topic: "u", partitions: [0] }]);
    expect(revoked).toEqual([{ topic: "t", partition: 0 }]);
    expect(added).toEqual([{ topic: "t", partition: 2 }]);
  });

  it("an empty assignment revokes everything; an unchanged one changes nothing", () => {
    const owned = [{ topic: "t", partition: 3 }];
    expect(diffAssignment(owned, [])).toEqual({ revoked: owned, added: [] });
    expect(diffAssignment(owned, [{ topic: "t", partitions: [3] }])).toEqual({ revoked: [], added: [] });
  });

  it("duplicates in an assignment are started once", () => {
    expect(diffAssignment([], [{ topic: "t", partitions: [1, 1] }]).added).toEqual([{ topic: "t", partition: 1 }]);
  });
});

describe("groupConsumer options", () => {
  const client = new Runnel({ bootstrap: "127.0.0.1:1" });

  it("needs a group id and topics or a pattern, not both", () => {
    expect(() => client.groupConsumer({ groupId: "", topics: ["t"] })).toThrow(/groupId/);
    expect(() => client.groupConsumer({ groupId: "g" })).toThrow(/topics or a topicPattern/);
    expect(() => client.groupConsumer({ groupId: "g", topics: ["t"], topicPattern: "t.*" })).toThrow(/not both/);
    expect(() => client.groupConsumer({ groupId: "g", topics: ["t"], autoCommitIntervalMs: 0 })).toThrow(/autoCommitIntervalMs/);
  });

  it("closes cleanly without ever joining", async () => {
    const c = client.groupConsumer({ groupId: "g", topics: ["t"] });
    await c.close();
    expect(await c.next()).toBeUndefined();
    await client.close();
  });
});
