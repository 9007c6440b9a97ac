// avatar doctor: named checks, each ok / warn / fail with a fix hint. Nothing here prints.
import { execFile } from "node:child_process";
import { access, mkdir } from "node:fs/promises";
import { constants } from "node:fs";
import { promisify } from "node:util";
import type { Context } from "../context.ts";
import { configKeys, explainSource } from "../core/config.ts";
import { avatarFilter, gpuQuotaName, L4_REGIONS, locationName } from "../core/vertex-names.ts";
import { ADC_HINT, findAdc } from "../backends/vertex/credentials.ts";
import { findPython, venvStatus } from "../backends/local/python-env.ts";

export type CheckStatus = "ok" | "warn" | "fail";
export interface Check {
  name: string;
  status: CheckStatus;
  message: string;
  hint?: string;
}

const ok = (name: string, message: string): Check => ({ name, status: "ok", message });
const warn = (name: string, message: string, hint?: string): Check => ({ name, status: "warn", message, hint });
const fail = (name: string, message: string, hint?: string): Check => ({ name, status: "fail", message, hint });

function checkNode(): Check {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  return major > 22 || (major === 22 && minor >= 12)
    ? ok("node", `Node.js ${process.version}`)
    : fail("node", `Node.js ${process.version} is too old`, "Install Node.js 22.12 or newer.");
}

function checkConfig(ctx: Context): Check {
  const where = ctx.config.file ? `from ${ctx.config.file}` : "no avatar.config.json (defaults and flags)";
  return ok("config", `valid, backend ${ctx.config.values.backend}, ${where}`);
}

function checkCredentials(ctx: Context): Check {
  const vertex = ctx.config.values.backend === "vertex";
  const adc = findAdc(ctx.env);
  if (adc.found) return ok("credentials", `Application Default Credentials: ${adc.type} (${adc.path ?? adc.source})`);
  const hint = ADC_HINT;
  if (!vertex) return ok("credentials", "not needed by the local backend (no Application Default Credentials found)");
  return fail("credentials", adc.problem ?? "no Application Default Credentials found", hint);
}

function checkProject(ctx: Context): Check | undefined {
  if (ctx.config.values.backend !== "vertex") return undefined;
  const project = ctx.config.values.project;
  return project
    ? ok("project", `${project} (${explainSource(ctx.config, "project")})`)
    : fail("project", "no Google Cloud project set", "Pass --project, set AVATAR_PROJECT, or run `avatar init`.");
}

async function checkBucket(ctx: Context, credentials: Check): Promise<Check> {
  const { backend, bucket, project, store } = ctx.config.values;
  if (backend === "local") {
    try {
      await mkdir(store, { recursive: true });
      await access(store, constants.W_OK);
      return ok("store", `local store ${store} is writable`);
    } catch (error) {
      return fail("store", `local store ${store} is not writable: ${(error as Error).message}`, "Set AVATAR_STORE to a writable folder.");
    }
  }
  if (!bucket) return fail("bucket", "no bucket set", "Pass --bucket, set AVATAR_BUCKET, or run `avatar init` (it can create one).");
  // Without credentials the storage client would only fail the same way, after a 30 s metadata probe.
  if (credentials.status === "fail" && !ctx.env.AVATAR_GCS_ENDPOINT) return warn("bucket", `gs://${bucket} not checked: no credentials`, credentials.hint);
  try {
    const { createStorage } = await import("../backends/vertex/clients.ts");
    const { bucketListable } = await import("../backends/vertex/bucket.ts");
    const storage = await createStorage({ project, env: ctx.env, maxRetries: 0 });
    const exists = await bucketListable(storage, bucket);
    return exists
      ? ok("bucket", `gs://${bucket} is reachable`)
      : fail("bucket", `gs://${bucket} does not exist`, "Create it with `avatar init` or `gcloud storage buckets create`.");
  } catch (error) {
    const { STORAGE_ROLE_HINT } = await import("../backends/vertex/errors.ts");
    const denied = Number((error as { code?: unknown }).code) === 403;
    return fail("bucket", `gs://${bucket} is not reachable: ${(error as Error).message.split("\n")[0]}`, denied ? STORAGE_ROLE_HINT : "Check credentials, network and the bucket name.");
  }
}

/**
 * vertex: the studios' serving identity (AVATAR_SERVING_SERVICE_ACCOUNT) may read the bucket. Vertex's
 * default serving identity may read only a model's own artifacts, and a studio reads every avatar's
 * LoRA and its manifest from the bucket. Checked on the bucket's IAM policy; a project-level grant
 * would also do and is not seen here, hence a warning, not a failure.
 */
