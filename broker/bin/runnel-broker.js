#!/usr/bin/env node
// The `runnel-broker` command. npm links a workspace's bins at install time, before anything is built, and
// skips a bin whose file does not exist yet: this small committed file is the bin, and it loads the
// compiled code from dist/ (built by `npm run build`, `npm start` and `npm test`).
import { existsSync } from "node:fs";

const compiled = new URL("../dist/main.js", import.meta.url);
if (!existsSync(compiled)) {
  process.stderr.write("runnel-broker: the broker is not built yet; run `npm run build` (or `npm start`) in the repository root first\n");
  process.exit(1);
}
await import(compiled.href);
