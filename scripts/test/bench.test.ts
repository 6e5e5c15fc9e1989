// Keeps `npm run bench` working: a tiny run must finish, write its JSON with every scenario
// acknowledged and read back, and leave no cluster behind. It asserts no figures: benchmarks print, tests check.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { decodeBatch, RecordBatch } from "@runnel/proto";
import { ceilingBatch } from "../src/bench/ceiling.js";
import { BenchUsageError, parseBenchArgs } from "../src/bench/options.js";

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
        results: Array<{ workload: string; target: string; produced: number; deliveries: number; recordsPerSec: number | null }>;
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
      // W5's figure covers the jobs after its warm-up: a positive rate, not NaN or a negative one.
      const w5 = report.results.find((r) => r.workload === "W5");
      expect(w5?.recordsPerSec).toBeGreaterThan(0);
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

describe("bench options for W5 and the ceiling", () => {
  it("run W5 and the ceiling by default, and --no-ceiling, --w5-* and --ceiling-seconds change them", () => {
    const d = parseBenchArgs([]);
    expect(d).not.toBe("help");
    if (d === "help") return;
    expect(d.workloads).toContain("W5");
    expect({ ceiling: d.ceiling, w5Jobs: d.w5Jobs, w5Workers: d.w5Workers, w5Prefetch: d.w5Prefetch, w5Api: d.w5Api }).toEqual({ ceiling: true, w5Jobs: 100_000, w5Workers: 4, w5Prefetch: 100, w5Api: "share" });
    const o = parseBenchArgs(["--no-ceiling", "--ceiling-seconds", "3", "--w5-jobs", "100", "--w5-workers", "2", "--w5-prefetch", "7", "--w5-api", "tasks", "--workloads", "w5"]);
    if (o === "help") throw new Error("unexpected help");
    expect({ ceiling: o.ceiling, ceilingSeconds: o.ceilingSeconds, w5Jobs: o.w5Jobs, w5Workers: o.w5Workers, w5Prefetch: o.w5Prefetch, w5Api: o.w5Api, workloads: o.workloads })
      .toEqual({ ceiling: false, ceilingSeconds: 3, w5Jobs: 100, w5Workers: 2, w5Prefetch: 7, w5Api: "tasks", workloads: ["W5"] });
  });

  it("refuses an unknown --w5-api and a --w5-workers of 0", () => {
    expect(() => parseBenchArgs(["--w5-api", "celery"])).toThrow(BenchUsageError);
    expect(() => parseBenchArgs(["--w5-workers", "0"])).toThrow(BenchUsageError);
  });

  it("builds the ceiling's batch as a valid RecordBatch of W1's batch size (256 KiB less the producer's overheads)", () => {
    for (const [valueBytes, records] of [[1024, 250], [100, 2113]] as const) {
      const b = ceilingBatch(valueBytes);
      expect(b.recordsPerBatch).toBe(records);
      const decoded = decodeBatch(RecordBatch.decode(b.bytes));
      expect(decoded).toHaveLength(records);
      expect(decoded.every((r) => r.value?.byteLength === valueBytes)).toBe(true);
      expect(b.bytes.byteLength).toBeLessThanOrEqual(256 * 1024);
    }
  });
});
