// The project's Python environment for the test suites and the benchmarks, made by the product's
// own set-up code (`avatar doctor --setup-python`: uv, the pinned versions, a stamp; a second call
// installs nothing). Plain JavaScript for run-all.mjs and bench/run.mjs; needs the built CLI.
import { spawnSync } from "node:child_process";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** Where the venv is: $AVATAR_VENV, else the CLI's default ($XDG_CACHE_HOME/avatar/venv). */
export function venvDir(env = process.env) {
  return env.AVATAR_VENV ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "avatar", "venv");
}

/** Creates or completes the venv when needed; returns its folder. Throws when the set-up fails. */
export function ensurePythonEnv({ env = process.env, stdio = "inherit" } = {}) {
  const venv = venvDir(env);
  const result = spawnSync(process.execPath, [join(root, "bin", "avatar.js"), "doctor", "--setup-python", "--quiet", "--no-input"], {
    stdio,
    cwd: root,
    env: { ...env, AVATAR_VENV: venv },
  });
  if (result.error || result.status !== 0) {
    throw new Error(`Python environment set-up failed${result.error ? `: ${result.error.message}` : ` (exit ${result.status})`}: node bin/avatar.js doctor --setup-python`);
  }
  return venv;
}
