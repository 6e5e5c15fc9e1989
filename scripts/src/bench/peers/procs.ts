// Peer server processes: installed with apt-get when missing, started in their own process group
// (RabbitMQ's start script forks the Erlang VM) with output to a log file, and stopped by killing
// exactly that group. Also finds the process in a group whose CPU and memory are the server's.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, openSync, closeSync, readdirSync, readFileSync } from "node:fs";
import { PeerUnavailableError } from "../target.js";

/** Grace period between SIGTERM and SIGKILL of a peer's process group. */
const stopGraceMs = 5_000;
/** apt-get may take this long (download and install). */
const aptTimeoutMs = 600_000;

let aptUpdated = false;

/** Installs Debian `packages` unless `binary` exists already; throws PeerUnavailableError when it cannot. */
export function ensureInstalled(binary: string, packages: readonly string[], log: (line: string) => void): void {
  if (existsSync(binary)) return;
  log(`${binary} missing: apt-get install ${packages.join(" ")} ...`);
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    if (!aptUpdated) execFileSync("apt-get", ["update"], { stdio: "ignore", timeout: aptTimeoutMs, env });
    aptUpdated = true;
    execFileSync("apt-get", ["install", "-y", "--no-install-recommends", ...packages], { stdio: "ignore", timeout: aptTimeoutMs, env });
  } catch (err) {
    throw new PeerUnavailableError(`could not install ${packages.join(" ")} with apt-get (${err instanceof Error ? err.message.split("\n")[0] : String(err)})`);
  }
  if (!existsSync(binary)) throw new PeerUnavailableError(`apt-get installed ${packages.join(" ")} but ${binary} is still missing`);
}

export interface GroupProcess {
  /** The group leader's pid (= the process group id). */
  pid: number;
  exited: () => boolean;
  /** SIGTERM to the group, SIGKILL after a grace period; resolves when the leader has exited. */
  stop(): Promise<void>;
}

export function spawnGroup(command: string, args: readonly string[], env: NodeJS.ProcessEnv, logFile: string, cwd?: string): GroupProcess {
  const fd = openSync(logFile, "a");
  const child = spawn(command, [...args], { env, cwd, detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once("exit", () => { exited = true; resolve(); }));
  child.once("error", () => { exited = true; });
  const pid = child.pid;
  if (pid === undefined) throw new PeerUnavailableError(`could not start ${command} (see ${logFile})`);
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already.
    }
  };
  return {
    pid,
    exited: () => exited,
    stop: async () => {
      signalGroup("SIGTERM");
      const timer = new Promise<void>((r) => setTimeout(r, stopGraceMs).unref());
      await Promise.race([exit, timer]);
      // Children (the Erlang VM, epmd helpers) may outlive the leader: the group gets SIGKILL either way.
      signalGroup("SIGKILL");
      await Promise.race([exit, new Promise<void>((r) => setTimeout(r, stopGraceMs).unref())]);
    },
  };
}

/** Pids in process group `pgid` whose command name is `comm`, from /proc. */
export function groupPidsNamed(pgid: number, comm: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && name === comm) out.push(Number(entry));
    } catch {
      // Exited while listing.
    }
  }
  return out;
}

export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, pollMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new PeerUnavailableError(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
