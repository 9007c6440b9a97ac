// The Python environment of the local backend: a venv with the versions of the Vertex DLC images.
// Created on first use, reused afterwards; a stamp written last makes an interrupted set-up resume.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AvatarError } from "../../core/errors.ts";
import { venvRequirements } from "../../paths.ts";
import { runProcess } from "./process.ts";

/** uv resolves and installs the ~3 GB of torch + CUDA wheels in a fraction of pip's time, from a shared cache. */
const UV_VERSION = "0.9.5";
const STAMP = ".avatar-env.json";
export const SUPPORTED_PYTHON = ["3.11", "3.10", "3.12"] as const;

export interface PythonInfo {
  command: string;
  version: string;
}

export interface VenvStatus {
  dir: string;
  python: string;
  state: "ready" | "missing" | "incomplete" | "outdated";
  requirementsHash: string;
}

export const venvPython = (dir: string) => join(dir, "bin", "python");

async function probe(command: string): Promise<string | undefined> {
  try {
    let version = "";
    const result = await runProcess(command, ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], {
      onLine: (line, stream) => {
        if (stream === "stdout") version = line.trim();
      },
    });
    return result.code === 0 ? version : undefined;
  } catch {
    return undefined;
  }
}

/** AVATAR_PYTHON, else python3.11 (the images' version), else another supported python3. */
export async function findPython(env: Readonly<Record<string, string | undefined>>): Promise<PythonInfo | undefined> {
  const candidates = env.AVATAR_PYTHON ? [env.AVATAR_PYTHON] : ["python3.11", "python3", "python3.12", "python3.10"];
  for (const command of candidates) {
    const version = await probe(command);
    if (version && SUPPORTED_PYTHON.some((v) => version.startsWith(`${v}.`))) return { command, version };
  }
  return undefined;
}

export async function requirementsHash(): Promise<string> {
  return createHash("sha256").update(await readFile(venvRequirements)).digest("hex").slice(0, 16);
}

export async function venvStatus(dir: string): Promise<VenvStatus> {
  const hash = await requirementsHash();
  const python = venvPython(dir);
  const base = { dir, python, requirementsHash: hash };
  if (!existsSync(python)) return { ...base, state: "missing" };
  try {
    const stamp = JSON.parse(await readFile(join(dir, STAMP), "utf8")) as { requirementsHash?: string };
    return { ...base, state: stamp.requirementsHash === hash ? "ready" : "outdated" };
  } catch {
    return { ...base, state: "incomplete" };
  }
}

export interface EnsureOptions {
  dir: string;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** One call per phase, for a spinner or a log line. */
  onPhase?: (phase: string) => void;
  onLine?: (line: string) => void;
}

async function step(what: string, command: string, args: string[], options: EnsureOptions): Promise<void> {
  const result = await runProcess(command, args, {
    env: options.env,
    signal: options.signal,
    onLine: (line) => options.onLine?.(line),
  });
  if (options.signal?.aborted) throw new AvatarError("INTERRUPTED", "Python set-up interrupted; the next run resumes it.");
  if (result.code !== 0) {
    throw new AvatarError("ENVIRONMENT", `${what} failed (exit ${result.code}): ${result.tail.slice(-3).join(" / ")}`, {
      hint: "Check network access to PyPI and free disk space (about 8 GB), then run the command again; it resumes.",
    });
  }
}

/** Returns the venv's python, creating or completing the environment when needed. */
export async function ensurePythonEnv(options: EnsureOptions): Promise<{ python: string; created: boolean }> {
  const status = await venvStatus(options.dir);
  if (status.state === "ready") return { python: status.python, created: false };
  const python = await findPython(options.env);
  if (!python) {
    throw new AvatarError("ENVIRONMENT", "No Python 3.10-3.12 found (the local backend runs the trainer and handler in Python).", {
      hint: "Install Python 3.11 (the version of the Vertex images), or point AVATAR_PYTHON at one.",
    });
  }
  if (status.state === "outdated") await rm(join(options.dir, STAMP), { force: true });
  if (status.state === "missing") {
    options.onPhase?.(`Creating a Python ${python.version} environment in ${options.dir}`);
    await mkdir(options.dir, { recursive: true });
    await step("Creating the venv", python.command, ["-m", "venv", options.dir], options);
  }
  const uv = join(options.dir, "bin", "uv");
  if (!existsSync(uv)) {
    options.onPhase?.(`Installing uv ${UV_VERSION}`);
    await step("Installing uv", status.python, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", `uv==${UV_VERSION}`], options);
  }
  options.onPhase?.("Installing torch, diffusers and friends (first time: about 3 GB to download, a few minutes)");
  await step("Installing Python packages", uv, ["pip", "install", "--python", status.python, "-r", venvRequirements], options);
  await writeFile(
    join(options.dir, STAMP),
    JSON.stringify({ requirementsHash: status.requirementsHash, python: python.version, createdAt: new Date().toISOString() }),
  );
  return { python: status.python, created: true };
}