async function checkStudioServing(ctx: Context, credentials: Check): Promise<Check | undefined> {
  const { backend, bucket, project } = ctx.config.values;
  if (backend !== "vertex" || !bucket) return undefined;
  const account = ctx.env.AVATAR_SERVING_SERVICE_ACCOUNT;
  if (!account) return ok("studio serving", "no serving service account set (only studios need one: AVATAR_SERVING_SERVICE_ACCOUNT or deploy --service-account)");
  if (credentials.status === "fail" && !ctx.env.AVATAR_GCS_ENDPOINT) return warn("studio serving", `${account} not checked: no credentials`, credentials.hint);
  const grant = `gcloud storage buckets add-iam-policy-binding gs://${bucket} --member serviceAccount:${account} --role roles/storage.objectViewer`;
  try {
    const { createStorage } = await import("../backends/vertex/clients.ts");
    const { bucketReadRole } = await import("../core/studio.ts");
    const storage = await createStorage({ project, env: ctx.env, maxRetries: 0 });
    const [policy] = await storage.bucket(bucket).iam.getPolicy({ requestedPolicyVersion: 3 });
    const role = bucketReadRole(policy as Parameters<typeof bucketReadRole>[0], account);
    return role
      ? ok("studio serving", `${account} may read gs://${bucket} (${role})`)
      : warn("studio serving", `${account} has no read role on gs://${bucket}: a studio's server could not read its manifest and LoRAs (unless granted on the project)`, grant);
  } catch (error) {
    return warn("studio serving", `could not check that ${account} may read gs://${bucket}: its IAM policy did not read (${(error as Error).message.split("\n")[0]})`, `Needs storage.buckets.getIamPolicy. To grant read access: ${grant}`);
  }
}

/** One cheap read (a list of at most one job): the API is enabled, the region exists, we may read. */
async function checkVertexApi(ctx: Context, credentials: Check): Promise<Check | undefined> {
  const { backend, project, region } = ctx.config.values;
  if (backend !== "vertex" || !project) return undefined;
  // Without credentials the client would only fail the same way, after probing for them.
  if (credentials.status === "fail" && !ctx.env.AVATAR_VERTEX_ENDPOINT) return undefined;
  const { VertexClients } = await import("../backends/vertex/clients.ts");
  const clients = new VertexClients({ region, env: ctx.env });
  try {
    const jobs = await clients.jobs();
    await jobs.listCustomJobs({ parent: locationName({ project, region }), pageSize: 1, filter: avatarFilter() }, { autoPaginate: false, timeout: 20_000, maxRetries: 0 });
    return ok("vertex-ai", `Vertex AI answers for ${project} in ${region}`);
  } catch (error) {
    const { mapVertexError } = await import("../backends/vertex/errors.ts");
    const mapped = mapVertexError(error, { doing: `listing training jobs in ${region}`, project, region });
    return fail("vertex-ai", mapped.message, mapped.hint);
  } finally {
    await clients.close();
  }
}

/** Whether the GPU preset is offered where training runs, and which quota it draws on. */
function checkGpuRegion(ctx: Context): Check | undefined {
  const { backend, gpu, region } = ctx.config.values;
  if (backend !== "vertex") return undefined;
  const quota = `${gpuQuotaName("training", gpu)} / ${gpuQuotaName("serving", gpu)}`;
  if (gpu === "l4" && !(L4_REGIONS as readonly string[]).includes(region)) {
    return warn("gpu-region", `L4 GPUs are not known to be offered for Vertex AI in ${region}`, `Use --region ${L4_REGIONS.slice(0, 3).join(", ")} … or --gpu t4.`);
  }
  return ok("gpu-region", `${gpu.toUpperCase()} in ${region}: needs quota ${quota} >= 1 there (IAM & Admin > Quotas)`);
}

async function checkPython(ctx: Context): Promise<Check[]> {
  const local = ctx.config.values.backend === "local";
  const python = await findPython(ctx.env);
  const pythonCheck = python
    ? ok("python", `Python ${python.version} (${python.command})`)
    : (local ? fail : warn)("python", "no Python 3.10-3.12 found", "Install Python 3.11 or set AVATAR_PYTHON; the local backend and `avatar serve` need it.");
  const status = await venvStatus(ctx.config.values.venv);
  const venvCheck =
    status.state === "ready"
      ? ok("python-env", `ready at ${status.dir}`)
      : warn("python-env", `${status.state} at ${status.dir}`, "It is created on first use, or now with `avatar doctor --setup-python` (about 3 GB).");
  return [pythonCheck, venvCheck];
}

async function checkGpu(): Promise<Check> {
  try {
    const { stdout } = await promisify(execFile)("nvidia-smi", ["--query-gpu=name,memory.total", "--format=csv,noheader"], { timeout: 10_000 });
    return ok("gpu", `CUDA GPU: ${stdout.trim().split("\n").join("; ")}`);
  } catch {
    return warn("gpu", "no CUDA GPU found", "Fine for `avatar demo` and for Vertex; training a real model locally needs an NVIDIA GPU.");
  }
}

export interface DoctorReport {
  healthy: boolean;
  checks: Check[];
  config: Record<string, { value: string | null; source: string }>;
}

export async function runDoctor(ctx: Context): Promise<DoctorReport> {
  const credentials = checkCredentials(ctx);
  const checks = [
    checkNode(),
    checkConfig(ctx),
    credentials,
    checkProject(ctx),
    await checkBucket(ctx, credentials),
    await checkStudioServing(ctx, credentials),
    await checkVertexApi(ctx, credentials),
    checkGpuRegion(ctx),
    ...(await checkPython(ctx)),
    await checkGpu(),
  ].filter((c): c is Check => c !== undefined);
  const config = Object.fromEntries(
    configKeys.map((key) => [key, { value: ctx.config.values[key] ?? null, source: explainSource(ctx.config, key) }]),
  );
  return { healthy: checks.every((c) => c.status !== "fail"), checks, config };
}
