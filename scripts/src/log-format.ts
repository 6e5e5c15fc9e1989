// Turns the JSON log lines (pino) of Runnel processes into one readable line each, prefixed by the
// process name: "broker-1   | 13:24:11.123 INFO  broker registered brokerEpoch=3".

/** Fields every line carries that the prefix and the time/level/msg columns already show. */
const shownElsewhere = new Set(["time", "level", "msg", "role", "id", "pid", "hostname", "v"]);
/** A structured field value longer than this is cut, so one line stays one line. */
export const maxFieldChars = 300;

const levelColors: Record<string, string> = {
  fatal: "\x1b[35m",
  error: "\x1b[31m",
  warn: "\x1b[33m",
  info: "\x1b[32m",
  debug: "\x1b[36m",
  trace: "\x1b[90m",
};
const pinoNumericLevels: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };

export interface FormatOptions {
  /** Width the process name is padded to, so the columns line up. */
  nameWidth: number;
  color: boolean;
}

/** Formats one line of a process's output. Lines that are not JSON objects are printed as they are. */
export function formatLogLine(name: string, line: string, options: FormatOptions): string {
  const prefix = `${name.padEnd(options.nameWidth)} | `;
  const parsed = parseObject(line);
  if (parsed === undefined) return prefix + line;
  const level = levelName(parsed["level"]);
  const time = timeOfDay(parsed["time"]);
  const msg = typeof parsed["msg"] === "string" ? parsed["msg"] : "";
  const fields: string[] = [];
  let stack: string | undefined;
  for (const [key, value] of Object.entries(parsed)) {
    if (shownElsewhere.has(key)) continue;
    if (isErrorObject(value)) {
      fields.push(`${key}=${quoteIfNeeded(String(value.message))}`);
      if (typeof value.stack === "string") stack = value.stack;
      continue;
    }
    fields.push(`${key}=${fieldText(value)}`);
  }
  const levelText = level.toUpperCase().padEnd(5);
  const coloredLevel = options.color ? `${levelColors[level] ?? ""}${levelText}\x1b[0m` : levelText;
  let out = `${prefix}${time} ${coloredLevel} ${msg}${fields.length > 0 ? ` ${fields.join(" ")}` : ""}`;
  if (stack !== undefined && (level === "error" || level === "fatal")) {
    // The first stack line repeats the message.
    const frames = stack.split("\n").slice(1);
    out += frames.map((frame) => `\n${" ".repeat(options.nameWidth)} |     ${frame.trim()}`).join("");
  }
  return out;
}

function parseObject(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function levelName(level: unknown): string {
  if (typeof level === "string") return level;
  if (typeof level === "number") return pinoNumericLevels[level] ?? String(level);
  return "info";
}

/** "2024-05-01T13:24:11.123Z" -> "13:24:11.123" in local time; epoch milliseconds likewise. */
function timeOfDay(time: unknown): string {
  const date = typeof time === "string" || typeof time === "number" ? new Date(time) : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) return "--:--:--.---";
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function isErrorObject(value: unknown): value is { message: unknown; stack?: unknown } {
  return typeof value === "object" && value !== null && "message" in value && ("stack" in value || "type" in value);
}

function fieldText(value: unknown): string {
  const text = typeof value === "string" ? quoteIfNeeded(value) : JSON.stringify(value) ?? String(value);
  return text.length > maxFieldChars ? `${text.slice(0, maxFieldChars)}…` : text;
}

function quoteIfNeeded(text: string): string {
  return /^[^\s"=]*$/.test(text) && text !== "" ? text : JSON.stringify(text);
}
