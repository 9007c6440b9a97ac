// npm run bench: runs every benchmark in this folder in turn (Node scripts with node, Python ones in
// the venv), after installing what they need the way the test command does: fake-gcs-server
// (test/support/tools.mjs) and the Python environment (test/support/python-env.mjs).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ensurePythonEnv } from "../support/python-env.mjs";
import { ensureFakeGcsServer } from "../support/tools.mjs";

const here = new URL(".", import.meta.url).pathname;
const root = join(here, "..", "..");
const only = process.argv.slice(2);
const benches = readdirSync(here)
  .filter((f) => (f.endsWith(".mjs") || f.endsWith(".py")) && f !== "run.mjs")
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
let emulator;
let venv;
try {
  emulator = ensureFakeGcsServer();
  venv = ensurePythonEnv({ stdio: ["ignore", 2, 2] });
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
let failed = 0;
for (const file of benches) {
  process.stdout.write(`\n== bench ${file}\n`);
  const [command, args] = file.endsWith(".py") ? [join(venv, "bin", "python"), [join(here, file)]] : [process.execPath, [join(here, file)]];
  const result = spawnSync(command, args, { stdio: "inherit", cwd: root, env: { ...process.env, AVATAR_VENV: venv, AVATAR_FAKE_GCS: emulator, HF_HUB_OFFLINE: "1" } });
  if (result.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
