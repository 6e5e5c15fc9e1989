import { describe, expect, it } from "vitest";
import { ErrorCode } from "@runnel/proto";
import { backoffMs, decideRetry, retryPolicy, withRetry, type RetryEnvironment } from "../src/retry/index.js";
import { ConnectionError, NotLeaderError, RecordTooLargeError, errorFromCode } from "../src/errors/index.js";

const policy = retryPolicy({ initialBackoffMs: 100, maxBackoffMs: 1000, multiplier: 2, jitter: 0.2, maxAttempts: 5, maxTotalMs: 2000 });

describe("retry policy", () => {
  it("backs off exponentially up to the cap, with jitter inside ±jitter", () => {
    expect(backoffMs(policy, 1, 0.5)).toBe(100);
    expect(backoffMs(policy, 2, 0.5)).toBe(200);
    expect(backoffMs(policy, 3, 0.5)).toBe(400);
    expect(backoffMs(policy, 10, 0.5)).toBe(1000);
    expect(backoffMs(policy, 1, 0)).toBe(80);
    expect(backoffMs(policy, 1, 0.9999)).toBeLessThanOrEqual(120);
    expect(backoffMs(policy, 10, 0.9999)).toBe(1000); // jitter never exceeds the cap
  });

  it("retries only retriable errors, within attempts and total time", () => {
    const notLeader = errorFromCode(ErrorCode.NOT_LEADER, { topic: "t", partition: 0 });
    const tooLarge = errorFromCode(ErrorCode.RECORD_TOO_LARGE, { topic: "t", partition: 0 });
    expect(notLeader).toBeInstanceOf(NotLeaderError);
    expect(tooLarge).toBeInstanceOf(RecordTooLargeError);
    expect(decideRetry(policy, notLeader, 1, 0, 0.5)).toEqual({ retry: true, delayMs: 100 });
    expect(decideRetry(policy, tooLarge, 1, 0, 0.5)).toEqual({ retry: false });
    expect(decideRetry(policy, new Error("plain"), 1, 0, 0.5)).toEqual({ retry: false });
    expect(decideRetry(policy, notLeader, 5, 0, 0.5)).toEqual({ retry: false });
    expect(decideRetry(policy, notLeader, 2, 1900, 0.5)).toEqual({ retry: false });
  });

  it("withRetry sleeps the policy's delays on a simulated clock and gives up after maxAttempts", async () => {
    let now = 0;
    const sleeps: number[] = [];
    const env: RetryEnvironment = { nowMs: () => now, random: () => 0.5, sleep: async (ms) => { sleeps.push(ms); now += ms; } };
    let calls = 0;
    const err = errorFromCode(ErrorCode.LEADER_NOT_AVAILABLE, { topic: "t", partition: 1 });
    await expect(withRetry(policy, async () => { calls += 1; throw err; }, { env })).rejects.toBe(err);
    expect(calls).toBe(5);
    expect(sleeps).toEqual([100, 200, 400, 800]);
  });

  it("withRetry returns the first success and refreshes before each retry", async () => {
    let refreshed = 0;
    const env: RetryEnvironment = { nowMs: () => 0, random: () => 0.5, sleep: async () => undefined };
    const result = await withRetry(policy, async (attempt) => {
      if (attempt < 3) throw errorFromCode(ErrorCode.NOT_LEADER, {});
      return attempt;
    }, { env, beforeRetry: () => { refreshed += 1; } });
    expect(result).toBe(3);
    expect(refreshed).toBe(2);
  });

  it("the default policy is bounded by time, not attempts: a fast-failing error is retried for maxTotalMs", async () => {
    const defaults = retryPolicy();
    let now = 0;
    const env: RetryEnvironment = { nowMs: () => now, random: () => 0.5, sleep: async (ms) => { now += ms; } };
    // A refused connection answers at once; the dead leader's replacement comes after the 6 s broker session timeout.
    const refused = new ConnectionError("cannot reach 127.0.0.1:7401", { code: ErrorCode.BROKER_NOT_AVAILABLE, retriable: true });
    const electedAtMs = 6_000 + 1_000;
    await expect(withRetry(defaults, async () => { if (now < electedAtMs) throw refused; return "sent"; }, { env })).resolves.toBe("sent");

    now = 0;
    let calls = 0;
    await expect(withRetry(defaults, async () => { calls += 1; throw refused; }, { env })).rejects.toBe(refused);
    expect(now).toBeGreaterThan(defaults.maxTotalMs - defaults.maxBackoffMs);
    expect(now).toBeLessThanOrEqual(defaults.maxTotalMs);
    expect(calls).toBeGreaterThan(10);
  });

  it("rejects nonsense options", () => {
    expect(() => retryPolicy({ maxAttempts: 0 })).toThrow(RangeError);
    expect(() => retryPolicy({ initialBackoffMs: 500, maxBackoffMs: 100 })).toThrow(RangeError);
  });
});

describe("error table", () => {
  it("maps every code to a class, retriability and structured fields", () => {
    const oor = errorFromCode(ErrorCode.OFFSET_OUT_OF_RANGE, { topic: "t", partition: 2, offset: 99n, logStartOffset: 10n, logEndOffset: 50n });
    expect(oor.name).toBe("OffsetOutOfRangeError");
    expect(oor).toMatchObject({ retriable: false, topic: "t", partition: 2, offset: 99n, logStartOffset: 10n, logEndOffset: 50n, codeName: "OFFSET_OUT_OF_RANGE" });
    const timedOut = errorFromCode(ErrorCode.REQUEST_TIMED_OUT, {});
    expect(timedOut).toMatchObject({ name: "RequestTimedOutError", retriable: true, outcomeUnknown: true });
    expect(errorFromCode(ErrorCode.NOT_ENOUGH_REPLICAS, {})).toMatchObject({ name: "NotEnoughReplicasError", retriable: true, outcomeUnknown: false });
    const nl = errorFromCode(ErrorCode.NOT_LEADER, { leaderHint: { leaderId: 3, leaderEpoch: 7 } }) as NotLeaderError;
    expect(nl.leaderHint).toEqual({ leaderId: 3, leaderEpoch: 7 });
    expect(errorFromCode(999 as ErrorCode, {}).retriable).toBe(false);
  });
});
