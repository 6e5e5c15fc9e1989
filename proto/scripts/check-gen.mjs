// Fails when the committed generated code in src/gen differs from what the .proto files generate now,
// so the contract and the code that implements it cannot drift apart.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "runnel-gen-"));
try {
  execFileSync(join(root, "..", "node_modules", ".bin", "buf"), ["generate", "-o", out], { cwd: root, stdio: "inherit" });
  const list = (dir) =>
    readdirSync(dir).flatMap((name) => {
      const p = join(dir, name);
      return statSync(p).isDirectory() ? list(p) : [p];
    });
  const fresh = new Map(list(join(out, "src", "gen")).map((p) => [relative(join(out, "src", "gen"), p), readFileSync(p, "utf8")]));
  const committed = new Map(list(join(root, "src", "gen")).map((p) => [relative(join(root, "src", "gen"), p), readFileSync(p, "utf8")]));
  const stale = [];
  for (const [name, text] of fresh) if (committed.get(name) !== text) stale.push(name);
  for (const name of committed.keys()) if (!fresh.has(name)) stale.push(name);
  if (stale.length > 0) {
    console.error(`proto/src/gen is out of date with proto/runnel/v1/*.proto: ${stale.join(", ")}. Run 'npm run gen' and commit.`);
    process.exit(1);
  }
  console.log(`generated code is up to date (${fresh.size} files)`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
