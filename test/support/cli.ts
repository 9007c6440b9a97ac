// Runs the built CLI in a child process, the way users and CI scripts do, with both streams captured.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { onTestFinished } from "vitest";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const cliPath = join(repoRoot, "bin", "avatar.js");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as the --json envelope (undefined when it is not JSON). */
  json: { ok: boolean; data?: any; error?: { code: string; message: string; hint?: string } } | undefined;
}

export interface CliOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Written to the CLI's stdin, then closed (default: no stdin). */
  stdin?: string;
}

/** A scratch directory removed when the test ends. */
export function tempDir(prefix = "avatar-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A clean environment: no CI markers or Google credentials leak in from the machine running the tests. */
export function cleanEnv(home: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    HOME: home,
    XDG_CACHE_HOME: join(home, ".cache"),
    NO_COLOR: "1",
    AVATAR_VENV: process.env.AVATAR_VENV,
    // The suites' photos are synthetic colour fields without faces: face tests turn this back on.
    AVATAR_FACE_CHECK: "0",
    // generate's likeness scoring (a face model load per run) is tested in test/likeness; elsewhere it only costs time.
    AVATAR_LIKENESS: "0",
    ...extra,
  };
  return env;
}

/** An environment for spawn: the variables set to undefined left out. */
export function spawnEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv;
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd: options.cwd ?? repoRoot,
      env: spawnEnv({ AVATAR_FACE_CHECK: "0", ...(options.env ?? process.env) }),
      stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      timeout: options.timeoutMs ?? 60_000,
    });
    child.stdin?.end(options.stdin);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => {
      let json: CliResult["json"];
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}
