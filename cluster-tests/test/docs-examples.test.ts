// The examples in docs/client.md are promises too: every ```ts block is written to a temp module that
// imports "@runnel/client", type-checked with the repository's strict settings, and run with
// `node --import tsx` against a real cluster (RUNNEL_BOOTSTRAP), in the order the guide shows them;
// every ```sh block runs line by line the way a reader pastes it. Each must exit 0.
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { type Cluster, repoRoot, startCluster } from "../src/harness/index.js";

const guidePath = join(repoRoot, "docs", "client.md");
/** Deadline of one example run (Node and tsx start-up plus the example's own waits, on a loaded machine). */
const exampleTimeoutMs = 45_000;

interface Example {
  lang: "ts" | "sh";
  /** The section heading above the block. */
  section: string;
  code: string;
}

/** The fenced ```ts and ```sh blocks of a Markdown text, with the "## " heading each sits under. */
function extractExamples(markdown: string): Example[] {
  const out: Example[] = [];
  let section = "";
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith("## ")) section = line.slice(3).trim();
    const fence = /^```(ts|typescript|sh|bash)\s*$/.exec(line);
    if (fence === null) continue;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith("```"); i++) body.push(lines[i]!);
    out.push({ lang: fence[1] === "ts" || fence[1] === "typescript" ? "ts" : "sh", section, code: body.join("\n") + "\n" });
  }
  return out;
}

const examples = extractExamples(readFileSync(guidePath, "utf8"));
const tsExamples = examples.filter((e) => e.lang === "ts");
const shExamples = examples.filter((e) => e.lang === "sh");

let cluster: Cluster;
let dir: string;
const files = new Map<Example, string>();

beforeAll(async () => {
  cluster = await startCluster({ brokers: 3, sessionTimeoutMs: 2_000, heartbeatIntervalMs: 200 });
  dir = mkdtempSync(join(tmpdir(), "runnel-docs-"));
  // Bare imports ("@runnel/client") resolve from the temp dir through the repository's node_modules.
  symlinkSync(join(repoRoot, "node_modules"), join(dir, "node_modules"), "dir");
  tsExamples.forEach((e, i) => {
    const file = join(dir, `example-${i + 1}-${e.section.toLowerCase().replace(/[^a-z0-9]+/g, "-")}.mts`);
    writeFileSync(file, e.code);
    files.set(e, file);
  });
});

afterAll(async () => {
  await cluster?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function env(): Record<string, string> {
  return { RUNNEL_BOOTSTRAP: cluster.bootstrap.join(",") };
}

describe("docs/client.md examples", () => {
  it("has TypeScript and shell examples to run", () => {
    expect(tsExamples.map((e) => e.section)).toEqual(expect.arrayContaining(["Connect", "Create a topic", "Produce", "Consume", "Errors"]));
    expect(shExamples.length).toBeGreaterThan(0);
  });

  it("type-check under the repository's strict compiler settings", async () => {
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({
      extends: join(repoRoot, "tsconfig.base.json"),
      compilerOptions: { composite: false, incremental: false, declaration: false, declarationMap: false, noEmit: true, lib: ["ES2023", "DOM"] },
      include: ["*.mts"],
    }));
    const r = await execa(join(repoRoot, "node_modules", ".bin", "tsc"), ["-p", join(dir, "tsconfig.json")], { reject: false, timeout: 60_000 });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
  });

  // In the guide's order: later examples use the topic the earlier ones create.
  it.each(tsExamples.map((e) => [e.section, e] as const))("TypeScript example \"%s\" runs", async (_section, example) => {
    const r = await execa("node", ["--import", "tsx", files.get(example)!], { cwd: dir, env: env(), reject: false, timeout: exampleTimeoutMs });
    expect(r.exitCode, `example "${example.section}" failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr, `example "${example.section}" wrote to stderr`).toBe("");
    expect(r.stdout).not.toBe("");
  });

  it.each(shExamples.flatMap((e) => e.code.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l !== "")).map((l) => [l]))("shell example `%s` runs", async (line) => {
    // `npx runnel` resolves to node_modules/.bin/runnel; calling that directly saves npm's start-up per line.
    const command = line.replace(/\bnpx runnel\b/g, JSON.stringify(join(repoRoot, "node_modules", ".bin", "runnel")));
    const r = await execa("bash", ["-o", "pipefail", "-c", command], { cwd: repoRoot, env: env(), reject: false, timeout: exampleTimeoutMs });
    expect(r.exitCode, `\`${line}\` failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).toBe("");
  });
});
