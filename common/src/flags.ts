// Process configuration: every option is a flag with an environment-variable fallback and a default,
// listed by --help; an unknown flag or a bad value exits non-zero with a one-line reason.
import { Command, InvalidArgumentError, Option } from "commander";

export interface FlagSpec<T> {
  /** Flag name without dashes, e.g. "session-timeout-ms". */
  name: string;
  /** Environment variable consulted when the flag is absent. */
  env: string;
  description: string;
  default: T;
  parse: (text: string) => T;
}

export function intFlag(min: number, max: number): (text: string) => number {
  return (text) => {
    if (!/^-?\d+$/.test(text)) throw new InvalidArgumentError(`"${text}" is not an integer`);
    const n = Number(text);
    if (n < min || n > max) throw new InvalidArgumentError(`${n} is outside ${min}..${max}`);
    return n;
  };
}

export function stringFlag(): (text: string) => string {
  return (text) => text;
}

export function choiceFlag<T extends string>(choices: readonly T[]): (text: string) => T {
  return (text) => {
    if (!(choices as readonly string[]).includes(text)) throw new InvalidArgumentError(`"${text}" is not one of ${choices.join(", ")}`);
    return text as T;
  };
}

/** Parses argv against the specs; exits the process with a one-line reason on error. */
export function parseFlags<S extends Record<string, FlagSpec<unknown>>>(
  program: string,
  summary: string,
  specs: S,
  argv: readonly string[] = process.argv,
): { [K in keyof S]: S[K]["default"] } {
  const cmd = new Command(program).description(summary).allowExcessArguments(false).showHelpAfterError(false);
  cmd.configureOutput({ outputError: (str, write) => write(`${program}: ${str.replace(/^error: /, "").trim()}\n`) });
  for (const spec of Object.values(specs)) {
    const option = new Option(`--${spec.name} <value>`, spec.description).env(spec.env);
    // An empty-string default means "computed from other flags" (the description says how), so --help
    // does not print a misleading `default: ""`; the empty value is filled in after parsing.
    if (spec.default !== "") option.default(spec.default);
    option.argParser((text: string) => {
      try {
        return spec.parse(text);
      } catch (err) {
        throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
      }
    });
    cmd.addOption(option);
  }
  cmd.parse(argv as string[]);
  const values = cmd.opts() as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    const camel = spec.name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    out[key] = values[camel] ?? spec.default;
  }
  return out as { [K in keyof S]: S[K]["default"] };
}
