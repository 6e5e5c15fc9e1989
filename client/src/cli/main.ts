#!/usr/bin/env node
// The `runnel` executable: wires the process (argv, stdio, environment, Ctrl-C) to runCli.
import { runCli } from "./run.js";

const controller = new AbortController();
let interrupted = false;
const onSignal = () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort();
};
process.on("SIGINT", onSignal);
// SIGTERM stops as gracefully as Ctrl-C (a group consumer commits and leaves its group).
process.on("SIGTERM", onSignal);
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  // `runnel consume ... | head` closes the pipe early: that is a normal end, not a failure.
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await runCli(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
// Exit once stdout and stderr are drained, even if a handle (stdin, a channel) would keep the loop alive.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
