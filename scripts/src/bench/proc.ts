// Per-process resource figures from Linux /proc: CPU time (utime + stime of /proc/<pid>/stat) and the
// resident-set high-water mark (VmHWM of /proc/<pid>/status), which can be reset to the current RSS
// through /proc/<pid>/clear_refs so that the peak covers the workload only, not start-up. The kernel
// keeps no high-water mark per kind of page, so the split of RSS into anonymous memory (heap, buffers:
// what the process holds) and file pages (LMDB's memory-mapped data file: shared page cache the kernel
// can reclaim) is sampled every few ms during the interval.
import { readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

/** Linux's USER_HZ on every common build; asked of `getconf CLK_TCK` when available. */
const fallbackClockTicksPerSec = 100;

let clockTicksPerSecCache: number | undefined;

export function clockTicksPerSec(): number {
  if (clockTicksPerSecCache === undefined) {
    try {
      const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
      clockTicksPerSecCache = Number.isInteger(n) && n > 0 ? n : fallbackClockTicksPerSec;
    } catch {
      clockTicksPerSecCache = fallbackClockTicksPerSec;
    }
  }
  return clockTicksPerSecCache;
}

/** User + system CPU seconds of `pid` so far, from the text of /proc/<pid>/stat. */
export function cpuSecondsFromStat(statText: string, ticksPerSec: number): number {
  // The command name in parentheses may contain spaces; fields after the last ")" start at field 3 (state).
  const fields = statText.slice(statText.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]); // field 14
  const stime = Number(fields[12]); // field 15
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unexpected /proc/<pid>/stat format: ${statText.slice(0, 200)}`);
  return (utime + stime) / ticksPerSec;
}

/** A "Key: <n> kB" field of /proc/<pid>/status, in KiB; undefined when absent. */
export function statusFieldKiB(statusText: string, key: string): number | undefined {
  const match = new RegExp(`^${key}:\\s+(\\d+)\\s+kB$`, "m").exec(statusText);
  return match === null ? undefined : Number(match[1]);
}

export function readCpuSeconds(pid: number): number {
  return cpuSecondsFromStat(readFileSync(`/proc/${pid}/stat`, "utf8"), clockTicksPerSec());
}

/** Peak resident set size (VmHWM) in KiB. */
export function readPeakRssKiB(pid: number): number | undefined {
  return statusFieldKiB(readFileSync(`/proc/${pid}/status`, "utf8"), "VmHWM");
}

/**
 * Resets VmHWM to the current RSS (writing "5" to clear_refs, Linux >= 4.0). Returns false when not
 * permitted, in which case VmHWM stays the lifetime peak.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** How often the RssAnon/RssFile split is sampled during a measured interval. */
export const rssSplitSampleIntervalMs = 50;

/** The RssAnon, RssFile and RssShmem fields of /proc/<pid>/status in KiB; undefined when absent. */
export function rssSplitKiB(statusText: string): { anon: number; file: number; shmem: number } | undefined {
  const anon = statusFieldKiB(statusText, "RssAnon");
  const file = statusFieldKiB(statusText, "RssFile");
  const shmem = statusFieldKiB(statusText, "RssShmem");
  return anon === undefined || file === undefined ? undefined : { anon, file, shmem: shmem ?? 0 };
}

/** Running maxima of RssAnon and RssFile of one process, read from /proc on a timer. */
class RssSplitSampler {
  peakAnonKiB: number | undefined;
  peakFileKiB: number | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(readonly pid: number) {
    this.sample();
    this.#timer = setInterval(() => this.sample(), rssSplitSampleIntervalMs);
    this.#timer.unref();
  }

  sample(): void {
    let split: ReturnType<typeof rssSplitKiB>;
    try {
      split = rssSplitKiB(readFileSync(`/proc/${this.pid}/status`, "utf8"));
    } catch {
      return; // the process has exited: its earlier samples stand
    }
    if (split === undefined) return;
    this.peakAnonKiB = Math.max(this.peakAnonKiB ?? 0, split.anon);
    this.peakFileKiB = Math.max(this.peakFileKiB ?? 0, split.file);
  }

  stop(): void {
    this.sample();
    clearInterval(this.#timer);
  }
}

export interface ProcessSample {
  cpuSeconds: number;
}

export interface ProcessUsage {
  /** CPU seconds (user + system) used between the two samples. */
  cpuSeconds: number;
  /** Peak RSS in MiB during the interval (lifetime peak when the reset was not permitted). */
  peakRssMiB: number | undefined;
  peakRssResetOk: boolean;
  /** Highest RssAnon sampled during the interval, MiB: heap, buffers and other memory the process holds. */
  peakRssAnonMiB: number | undefined;
  /**
   * Highest RssFile sampled during the interval, MiB: mapped file pages (for a broker, LMDB's data file),
   * shared page cache the kernel can reclaim. Its peak and the anonymous peak need not be simultaneous.
   */
  peakRssFileMiB: number | undefined;
}

/** Samples a process at the start of a measured interval (and resets its peak RSS). */
export function startSample(pid: number): ProcessSample & { peakRssResetOk: boolean; split: RssSplitSampler } {
  const peakRssResetOk = resetPeakRss(pid);
  return { cpuSeconds: readCpuSeconds(pid), peakRssResetOk, split: new RssSplitSampler(pid) };
}

export function endSample(pid: number, start: ProcessSample & { peakRssResetOk: boolean; split: RssSplitSampler }): ProcessUsage {
  start.split.stop();
  const peakKiB = readPeakRssKiB(pid);
  const mib = (kib: number | undefined) => (kib === undefined ? undefined : kib / 1024);
  return {
    cpuSeconds: readCpuSeconds(pid) - start.cpuSeconds,
    peakRssMiB: mib(peakKiB),
    peakRssResetOk: start.peakRssResetOk,
    peakRssAnonMiB: mib(start.split.peakAnonKiB),
    peakRssFileMiB: mib(start.split.peakFileKiB),
  };
}
