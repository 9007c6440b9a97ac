// The test command: installs what the suites need (GCS emulator, Python env), runs vitest and
// pytest, and ends with one plain line summing both: "N passed, N failed".
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ensurePythonEnv } from "./support/python-env.mjs";
import { ensureFakeGcsServer } from "./support/tools.mjs";

const root = new URL("..", import.meta.url).pathname;
const results = join(root, "test-results");

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: "inherit", cwd: root, ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function step(title) {
  process.stdout.write(`\n== ${title}\n`);
}

// 1. fake-gcs-server, built from the Go module proxy once and kept in .tools/bin (test/support/tools.mjs).
step("GCS emulator");
let emulator;
try {
  emulator = ensureFakeGcsServer({ stdio: "inherit" });
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
console.log(emulator);

// 2. The Python environment, through the product's own set-up code (cached: a second run installs
// nothing; test/support/python-env.mjs, shared with npm run bench).
step("Python environment");
let venv;
try {
  venv = ensurePythonEnv();
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
const env = { ...process.env, AVATAR_VENV: venv, AVATAR_FAKE_GCS: emulator, HF_HUB_OFFLINE: "1" };

rmSync(results, { recursive: true, force: true });
mkdirSync(results, { recursive: true });

// 3. TypeScript suites.
step("vitest");
const vitestJson = join(results, "vitest.json");
run(join(root, "node_modules", ".bin", "vitest"), ["run", "--config", "test/vitest.config.ts", "--reporter=default", "--reporter=json", `--outputFile.json=${vitestJson}`], { env });
let tsPassed = 0;
let tsFailed = 0;
if (existsSync(vitestJson)) {
  const report = JSON.parse(readFileSync(vitestJson, "utf8"));
  tsPassed = report.numPassedTests ?? 0;
  tsFailed = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTests ?? 0) + (report.testResults ?? []).filter((f) => f.status === "failed" && f.assertionResults.length === 0).length;
} else {
  tsFailed = 1;
}

// 4. Python suites, in the project venv.
step("pytest");
const junit = join(results, "pytest.xml");
const pyStatus = run(join(venv, "bin", "python"), ["-m", "pytest", "test/python", "-q", "-p", "no:cacheprovider", `--junitxml=${junit}`], { env });
let pyPassed = 0;
let pyFailed = 0;
if (existsSync(junit)) {
  const xml = readFileSync(junit, "utf8");
  const attr = (name) => Number(new RegExp(`<testsuite[^>]*\\s${name}="(\\d+)"`).exec(xml)?.[1] ?? 0);
  const total = attr("tests");
  pyFailed = attr("failures") + attr("errors");
  pyPassed = total - pyFailed - attr("skipped");
  if (pyStatus !== 0 && pyFailed === 0) pyFailed = 1; // collection errors, exit 5 (no tests), crashes
} else {
  pyFailed = 1;
}

const passed = tsPassed + pyPassed;
const failed = tsFailed + pyFailed;
console.log(`\nvitest: ${tsPassed} passed, ${tsFailed} failed`);
console.log(`pytest: ${pyPassed} passed, ${pyFailed} failed`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
