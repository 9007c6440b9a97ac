// npm run bench: runs every benchmark in this folder in turn (Node scripts with node, Python ones in the venv).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const root = join(here, "..", "..");
const only = process.argv.slice(2);
const venv = process.env.AVATAR_VENV ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "avatar", "venv");
const benches = readdirSync(here)
  .filter((f) => (f.endsWith(".mjs") || f.endsWith(".py")) && f !== "run.mjs")
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
let failed = 0;
for (const file of benches) {
  process.stdout.write(`\n== bench ${file}\n`);
  const [command, args] = file.endsWith(".py") ? [join(venv, "bin", "python"), [join(here, file)]] : [process.execPath, [join(here, file)]];
  const result = spawnSync(command, args, { stdio: "inherit", cwd: root, env: { ...process.env, AVATAR_VENV: venv, HF_HUB_OFFLINE: "1" } });
  if (result.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
