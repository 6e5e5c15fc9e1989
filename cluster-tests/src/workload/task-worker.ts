// A share-group worker in its own process, so a cluster test can SIGKILL it mid-job (issue 10). It
// accepts the first --fast-jobs records it acquires at once, then holds the next --hold-jobs records as
// if stuck in a long job, renewing their locks every --renew-every-ms until it is killed. Every step is
// one JSON line on stdout, so the test knows which jobs it accepted (acknowledgement confirmed by the
// leader), which it held, and the earliest time each held lock can expire:
//   {"event":"acquired","id","offset","deliveryCount","lockDeadlineMs","receivedAtMs"}
//   {"event":"accepted","id"}                   the leader confirmed the accept
//   {"event":"ack-failed","id","error"}         the accept was refused or its outcome is unknown
//   {"event":"holding","ids":[...]}             from now on it only renews
//   {"event":"renewed","ids":[...],"startedAtMs","lockDeadlineMs"}   every renew of the held records succeeded
//   {"event":"renew-failed","startedAtMs","errors":[...]}
// Usage: node task-worker.js --bootstrap H:P,... --topic T --group G [--lock-ms 3000]
//        [--fast-jobs 3] [--hold-jobs 5] [--renew-every-ms 1000]
import { parseArgs } from "node:util";
import { Runnel, type ShareRecord } from "@runnel/client";

/** How long one poll waits for records before polling again. */
const pollTimeoutMs = 1_000;

const { values } = parseArgs({
  options: {
    bootstrap: { type: "string" },
    topic: { type: "string" },
    group: { type: "string" },
    "lock-ms": { type: "string", default: "3000" },
    "fast-jobs": { type: "string", default: "3" },
    "hold-jobs": { type: "string", default: "5" },
    "renew-every-ms": { type: "string", default: "1000" },
  },
});

function intArg(name: string, text: string | undefined, min: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name} must be an integer >= ${min}, got ${String(text)}`);
  return n;
}

const bootstrap = values.bootstrap;
const topic = values.topic;
const group = values.group;
if (bootstrap === undefined || topic === undefined || group === undefined) {
  process.stderr.write("task-worker: --bootstrap, --topic and --group are required\n");
  process.exit(2);
}
const lockMs = intArg("lock-ms", values["lock-ms"], 1000);
const fastJobs = intArg("fast-jobs", values["fast-jobs"], 0);
const holdJobs = intArg("hold-jobs", values["hold-jobs"], 1);
const renewEveryMs = intArg("renew-every-ms", values["renew-every-ms"], 10);

function emit(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
}

function jobId(r: ShareRecord): string {
  return `${r.topic}/${r.partition}/${r.offset}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const runnel = new Runnel({ bootstrap: bootstrap.split(","), clientId: "task-worker" });
// In flight = exactly what this worker accepts and holds, so it never has records the test does not know of.
const consumer = runnel.shareConsumer({ groupId: group, topics: [topic], lockDurationMs: lockMs, maxInFlightRecords: fastJobs + holdJobs });

let accepted = 0;
const held: ShareRecord[] = [];
while (held.length < holdJobs) {
  const records = await consumer.poll({ maxRecords: fastJobs - accepted + holdJobs - held.length, timeoutMs: pollTimeoutMs });
  const receivedAtMs = Date.now();
  const toAccept: ShareRecord[] = [];
  for (const r of records) {
    emit({ event: "acquired", id: jobId(r), offset: r.offset, deliveryCount: r.deliveryCount, lockDeadlineMs: r.lockDeadlineMs, receivedAtMs });
    if (accepted + toAccept.length < fastJobs) toAccept.push(r);
    else held.push(r);
  }
  const outcomes = await Promise.all(toAccept.map((r) => consumer.acknowledge(r, "accept")));
  toAccept.forEach((r, i) => {
    const error = outcomes[i]!.error;
    if (error === undefined) {
      accepted += 1;
      emit({ event: "accepted", id: jobId(r) });
    } else {
      emit({ event: "ack-failed", id: jobId(r), error: `${error.name}: ${error.message}` });
    }
  });
}

emit({ event: "holding", ids: held.map(jobId) });
for (;;) {
  await sleep(renewEveryMs);
  const startedAtMs = Date.now();
  const renewed = await Promise.allSettled(held.map((r) => consumer.renew(r)));
  const failed = renewed.flatMap((x) => (x.status === "rejected" ? [String(x.reason)] : []));
  if (failed.length > 0) emit({ event: "renew-failed", startedAtMs, errors: failed });
  else emit({ event: "renewed", ids: held.map(jobId), startedAtMs, lockDeadlineMs: Math.min(...held.map((r) => r.lockDeadlineMs)) });
}
