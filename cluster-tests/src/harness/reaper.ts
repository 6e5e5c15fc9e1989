// Makes sure no process a test started outlives the test run. Three layers, because each covers a
// way the others fail:
//  1. execa's `cleanup: true` terminates children when the test process exits or gets a signal;
//  2. a process 'exit' handler SIGKILLs every live child (execa's SIGTERM does not stop a child that
//     is SIGSTOPped or that ignores it);
//  3. a detached watchdog process per test process polls the test process and SIGKILLs the children
//     listed in a pid file when it disappears, which covers a vitest worker that is itself SIGKILLed
//     (a timeout that kills the pool, an OOM kill), where no handler in this process can run.
import { spawn } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** How often the watchdog checks that the test process is still there. */
export const watchdogPollMs = 250;

const livePids = new Set<number>();
let exitHandlerInstalled = false;
let watchdog: { pidFile: string; dir: string; pid: number | undefined } | undefined;

/** Records a child as live (to be killed if this process goes away before it is reaped). */
export function trackChild(pid: number): void {
  livePids.add(pid);
  installExitHandler();
  ensureWatchdog();
  writePidFile();
}

/** Records that a child has exited and been reaped: its pid may now be reused by an unrelated process. */
export function untrackChild(pid: number): void {
  livePids.delete(pid);
  writePidFile();
}

/** Pids this process has started that have not exited yet. */
export function trackedPids(): number[] {
  return [...livePids];
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on("exit", () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    if (watchdog !== undefined) rmSync(watchdog.dir, { recursive: true, force: true });
  });
}

// The watchdog is plain JavaScript run with `node -e`, so it needs nothing built. It exits when its
// pid file disappears (the test process removed it on a clean exit) or after killing the orphans.
const watchdogSource = `
const [parentPid, pidFile, pollMs] = process.argv.slice(1);
const fs = require("node:fs");
const readPids = () => { try { return fs.readFileSync(pidFile, "utf8").split(/\\s+/).filter(Boolean).map(Number); } catch { return undefined; } };
setInterval(() => {
  if (readPids() === undefined) process.exit(0);
  try { process.kill(Number(parentPid), 0); return; } catch {}
  for (const pid of readPids() ?? []) { try { process.kill(pid, "SIGKILL"); } catch {} }
  try { fs.rmSync(require("node:path").dirname(pidFile), { recursive: true, force: true }); } catch {}
  process.exit(0);
}, Number(pollMs));
`;

function ensureWatchdog(): void {
  if (watchdog !== undefined) return;
  const dir = mkdtempSync(join(tmpdir(), "runnel-watchdog-"));
  const pidFile = join(dir, "pids");
  watchdog = { dir, pidFile, pid: undefined };
  writePidFile();
  const child = spawn(process.execPath, ["-e", watchdogSource, String(process.pid), pidFile, String(watchdogPollMs)], {
    detached: true,
    stdio: "ignore",
  });
  child.unref();
  watchdog.pid = child.pid;
}

function writePidFile(): void {
  if (watchdog === undefined) return;
  // Written whole and renamed, so the watchdog never reads half a list.
  const tmp = `${watchdog.pidFile}.tmp`;
  writeFileSync(tmp, [...livePids].join("\n"));
  renameSync(tmp, watchdog.pidFile);
}

/** The watchdog's pid (for tests of the reaper itself). */
export function watchdogPid(): number | undefined {
  return watchdog?.pid;
}
