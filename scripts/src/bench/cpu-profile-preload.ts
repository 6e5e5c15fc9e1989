// Preloaded into cluster processes by `npm run bench -- --profile DIR` (NODE_OPTIONS="--import <this
// file>", since Node 20 refuses --cpu-prof in NODE_OPTIONS). Starts the V8 CPU profiler at once and
// writes DIR/<role>-<pid>.cpuprofile when the process exits normally (SIGTERM runs the processes'
// graceful shutdown, which ends in process.exit). Open the files in Chrome DevTools or speedscope.
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** Sampling interval: finer than V8's 1 ms default, cheap enough for a bench run. */
const samplingIntervalMicros = 500;

const dir = process.env["RUNNEL_BENCH_PROFILE_DIR"];
if (dir !== undefined && dir !== "") {
  const session = new Session();
  session.connect();
  session.post("Profiler.setSamplingInterval", { interval: samplingIntervalMicros });
  session.post("Profiler.enable");
  session.post("Profiler.start");
  const entry = process.argv[1] ?? "node";
  const idFlag = process.argv.indexOf("--id");
  const role = `${basename(dirname(dirname(entry)))}${idFlag >= 0 ? `-${process.argv[idFlag + 1]}` : ""}`;
  process.on("exit", () => {
    // A same-thread inspector session answers synchronously, so this completes inside the exit handler.
    session.post("Profiler.stop", (err, result) => {
      if (err === null) writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
