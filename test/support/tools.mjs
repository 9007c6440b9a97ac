// Tools the test suites, `npm run fakes` and the benchmarks need, installed on demand into .tools/bin.
// Plain JavaScript so that run-all.mjs and other .mjs scripts can use it as well as TypeScript.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const toolsBin = join(repoRoot, ".tools", "bin");
export const FAKE_GCS_MODULE = "github.com/fsouza/fake-gcs-server@v1.55.1";

/**
 * The fake-gcs-server binary: $AVATAR_FAKE_GCS when set, else .tools/bin/fake-gcs-server, built from
 * the Go module proxy the first time (needs Go >= 1.25; GOTOOLCHAIN=auto lets an older go fetch one).
 * Build output goes to `stdio` (stderr by default, so stdout stays clean for callers that print data).
 * Throws with a hint when it cannot be built.
 */
export function ensureFakeGcsServer({ stdio = ["ignore", 2, 2] } = {}) {
  if (process.env.AVATAR_FAKE_GCS) {
    if (!existsSync(process.env.AVATAR_FAKE_GCS)) throw new Error(`AVATAR_FAKE_GCS=${process.env.AVATAR_FAKE_GCS} does not exist.`);
    return process.env.AVATAR_FAKE_GCS;
  }
  const binary = join(toolsBin, "fake-gcs-server");
  if (existsSync(binary)) return binary;
  const result = spawnSync("go", ["install", FAKE_GCS_MODULE], {
    stdio,
    cwd: repoRoot,
    env: { ...process.env, GOBIN: toolsBin, GOTOOLCHAIN: process.env.GOTOOLCHAIN ?? "auto" },
  });
  if (result.error || result.status !== 0 || !existsSync(binary)) {
    const why = result.error ? `: ${result.error.message}` : "";
    throw new Error(`Could not build fake-gcs-server${why} (needs Go >= 1.25 and the Go module proxy): GOBIN=${toolsBin} go install ${FAKE_GCS_MODULE}`);
  }
  return binary;
}
