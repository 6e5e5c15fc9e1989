// @runnel/scripts: operator scripts. start.ts starts a local cluster (controller + brokers) with the
// DESIGN.md defaults, prints their logs readably and stops them in order; log-format.ts formats lines.
export { formatLogLine, type FormatOptions } from "./log-format.js";
