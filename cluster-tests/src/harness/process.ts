// One Runnel process under test: started with execa from built JS, its stdout and stderr appended to
// a log file, signalled by pid, and restartable with the same arguments (same ports, same data dir).
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeSync } from "node:fs";
import { execa, type ResultPromise } from "execa";
import { trackChild, untrackChild } from "./reaper.js";
import { FatalWaitError, pollUntil } from "./wait.js";

/** Lines of a log file quoted in errors about that process. */
export const logTailLines = 15;

export type ProcessState = "running" | "paused" | "exited";

export interface ExitInfo {
  exitCode: number | undefined;
  signal: string | undefined;
}

export interface ManagedProcessOptions {
  /** "controller" or "broker-N": used in errors and as the log file's name. */
  name: string;
  /** The JavaScript entry point, run with this Node binary. */
  entry: string;
  args: readonly string[];
  logPath: string;
  cwd: string;
}

export class ManagedProcess {
  readonly name: string;
  readonly entry: string;
  readonly args: readonly string[];
  readonly logPath: string;
  private readonly cwd: string;
  private subprocess: ResultPromise | undefined;
  private currentPid: number | undefined;
  private exitPromise: Promise<ExitInfo> = Promise.resolve({ exitCode: undefined, signal: undefined });
  private lastExit: ExitInfo | undefined;
  private paused = false;
  /** Byte offset in the log file where the current incarnation's output begins. */
  private logStart = 0;
  /** Every pid this process has had, for checking that none outlives the cluster. */
  readonly pidHistory: number[] = [];

  constructor(options: ManagedProcessOptions) {
    this.name = options.name;
    this.entry = options.entry;
    this.args = options.args;
    this.logPath = options.logPath;
    this.cwd = options.cwd;
  }

  get pid(): number | undefined {
    return this.currentPid;
  }

  get state(): ProcessState {
    if (this.lastExit !== undefined || this.subprocess === undefined) return "exited";
    return this.paused ? "paused" : "running";
  }

  /** How the last incarnation ended, if it has. */
  get exit(): ExitInfo | undefined {
    return this.lastExit;
  }

  /** Starts a new incarnation. The process must not be running. */
  start(): void {
    if (this.state !== "exited") throw new Error(`${this.name} is already ${this.state} (pid ${this.currentPid})`);
    if (!existsSync(this.entry)) {
      throw new Error(`${this.name}: ${this.entry} does not exist; build it first (npm run build)`);
    }
    const fd = openSync(this.logPath, "a");
    try {
      this.logStart = statSync(this.logPath).size;
      const banner = `--- harness: starting ${this.name}: node ${this.entry} ${this.args.join(" ")} at ${new Date().toISOString()}\n`;
      writeSync(fd, banner);
      this.logStart += Buffer.byteLength(banner);
      // The child writes straight into the file: no pipe through this process that could fill up or
      // break if the test process is busy, paused in a debugger, or gone.
      // execa's types list only the literal fds 3..9; any open descriptor works at run time.
      const logFd = fd as 3;
      const subprocess = execa(process.execPath, [this.entry, ...this.args], {
        cwd: this.cwd,
        stdin: "ignore",
        stdout: logFd,
        stderr: logFd,
        cleanup: true,
        reject: false,
        forceKillAfterDelay: false,
      });
      const pid = subprocess.pid;
      if (pid === undefined) throw new Error(`${this.name}: spawning node ${this.entry} failed`);
      this.subprocess = subprocess;
      this.currentPid = pid;
      this.pidHistory.push(pid);
      this.lastExit = undefined;
      this.paused = false;
      trackChild(pid);
      this.exitPromise = subprocess.then((result) => {
        const info: ExitInfo = { exitCode: result.exitCode, signal: result.signal };
        untrackChild(pid);
        if (this.subprocess === subprocess) this.lastExit = info;
        return info;
      });
    } finally {
      closeSync(fd);
    }
  }

  /** Sends a signal to the current incarnation. A stopped process is continued after SIGTERM, so it can act on it. */
  signal(signal: "SIGKILL" | "SIGTERM" | "SIGSTOP" | "SIGCONT"): void {
    const pid = this.currentPid;
    if (pid === undefined || this.state === "exited") throw new Error(`${this.name} is not running; cannot send ${signal}`);
    process.kill(pid, signal);
    if (signal === "SIGSTOP") this.paused = true;
    if (signal === "SIGCONT") this.paused = false;
    if (signal === "SIGTERM" && this.paused) {
      process.kill(pid, "SIGCONT");
      this.paused = false;
    }
  }

  /**
   * SIGSTOP, resolving once the kernel reports the process stopped (signal delivery is asynchronous),
   * so the caller knows it is frozen. Where /proc does not exist it resolves after sending.
   */
  async pause(timeoutMs: number): Promise<void> {
    this.signal("SIGSTOP");
    await this.waitForStopState(true, timeoutMs);
  }

  /** SIGCONT, resolving once the process is no longer stopped. */
  async resume(timeoutMs: number): Promise<void> {
    this.signal("SIGCONT");
    await this.waitForStopState(false, timeoutMs);
  }

