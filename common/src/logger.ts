// Structured JSON logs (pino) with the process role and id on every line, so the logs of a cluster
// can be merged and filtered.
import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger };

export const logLevels: readonly LevelWithSilent[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function createLogger(options: { role: "controller" | "broker" | "client" | "test"; id?: number | string; level?: string }): Logger {
  const level = (options.level ?? "info") as LevelWithSilent;
  return pino({
    level,
    base: { role: options.role, ...(options.id === undefined ? {} : { id: options.id }) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
