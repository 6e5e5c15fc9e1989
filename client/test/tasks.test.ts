import { describe, expect, it } from "vitest";
import { notBeforeHeader } from "@runnel/proto";
import {
  backoffDelayMs, buildTaskHeaders, decideOnFailure, defaultBackoff, effectiveMaxAttempts, headersToRecord, jobMaxAttemptsOf, maxAttemptsHeader,
  parsePayload, renewIntervalMs,
} from "../src/tasks/policy.js";

describe("backoff: min(maxMs, initialMs * 2^(attempt-1))", () => {
  it.each([[1, 1_000], [2, 2_000], [3, 4_000], [9, 256_000], [10, 300_000], [2_000, 300_000]])("after attempt %i waits %i ms", (attempt, ms) => {
    expect(backoffDelayMs(attempt, defaultBackoff)).toBe(ms);
  });

  it("follows the options given", () => {
    expect(backoffDelayMs(3, { initialMs: 10, maxMs: 25 })).toBe(25);
    expect(backoffDelayMs(2, { initialMs: 0, maxMs: 0 })).toBe(0);
  });
});

describe("attempts: the job's limit capped by the topic's max.delivery.attempts", () => {
  it.each([[undefined, 5, 5], [3, 5, 3], [8, 5, 5], [0, 5, 5], [2.5, 5, 5]])("job %s, topic %i -> %i", (job, topic, expected) => {
    expect(effectiveMaxAttempts(job, topic)).toBe(expected);
  });

  it("releases with backoff before the last attempt and dead-letters at it", () => {
    expect(decideOnFailure(1, 3, defaultBackoff)).toEqual({ action: "release", delayMs: 1_000 });
    expect(decideOnFailure(2, 3, defaultBackoff)).toEqual({ action: "release", delayMs: 2_000 });
    expect(decideOnFailure(3, 3, defaultBackoff)).toEqual({ action: "reject" });
    // A record delivered more often than its limit (the limit was lowered meanwhile) is dead-lettered too.
    expect(decideOnFailure(4, 3, defaultBackoff)).toEqual({ action: "reject" });
    expect(decideOnFailure(1, 1, defaultBackoff)).toEqual({ action: "reject" });
  });
});

describe("enqueue headers", () => {
  it("sets runnel.not-before to now + delayMs and runnel.task.max-attempts, keeping the caller's headers", () => {
    expect(buildTaskHeaders({ delayMs: 1_500, maxAttempts: 4, headers: { trace: "t1" } }, 1_700_000_000_000)).toEqual({
      trace: "t1", [notBeforeHeader]: "1700000001500", [maxAttemptsHeader]: "4",
    });
  });

  it("adds nothing when no delay or limit is asked (a zero delay is no delay)", () => {
    expect(buildTaskHeaders({}, 5)).toEqual({});
    expect(buildTaskHeaders({ delayMs: 0 }, 5)).toEqual({});
  });

  it("refuses a negative delay and a bad attempt limit", () => {
    expect(() => buildTaskHeaders({ delayMs: -1 }, 0)).toThrow(/delayMs must be a number >= 0/);
    expect(() => buildTaskHeaders({ maxAttempts: 0 }, 0)).toThrow(/maxAttempts must be an integer >= 1/);
    expect(() => buildTaskHeaders({ maxAttempts: 1.5 }, 0)).toThrow(/maxAttempts must be an integer >= 1/);
  });
});

describe("jobs from records", () => {
  it("reads headers as strings and the job's attempt limit when valid", () => {
    const headers = headersToRecord([{ key: maxAttemptsHeader, value: Buffer.from("7") }, { key: "a", value: Buffer.from("1") }]);
    expect(headers).toEqual({ [maxAttemptsHeader]: "7", a: "1" });
    expect(jobMaxAttemptsOf(headers)).toBe(7);
    expect(jobMaxAttemptsOf({ [maxAttemptsHeader]: "0" })).toBeUndefined();
    expect(jobMaxAttemptsOf({ [maxAttemptsHeader]: "x" })).toBeUndefined();
    expect(jobMaxAttemptsOf({})).toBeUndefined();
  });

  it("parses the payload as JSON, falls back to the text, and gives undefined for no value", () => {
    expect(parsePayload(Buffer.from(JSON.stringify({ to: "a@b.c", n: [1, 2] })))).toEqual({ to: "a@b.c", n: [1, 2] });
    expect(parsePayload(Buffer.from("not json"))).toBe("not json");
    expect(parsePayload(null)).toBeUndefined();
  });

  it("renews a running job's lock every half lock duration", () => {
    expect(renewIntervalMs(30_000)).toBe(15_000);
    expect(renewIntervalMs(1)).toBe(1);
  });
});
