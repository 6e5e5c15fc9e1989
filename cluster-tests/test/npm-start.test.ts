// `npm start` is the README's first command: one script that runs a local 3-broker cluster on the
// DESIGN.md ports. This runs what it runs (`npm start` is `npm run build && node scripts/dist/start.js`;
// `npm test` has built already) on those ports with its own data directory, reaches it with the CLI's
// default bootstrap (no RUNNEL_BOOTSTRAP, no --bootstrap), stops it with Ctrl-C, starts it again on
// the same data and stops it with SIGTERM: the data survives, every process it started is gone.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { execa, type ResultPromise } from "execa";
import { repoRoot, sleep } from "../src/harness/index.js";

/** From spawning the script to its "ready" line (it waits up to 60 s for every broker itself). */
const readyTimeoutMs = 90_000;
/** From the signal to the script's exit (brokers get 30 s for controlled shutdown, the controller 10 s). */
const stopTimeoutMs = 60_000;
/** Deadline of one CLI command (npx and Node start-up on a loaded machine, plus the command's own waits). */
const commandTimeoutMs = 60_000;

const dataDir = mkdtempSync(join(tmpdir(), "runnel-npm-start-"));
/** The environment of a user's shell: no RUNNEL_BOOTSTRAP, so the CLI uses its default, 127.0.0.1:7401. */
const userEnv: Record<string, string | undefined> = { ...process.env };
delete userEnv["RUNNEL_BOOTSTRAP"];

interface Started {
  subprocess: ResultPromise;
  output: () => string;
}
let current: Started | undefined;

/** Processes whose command line names this test's data directory: the ones the script started. */
function processesUsingDataDir(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dataDir)) pids.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return pids;
}

async function start(): Promise<Started> {
  const subprocess = execa(process.execPath, [join(repoRoot, "scripts", "dist", "start.js"), "--data-dir", dataDir, "--log-level", "warn"], {
    cwd: repoRoot,
    env: userEnv,
    extendEnv: false,
    reject: false,
    stdin: "ignore",
  });
  let output = "";
  subprocess.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  subprocess.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const started: Started = { subprocess, output: () => output };
  current = started;
  let exited = false;
  void subprocess.then(() => (exited = true));
  const deadline = Date.now() + readyTimeoutMs;
  while (!output.includes(`Runnel cluster ready: controller 127.0.0.1:7400, brokers 127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403, data in ${dataDir}`)) {
    if (exited) throw new Error(`npm start exited before the cluster was ready:\n${output}`);
    if (Date.now() > deadline) throw new Error(`npm start was not ready within ${readyTimeoutMs} ms:\n${output}`);
    await sleep(100);
  }
  return started;
}

async function stop(started: Started, signal: "SIGINT" | "SIGTERM"): Promise<void> {
  started.subprocess.kill(signal);
  const result = await Promise.race([started.subprocess, sleep(stopTimeoutMs).then(() => undefined)]);
  expect(result, `npm start did not stop within ${stopTimeoutMs} ms of ${signal}:\n${started.output()}`).toBeDefined();
  expect(result!.exitCode, started.output()).toBe(0);
  expect(started.output()).toContain("runnel start: stopped");
  // Every process it started has exited (they run in their own process groups, so this is not implied).
  expect(processesUsingDataDir()).toEqual([]);
  current = undefined;
}

async function cli(line: string): Promise<string> {
  const r = await execa("bash", ["-c", line], { cwd: repoRoot, env: userEnv, extendEnv: false, reject: false, timeout: commandTimeoutMs });
  expect(r.exitCode, `${line}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

afterAll(() => {
  // Only after a failed assertion: stop what this test started, by PID.
  if (current?.subprocess.pid !== undefined && current.subprocess.exitCode === null) current.subprocess.kill("SIGKILL");
  for (const pid of processesUsingDataDir()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe("npm start", () => {
  it("is `npm run build && node scripts/dist/start.js`, the command this test runs after the build", () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts["start"]).toBe("npm run build && node scripts/dist/start.js");
  });

  it("runs a 3-broker cluster the CLI reaches by default, keeps its data across a restart, and leaves nothing behind", { timeout: 2 * readyTimeoutMs + 2 * stopTimeoutMs + 6 * commandTimeoutMs }, async () => {
    const first = await start();
    // The script, the controller and three brokers, each naming the data directory (what stop() checks is gone).
    expect(processesUsingDataDir()).toHaveLength(5);
    const status = await cli("npx runnel cluster status");
    for (const port of [7401, 7402, 7403]) expect(status).toContain(`127.0.0.1:${port}`);
    await cli("npx runnel topic create npm-start-demo --partitions 3 --replication-factor 3 --config min.insync.replicas=2");
    await cli("printf 'a\\nb\\nc\\n' | npx runnel produce npm-start-demo");
    const before = await cli("npx runnel consume npm-start-demo --from-beginning --timeout-ms 5000");
    expect(before.split("\n").filter((l) => l !== "").sort()).toEqual(["a", "b", "c"]);
    await stop(first, "SIGINT");

    const second = await start();
    const after = await cli("npx runnel consume npm-start-demo --from-beginning --timeout-ms 5000");
    expect(after.split("\n").filter((l) => l !== "").sort()).toEqual(["a", "b", "c"]);
    await stop(second, "SIGTERM");
  });
});
