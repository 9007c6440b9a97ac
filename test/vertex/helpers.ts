// Shared set-up of the vertex tests: fake-gcs-server + the Vertex fake, a vertex backend opened the
// way the CLI opens it, and the tiny SD1.5 base model (built once per machine state, shared by files).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig } from "../../src/core/config.ts";
import type { Backend } from "../../src/backends/backend.ts";
import { openVertexBackend } from "../../src/backends/vertex/index.ts";
import { repoRoot } from "../support/cli.ts";
import { startGcsEmulator, type GcsEmulator } from "../support/gcs-emulator.ts";
import { fetchObject, startVertexFake, venvPython, type VertexFake, type VertexFakeOptions } from "../support/vertex-fake.ts";

export const PROJECT = "avatar-test";
export const REGION = "us-central1";

export interface VertexWorld {
  gcs: GcsEmulator;
  fake: VertexFake;
  bucket: string;
  /** Environment pointing the CLI / backend at both fakes. */
  env: Record<string, string>;
  backend(extraEnv?: Record<string, string>): Promise<Backend>;
  stop(): Promise<void>;
}

/** `fakeOptions`: the Vertex fake's options (predictTimeoutMs, deployDelayMs, servingGpuQuota, …). */
export async function startVertexWorld(bucket: string, fakeOptions: Omit<VertexFakeOptions, "gcsEndpoint"> = {}): Promise<VertexWorld> {
  const gcs = await startGcsEmulator();
  await gcs.createBucket(bucket);
  const fake = await startVertexFake({ project: PROJECT, ...fakeOptions, env: { HF_HUB_OFFLINE: "1", OMP_NUM_THREADS: "1", ...fakeOptions.env }, gcsEndpoint: gcs.endpoint });
  const env = { AVATAR_GCS_ENDPOINT: gcs.endpoint, AVATAR_VERTEX_ENDPOINT: fake.address, AVATAR_VERTEX_DEDICATED_ENDPOINT: fake.dedicatedAddress, AVATAR_VERTEX_POLL_MS: "150" };
  const opened: Backend[] = [];
  return {
    gcs,
    fake,
    bucket,
    env,
    async backend(extraEnv = {}) {
      const config = resolveConfig({ flags: { backend: "vertex", project: PROJECT, region: REGION, bucket }, env: {}, dotenv: {}, homeDir: tmpdir() });
      const backend = await openVertexBackend({ config, env: { ...env, ...extraEnv } });
      opened.push(backend);
      return backend;
    },
    async stop() {
      await Promise.all(opened.map((b) => b.close()));
      await fake.close();
      await gcs.stop();
    },
  };
}

/**
 * The tiny SD1.5 pipeline of templates/trainer (random weights, a few MB), built once into the temp
 * dir per version of the kit and reused by every test file (build to a temp name, then rename).
 */
export async function tinyBase(): Promise<string> {
  const kit = readFileSync(join(repoRoot, "templates", "trainer", "avatar_trainer", "tiny.py"));
  const dir = join(tmpdir(), `avatar-tiny-sd15-${createHash("sha256").update(kit).digest("hex").slice(0, 12)}`);
  if (existsSync(join(dir, "model_index.json"))) return dir;
  const building = mkdtempSync(join(tmpdir(), "avatar-tiny-build-"));
  await new Promise<void>((resolve, reject) => {
    const child = spawn(venvPython(), ["-m", "avatar_trainer.tiny", "--pipeline", "sd15", "--out", building], {
      env: { ...process.env, PYTHONPATH: join(repoRoot, "templates", "trainer"), HF_HUB_OFFLINE: "1", OMP_NUM_THREADS: "1" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tiny kit exited ${code}: ${stderr}`))));
  });
  try {
    renameSync(building, dir);
  } catch {
    rmSync(building, { recursive: true, force: true }); // another file built it meanwhile
  }
  return dir;
}

/** Objects of the bucket under a prefix, name → bytes. */
export async function objectsUnder(gcs: GcsEmulator, bucket: string, prefix: string): Promise<Map<string, Buffer>> {
  const [files] = await gcs.storage().bucket(bucket).getFiles({ prefix });
  const out = new Map<string, Buffer>();
  for (const f of files) out.set(f.name, await fetchObject(gcs.endpoint, bucket, f.name));
  return out;
}
