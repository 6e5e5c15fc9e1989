// The history check: what the producers were told and what the group handed out, against what the
// partitions hold. Pure: the caller reads the partitions (from every replica, or the leader) and passes
// them in. Each count is one promise of issue 7; `examples` names the first few offenders so a failing
// run says which record, partition and offset to look at.
import { parseRecordValue, type ConsumedRecord, type SentRecord } from "../workload/chaos.js";

export interface LogRecord {
  offset: bigint;
  value: string;
}

export interface HistoryReport {
  acknowledged: number;
  unacknowledged: number;
  /** Acknowledged, but not in the log (must be 0). */
  lost: number;
  /** Acknowledged, present, but at another offset than the acknowledgement named (must be 0). */
  misplaced: number;
  /** Extra copies of a record in a partition (must be 0 with idempotence). */
  duplicated: number;
  /** A producer's record in a partition after one it wrote later (must be 0). */
  reordered: number;
  /** Records the group never handed out, below the end it drained to (must be 0). */
  skippedByGroup: number;
  /** Not acknowledged (failed or unknown), yet in the log: allowed, counted. */
  unacknowledgedPresent: number;
  /** Records in the log that no writer sent (must be 0). */
  unknownInLog: number;
  /** Records the group handed out that the log does not hold at that offset (read before commit, then truncated; must be 0). */
  consumedNotInLog: number;
  /** Records the group handed out more than once (allowed: at-least-once). */
  redeliveredByGroup: number;
  recordsInLog: number;
  examples: string[];
}

/** Most offenders quoted per run. */
export const maxExamples = 20;

/** Problems the counts that must be 0 show, one line each; empty when the history is clean. */
export function historyViolations(r: HistoryReport): string[] {
  const out: string[] = [];
  for (const [name, n] of [["lost", r.lost], ["misplaced", r.misplaced], ["duplicated", r.duplicated], ["reordered", r.reordered], ["skipped by the group", r.skippedByGroup], ["unknown in the log", r.unknownInLog], ["consumed but not in the log", r.consumedNotInLog]] as const) {
    if (n !== 0) out.push(`${n} ${name}`);
  }
  return out;
}

/**
 * `logs[p]` is partition p's committed records in offset order; `sent` every record written (any
 * state); `consumed` what the group handed out, or undefined when no group ran; `groupEnd[p]` the
 * offset the group was drained to (default: the end of the log).
 */
export function checkHistory(input: {
  logs: ReadonlyArray<readonly LogRecord[]>;
  sent: Iterable<SentRecord>;
  consumed?: readonly ConsumedRecord[];
  groupEnd?: readonly bigint[];
}): HistoryReport {
  const report: HistoryReport = {
    acknowledged: 0, unacknowledged: 0, lost: 0, misplaced: 0, duplicated: 0, reordered: 0, skippedByGroup: 0,
    unacknowledgedPresent: 0, unknownInLog: 0, consumedNotInLog: 0, redeliveredByGroup: 0, recordsInLog: 0, examples: [],
  };
  const example = (line: string) => {
    if (report.examples.length < maxExamples) report.examples.push(line);
  };
  // Where each value sits in the log (first copy), per partition.
  const found = new Map<string, { partition: number; offset: bigint }>();
  input.logs.forEach((records, partition) => {
    const lastSeq = new Map<string, number>();
    for (const r of records) {
      report.recordsInLog++;
      if (found.has(r.value)) {
        report.duplicated++;
        example(`duplicate: ${r.value} at partition ${partition} offset ${r.offset} (first at ${found.get(r.value)!.offset})`);
        continue;
      }
      found.set(r.value, { partition, offset: r.offset });
      const id = parseRecordValue(r.value);
      if (id === undefined) continue;
      const prev = lastSeq.get(id.producer);
      if (prev !== undefined && id.seq < prev) {
        report.reordered++;
        example(`reordered: ${r.value} at partition ${partition} offset ${r.offset} after seq ${prev} of ${id.producer}`);
      }
      lastSeq.set(id.producer, Math.max(prev ?? -1, id.seq));
    }
  });
  const known = new Set<string>();
  for (const s of input.sent) {
    known.add(s.value);
    const at = found.get(s.value);
    if (s.state === "acked") {
      report.acknowledged++;
      if (at === undefined) {
        report.lost++;
        example(`lost: ${s.value} acknowledged at partition ${s.partition} offset ${s.offset}`);
      } else if (at.partition !== s.partition || at.offset !== s.offset) {
        report.misplaced++;
        example(`misplaced: ${s.value} acknowledged at partition ${s.partition} offset ${s.offset}, found at partition ${at.partition} offset ${at.offset}`);
      }
    } else {
      report.unacknowledged++;
      if (at !== undefined) report.unacknowledgedPresent++;
    }
  }
  for (const [value, at] of found) {
    if (!known.has(value)) {
      report.unknownInLog++;
      example(`unknown: ${value} at partition ${at.partition} offset ${at.offset} was never sent`);
    }
  }
  if (input.consumed !== undefined) {
    const seen = new Set<string>();
    const logValue = new Map<string, string>();
    input.logs.forEach((records, partition) => {
      for (const r of records) logValue.set(`${partition}/${r.offset}`, r.value);
    });
    for (const c of input.consumed) {
      const k = `${c.partition}/${c.offset}`;
      if (seen.has(k)) report.redeliveredByGroup++;
      seen.add(k);
      if (logValue.get(k) !== c.value) {
        report.consumedNotInLog++;
        example(`consumed but not in the log: ${c.value} at partition ${c.partition} offset ${c.offset} (log holds ${logValue.get(k) ?? "nothing"})`);
      }
    }
    input.logs.forEach((records, partition) => {
      const end = input.groupEnd?.[partition];
      for (const r of records) {
        if (end !== undefined && r.offset >= end) break;
        if (!seen.has(`${partition}/${r.offset}`)) {
          report.skippedByGroup++;
          example(`skipped by the group: partition ${partition} offset ${r.offset} (${r.value})`);
        }
      }
    });
  }
  return report;
}
