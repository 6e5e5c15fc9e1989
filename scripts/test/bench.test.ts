// Keeps `npm run bench` working: a tiny run must finish, write its JSON with every scenario
// acknowledged and read back, and leave no cluster behind. It asserts no figures: benchmarks print, tests check.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const repo = join(import.meta.dirname, "..", "..");

describe("npm run bench", () => {
  it("completes a --quick run with results for every scenario and cleans up", { timeout: 300_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "runnel-bench-out-"));
    try {
      const run = await execa("node", [join(repo, "scripts", "dist", "bench", "main.js"), "--quick", "--out", out], { cwd: repo, reject: false, timeout: 280_000 });
      expect(run.exitCode, run.stderr + run.stdout).toBe(0);
      const files = readdirSync(out).filter((f) => f.endsWith(".json"));
      expect(files).toHaveLength(1);
      const report = JSON.parse(readFileSync(join(out, files[0]!), "utf8")) as {
        results: Array<{ workload: string; target: string; produced: number; deliveries: number }>;
        ceiling: Array<{ step: string; valueBytes: number; records: number }>;
      };
      // Every workload ran on Runnel (W1 twice per durability), produced, and the readers (W5: the
      // workers, each job accepted once) got everything.
      expect(new Set(report.results.map((r) => r.workload))).toEqual(new Set(["W1", "W1-small", "W2", "W3", "W4", "W5"]));
      for (const r of report.results) {
        expect(r.produced, `${r.workload} ${r.target}`).toBeGreaterThan(0);
        if (r.workload === "W4") expect(r.deliveries).toBe(3 * r.produced);
        else if (r.workload !== "W1" && r.workload !== "W1-small") expect(r.deliveries).toBe(r.produced);
      }
      // The ceiling ran every step for both W1 value sizes, and every replica got records.
      expect(report.ceiling.map((c) => `${c.step} ${c.valueBytes}`).sort()).toEqual(
        ["combined 100", "combined 1024", "grpc 100", "grpc 1024", "lmdb 100", "lmdb 1024"],
      );
      for (const c of report.ceiling) expect(c.records, `${c.step} ${c.valueBytes}`).toBeGreaterThan(0);
      expect(readdirSync(out).filter((f) => f.endsWith(".md"))).toHaveLength(1);
      // The cluster it started (its own temp dir, named in its output) is gone, and so are the ceiling's.
      const ceilingDirs = [...(run.stderr + run.stdout).matchAll(/ceiling dir (\S+)/g)].map((m) => m[1]!);
      expect(ceilingDirs).toHaveLength(6);
      for (const d of ceilingDirs) expect(existsSync(d), d).toBe(false);
      const clusterDir = /cluster up in (\S+)/.exec(run.stderr + run.stdout)?.[1];
      expect(clusterDir, run.stderr).toBeDefined();
      expect(existsSync(clusterDir!)).toBe(false);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
