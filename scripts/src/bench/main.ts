// `npm run bench`: replicated produce throughput on a fresh local 3-broker cluster. This folder owns
// the bench: options.ts (flags), workload.ts (the windowed produce loop), proc.ts (/proc CPU and peak
// RSS), stats.ts and report.ts (figures and tables), run.ts (cluster and scenarios),
// cpu-profile-preload.ts (--profile). This file is the
// process shell: it prints, writes bench-results/<timestamp>.json, and makes sure the cluster is
// killed and its temp dir removed at the end, on error, and on Ctrl-C or SIGTERM.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ClusterStartError, type Cluster } from "@runnel/cluster-tests";
import { benchUsage, BenchUsageError, parseBenchArgs, type BenchOptions } from "./options.js";
import { formatReport } from "./report.js";
import { BenchInterrupted, runBench } from "./run.js";

/** <repo>/scripts/dist/bench/main.js -> <repo>. */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/** Exit code after SIGINT, as a shell reports it (128 + 2). */
const interruptedExitCode = 130;

let cluster: Cluster | undefined;
let interrupted = false;
let closing: Promise<void> | undefined;
let keepDir = false;

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** Kills every cluster process and removes the temp dir (idempotent). */
function closeCluster(): Promise<void> {
  if (cluster === undefined) return Promise.resolve();
  const c = cluster;
  // close({ failed: true }) is how the harness is told to keep the dir.
  closing ??= c.close({ failed: keepDir }).then(() => {
    if (keepDir) log(`kept the cluster's logs and data in ${c.dir}`);
    else rmSync(c.dir, { recursive: true, force: true });
  });
  return closing;
}

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) return;
  interrupted = true;
  log(`${signal}: stopping the cluster`);
  // Before the cluster exists, runBench sees `interrupted` once startCluster returns and stops there.
  if (cluster !== undefined) {
    void closeCluster().finally(() => process.exit(interruptedExitCode));
  }
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    const parsed = parseBenchArgs(process.argv.slice(2));
    if (parsed === "help") {
      process.stdout.write(`${benchUsage}\n`);
      return 0;
    }
    options = parsed;
  } catch (err) {
    if (err instanceof BenchUsageError) {
      process.stderr.write(`bench: ${err.message}\n${benchUsage}\n`);
      return 2;
    }
    throw err;
  }
  if (options.profileDir !== undefined) {
    options.profileDir = isAbsolute(options.profileDir) ? options.profileDir : resolve(process.cwd(), options.profileDir);
    mkdirSync(options.profileDir, { recursive: true });
  }
  keepDir = options.keepDir;
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const report = await runBench(options, {
      log,
      onCluster: (c) => {
        cluster = c;
        if (interrupted) throw new BenchInterrupted("interrupted during start-up");
      },
      interrupted: () => interrupted,
    });
    await closeCluster();
    process.stdout.write(`${formatReport(report)}\n`);
    const outDir = isAbsolute(options.outDir) ? options.outDir : join(repoRoot, options.outDir);
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `${report.startedAt.replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`\nresults written to ${file}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ClusterStartError) {
      // startCluster keeps the dir of a failed start; the bench promises to leave nothing behind.
      log(`cluster did not start: ${err.message}`);
      rmSync(err.dir, { recursive: true, force: true });
      return 1;
    }
    if (err instanceof BenchInterrupted || interrupted) {
      log("interrupted");
      return interruptedExitCode;
    }
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  } finally {
    await closeCluster();
  }
}

process.exitCode = await main();
