// Keeps `npm run bench` working: a tiny run must finish, write its JSON with every scenario
// acknowledged, and leave no cluster behind. It asserts no figures: benchmarks print, tests check.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const repo = join(import.meta.dirname, "..", "..");

describe("npm run bench", () => {
  it("completes a --quick run with results for every scenario and cleans up", async () => {
    const out = mkdtempSync(join(tmpdir(), "runnel-bench-out-"));
    try {
      const run = await execa("node", [join(repo, "scripts", "dist", "bench", "main.js"), "--quick", "--out", out], { cwd: repo, reject: false, timeout: 120_000 });
      expect(run.exitCode, run.stderr + run.stdout).toBe(0);
      const files = readdirSync(out).filter((f) => f.endsWith(".json"));
      expect(files).toHaveLength(1);
      const report = JSON.parse(readFileSync(join(out, files[0]!), "utf8")) as { scenarios: Array<{ acked: number }> };
      expect(report.scenarios).toHaveLength(3);
      for (const s of report.scenarios) expect(s.acked).toBeGreaterThan(0);
      // The cluster it started (its own temp dir, named in its output) is gone.
      const clusterDir = /cluster up in (\S+)/.exec(run.stderr + run.stdout)?.[1];
      expect(clusterDir, run.stderr).toBeDefined();
      expect(existsSync(clusterDir!)).toBe(false);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