  private async waitForStopState(stopped: boolean, timeoutMs: number): Promise<void> {
    const pid = this.currentPid;
    if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return;
    await pollUntil(
      () => {
        const letter = procStateLetter(pid);
        if (letter === undefined) throw new FatalWaitError(new Error(`${this.name} (pid ${pid}) exited while being ${stopped ? "paused" : "resumed"}`));
        return (letter === "T" || letter === "t") === stopped ? true : undefined;
      },
      { timeoutMs, what: `${this.name} (pid ${pid}) did not ${stopped ? "stop after SIGSTOP" : "continue after SIGCONT"}`, intervalMs: 5 },
    );
  }

  /** Resolves when the current incarnation has exited and been reaped. */
  waitForExit(): Promise<ExitInfo> {
    return this.exitPromise;
  }

  /** Resolves with the exit, or undefined if the process is still running after `timeoutMs`. */
  async waitForExitWithin(timeoutMs: number): Promise<ExitInfo | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.exitPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL and wait until reaped (immediate: the kernel does not let a process ignore it). */
  async kill(): Promise<ExitInfo> {
    if (this.state !== "exited") this.signal("SIGKILL");
    return this.waitForExit();
  }

  /**
   * SIGTERM and wait for exit; after `timeoutMs` SIGKILL and throw, since a process that does not
   * stop when asked is a bug the test should see.
   */
  async stop(timeoutMs: number): Promise<ExitInfo> {
    if (this.state === "exited") return this.lastExit ?? { exitCode: undefined, signal: undefined };
    this.signal("SIGTERM");
    const exit = await this.waitForExitWithin(timeoutMs);
    if (exit !== undefined) return exit;
    await this.kill();
    throw new Error(`${this.name} did not exit within ${timeoutMs} ms of SIGTERM (killed it); ${this.logHint()}`);
  }

  /**
   * Waits for a JSON log line whose msg is `msg` (and which passes `match`) from the current
   * incarnation. Fails at once if the process exits first.
   */
  async waitForLog(
    msg: string,
    options: { timeoutMs: number; what: string; match?: (line: Record<string, unknown>) => boolean },
  ): Promise<Record<string, unknown>> {
    const reader = new LogReader(this.logPath, this.logStart);
    return pollUntil(
      () => {
        for (const line of reader.readNewLines()) {
          const parsed = parseJsonLine(line);
          if (parsed !== undefined && parsed["msg"] === msg && (options.match?.(parsed) ?? true)) return parsed;
        }
        if (this.lastExit !== undefined) {
          throw new FatalWaitError(
            new Error(`${options.what}: ${this.name} exited (${describeExit(this.lastExit)}) before logging "${msg}"; ${this.logHint()}`),
          );
        }
        return undefined;
      },
      { timeoutMs: options.timeoutMs, what: options.what, hint: () => this.logHint() },
    );
  }

  /** "logs: PATH" followed by the last lines of the file. */
  logHint(): string {
    return `logs: ${this.logPath}\n${indent(tailOfFile(this.logPath, logTailLines))}`;
  }
}

export function describeExit(exit: ExitInfo): string {
  if (exit.signal !== undefined) return `signal ${exit.signal}`;
  return `exit code ${exit.exitCode ?? "unknown"}`;
}

/** The state letter of /proc/<pid>/stat (R, S, T stopped, Z zombie, ...), or undefined if it is gone. */
export function procStateLetter(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name in parentheses may contain spaces; the state follows the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a growing log file line by line from an offset, keeping a partial last line for later. */
class LogReader {
  private partial = "";
  constructor(
    private readonly path: string,
    private offset: number,
  ) {}

  readNewLines(): string[] {
    if (!existsSync(this.path)) return [];
    const size = statSync(this.path).size;
    if (size <= this.offset) return [];
    const buffer = Buffer.alloc(size - this.offset);
    const fd = openSync(this.path, "r");
    try {
      const read = readSync(fd, buffer, 0, buffer.length, this.offset);
      this.offset += read;
      const text = this.partial + buffer.subarray(0, read).toString("utf8");
      const lines = text.split("\n");
      this.partial = lines.pop() ?? "";
      return lines;
    } finally {
      closeSync(fd);
    }
  }
}

/** Reads at most the last 64 KiB: enough for the tail of any log, cheap for a large one. */
function tailOfFile(path: string, lines: number): string {
  const tailBytesMax = 64 * 1024;
  if (!existsSync(path)) return "(no log file)";
  const size = statSync(path).size;
  const start = Math.max(0, size - tailBytesMax);
  const buffer = Buffer.alloc(size - start);
  const fd = openSync(path, "r");
  try {
    readSync(fd, buffer, 0, buffer.length, start);
  } finally {
    closeSync(fd);
  }
  const all = buffer.toString("utf8").split("\n");
  if (all.at(-1) === "") all.pop();
  return all.slice(-lines).join("\n") || "(empty log)";
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}
