// Per-process resource figures from Linux /proc: CPU time (utime + stime of /proc/<pid>/stat) and the
// resident-set high-water mark (VmHWM of /proc/<pid>/status), which can be reset to the current RSS
// through /proc/<pid>/clear_refs so that the peak covers the workload only, not start-up.
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

export interface ProcessSample {
  cpuSeconds: number;
}

export interface ProcessUsage {
  /** CPU seconds (user + system) used between the two samples. */
  cpuSeconds: number;
  /** Peak RSS in MiB during the interval (lifetime peak when the reset was not permitted). */
  peakRssMiB: number | undefined;
  peakRssResetOk: boolean;
}

/** Samples a process at the start of a measured interval (and resets its peak RSS). */
export function startSample(pid: number): ProcessSample & { peakRssResetOk: boolean } {
  const peakRssResetOk = resetPeakRss(pid);
  return { cpuSeconds: readCpuSeconds(pid), peakRssResetOk };
}

export function endSample(pid: number, start: ProcessSample & { peakRssResetOk: boolean }): ProcessUsage {
  const peakKiB = readPeakRssKiB(pid);
  return {
    cpuSeconds: readCpuSeconds(pid) - start.cpuSeconds,
    peakRssMiB: peakKiB === undefined ? undefined : peakKiB / 1024,
    peakRssResetOk: start.peakRssResetOk,
  };
}
