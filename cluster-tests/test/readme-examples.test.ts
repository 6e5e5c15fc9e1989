// The README's command examples are promises: every line of a ```sh block that runs `npx runnel` is run
// here, in order and exactly as written (through bash, from the repository root, so `npx` finds the
// workspace's bin), against a real 3-broker cluster named by RUNNEL_BOOTSTRAP. Each must exit 0, and
// the lines whose output the README describes are checked for it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { type Cluster, repoRoot, sleep, startCluster } from "../src/harness/index.js";

const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
/** Deadline of one command (npx and Node start-up on a loaded machine, plus the command's own waits). */
const commandTimeoutMs = 60_000;
/** Dead letters are produced by the partition leader's share tick after the reject is acknowledged. */
const deadLetterWaitMs = 20_000;

/** Lines of ```sh blocks that run the CLI, in README order. */
function cliLines(markdown: string): string[] {
  const lines: string[] = [];
  let inSh = false;
  for (const line of markdown.split("\n")) {
    if (/^```(sh|bash)\s*$/.test(line)) inSh = true;
    else if (line.startsWith("```")) inSh = false;
    else if (inSh && /(^|\|\s*)npx runnel /.test(line)) lines.push(line);
  }
  return lines;
}

const lines = cliLines(readme);
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200 });
});

afterAll(async () => {
  await cluster?.close();
});

async function run(line: string): Promise<{ stdout: string; stderr: string; exitCode: number | undefined }> {
  const r = await execa("bash", ["-c", line], {
    cwd: repoRoot,
    env: { RUNNEL_BOOTSTRAP: cluster.bootstrap.join(",") },
    reject: false,
    timeout: commandTimeoutMs,
  });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}

describe("README command examples", () => {
  it("has the examples this test expects (the CLI tour and the task-queue tour)", () => {
    expect(lines.some((l) => l.startsWith("npx runnel topic create signups"))).toBe(true);
    expect(lines.some((l) => l.includes("--share-group"))).toBe(true);
    expect(lines.some((l) => l.startsWith("npx runnel dlq redrive"))).toBe(true);
  });

  for (const [i, line] of lines.entries()) {
    it(`${i + 1}: ${line.replace(/\s+#.*$/, "")}`, { timeout: commandTimeoutMs + deadLetterWaitMs + 10_000 }, async () => {
      let r = await run(line);
      if (line.startsWith("npx runnel dlq list")) {
        // The reject above is acknowledged once the share state is durable; the dead letter follows on
        // the leader's next tick. A person typing the next line never sees the gap; a script may.
        const deadline = Date.now() + deadLetterWaitMs;
        while (r.exitCode === 0 && r.stdout.startsWith("no dead letters") && Date.now() < deadline) {
          await sleep(250);
          r = await run(line);
        }
        expect(r.stdout).toContain("bad address");
      }
      expect(r.stderr + r.stdout, `exit code ${r.exitCode}`).not.toMatch(/^runnel: /m);
      expect(r.exitCode).toBe(0);
      if (line.includes("consume signups")) expect(r.stdout.trim().split("\n")).toHaveLength(2);
      if (line.includes("consume emails --share-group emails.workers --max-messages 2")) {
        const taken = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { value: string; deliveryCount: number });
        expect(taken.map((t) => t.value).sort()).toEqual(['{"to":"a@example.com"}', '{"to":"b@example.com"}']);
        expect(taken.every((t) => t.deliveryCount === 1)).toBe(true);
      }
      if (line.startsWith("npx runnel share describe")) expect(r.stdout).toContain("emails.workers");
      if (line.startsWith("npx runnel dlq redrive")) expect(r.stdout).toMatch(/redrove 1 dead letter/);
    });
  }
});
