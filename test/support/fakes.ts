// npm run fakes: fake-gcs-server and the Vertex fake on 127.0.0.1 for manual runs of the CLI and for
// outside checks. Prints the `export …` lines that point the CLI at them, then runs until Ctrl-C or
// SIGTERM (both stop cleanly, exit 0). Run by plain node (≥ 23.6 strips the types).
//
//   npm run fakes -- [--bucket avatar-dev] [--project avatar-dev] [--region us-central1]
//                    [--faults faults.json] [--predict-timeout-ms N] [--dedicated-timeout-ms N] [--deploy-delay-ms N]
//                    [--serving-gpu-quota N] [--preempt-next] [--poll-ms N] [--env KEY=VALUE]…
//
// --faults: a JSON array of scripted gRPC faults, applied in order per method:
//   [{"method": "GetCustomJob", "code": 14, "times": 3, "message": "The service is currently unavailable."}]
// (method: a unary method of JobService, ModelService, EndpointService, PredictionService or
// google.longrunning.Operations as named in the protos; code: 1-16 or its name; optional times,
// reason, domain, metadata as ErrorInfo.) Bad arguments or a bad faults file: a message and exit 2.
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { FakeFailure } from "./vertex-fake/methods.ts";

// The heavy modules (protos, clients) load only once the arguments are known to be good.

function usageError(message: string): never {
  process.stderr.write(`fakes: ${message}\nRun with --help for the options.\n`);
  process.exit(2);
}

const HELP = `npm run fakes -- [options]: fake-gcs-server + the Vertex fake for manual runs; prints the export lines.
  --bucket NAME              bucket created in the emulator (default avatar-dev)
  --project ID               project the Vertex fake accepts (default avatar-dev)
  --region REGION            region for AVATAR_REGION (default us-central1)
  --faults FILE              JSON array of {"method", "code", "message", "times"?, "reason"?, "metadata"?}
  --predict-timeout-ms N     shared endpoints cut predictions off after N ms with UNAVAILABLE (default 60000)
  --dedicated-timeout-ms N   dedicated endpoints too (default: each endpoint's inference timeout, else 600000)
  --deploy-delay-ms N        DeployModel operations wait N ms for their cluster (default 0)
  --serving-gpu-quota N      serving GPUs allowed per region and type (default unlimited)
  --preempt-next             the next CustomJob is preempted after its first new checkpoint
  --poll-ms N                AVATAR_VERTEX_POLL_MS to print (default 500)
  --env KEY=VALUE            extra environment for jobs and serving containers (repeatable)`;

let parsed;
try {
  parsed = parseArgs({
    options: {
      bucket: { type: "string", default: "avatar-dev" },
      project: { type: "string", default: "avatar-dev" },
      region: { type: "string", default: "us-central1" },
      faults: { type: "string" },
      "predict-timeout-ms": { type: "string" },
      "dedicated-timeout-ms": { type: "string" },
      "deploy-delay-ms": { type: "string" },
      "serving-gpu-quota": { type: "string" },
      "preempt-next": { type: "boolean", default: false },
      "poll-ms": { type: "string", default: "500" },
      env: { type: "string", multiple: true, default: [] },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
} catch (error) {
  usageError((error as Error).message);
}
const args = parsed.values;
if (args.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}

function count(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) usageError(`--${flag} takes a whole number ≥ 0, got "${text}"`);
  return Number(text);
}
const predictTimeoutMs = count("predict-timeout-ms", args["predict-timeout-ms"]);
const dedicatedPredictTimeoutMs = count("dedicated-timeout-ms", args["dedicated-timeout-ms"]);
const deployDelayMs = count("deploy-delay-ms", args["deploy-delay-ms"]);
const servingGpuQuota = count("serving-gpu-quota", args["serving-gpu-quota"]);
const pollMs = count("poll-ms", args["poll-ms"]);
if (!/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/.test(args.bucket!)) usageError(`--bucket "${args.bucket}" is not a valid bucket name`);
if (!/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/.test(args.project!)) usageError(`--project "${args.project}" is not a valid project id`);
const env: Record<string, string> = {};
for (const pair of args.env ?? []) {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
  if (!m) usageError(`--env takes KEY=VALUE, got "${pair}"`);
  env[m[1]!] = m[2]!;
}

/** The faults file: every entry checked before anything starts. */
async function readFaults(path: string): Promise<{ method: string; failure: FakeFailure }[]> {
  const { checkFailure, STATUS_CODES } = await import("./vertex-fake/methods.ts");
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    usageError(`--faults ${path}: ${(error as Error).message}`);
  }
  if (!Array.isArray(data)) usageError(`--faults ${path}: expected a JSON array of faults, got ${data === null ? "null" : typeof data}`);
  const known = new Set(["method", "code", "message", "times", "reason", "domain", "metadata"]);
  return data.map((entry: unknown, i: number) => {
    const where = `--faults ${path}: fault ${i + 1}`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) usageError(`${where}: expected an object`);
    const e = entry as Record<string, unknown>;
    const unknown = Object.keys(e).filter((k) => !known.has(k));
    if (unknown.length) usageError(`${where}: unknown field(s) ${unknown.join(", ")} (known: ${[...known].join(", ")})`);
    if (typeof e.method !== "string") usageError(`${where}: "method" must be a method name such as "GetCustomJob"`);
    const code = typeof e.code === "string" && /^[A-Z_]+$/.test(e.code) ? STATUS_CODES[e.code] : e.code;
    if (e.metadata !== undefined && (typeof e.metadata !== "object" || e.metadata === null || Object.values(e.metadata).some((v) => typeof v !== "string"))) {
      usageError(`${where}: "metadata" must be an object of strings`);
    }
    const failure = { ...e, code, message: e.message ?? `fake: scripted ${e.method} fault` } as FakeFailure;
    try {
      checkFailure(e.method, failure);
    } catch (error) {
      usageError(`${where}: ${(error as Error).message.replace(/^fake: /, "")}`);
    }
    return { method: e.method, failure };
  });
}
const faults = args.faults ? await readFaults(args.faults) : [];
const { ensureFakeGcsServer } = await import("./tools.mjs");
const { startGcsEmulator } = await import("./gcs-emulator.ts");
const { startVertexFake, venvPython } = await import("./vertex-fake.ts");

let binary: string;
try {
  binary = ensureFakeGcsServer();
} catch (error) {
  process.stderr.write(`fakes: ${(error as Error).message}\n`);
  process.exit(1);
}
process.env.AVATAR_FAKE_GCS = binary;

const gcs = await startGcsEmulator();
let fake: Awaited<ReturnType<typeof startVertexFake>> | undefined;
try {
  await gcs.createBucket(args.bucket!);
  fake = await startVertexFake({ gcsEndpoint: gcs.endpoint, project: args.project, env, predictTimeoutMs, dedicatedPredictTimeoutMs, deployDelayMs, servingGpuQuota });
} catch (error) {
  await gcs.stop();
  throw error;
}
for (const { method, failure } of faults) fake.failNext(method, failure);
if (args["preempt-next"]) fake.preemptNext();

const exports = {
  AVATAR_BACKEND: "vertex",
  AVATAR_PROJECT: args.project!,
  AVATAR_REGION: args.region!,
  AVATAR_BUCKET: args.bucket!,
  AVATAR_GCS_ENDPOINT: gcs.endpoint,
  AVATAR_VERTEX_ENDPOINT: fake.address,
  // Where predictions for dedicated endpoints' DNS names go.
  AVATAR_VERTEX_DEDICATED_ENDPOINT: fake.dedicatedAddress,
  AVATAR_VERTEX_POLL_MS: String(pollMs),
};
process.stdout.write(`${Object.entries(exports).map(([k, v]) => `export ${k}=${v}`).join("\n")}\n`);
const notes = [`fake-gcs-server at ${gcs.endpoint} (bucket ${args.bucket}), Vertex fake at ${fake.address} (project ${args.project}; dedicated endpoints at ${fake.dedicatedAddress})`];
if (faults.length) notes.push(`${faults.length} scripted fault(s) from ${args.faults}`);
if (!existsSync(venvPython())) notes.push(`no Python venv at ${venvPython()}: jobs and deployments need it (npx avatar doctor --setup-python)`);
process.stderr.write(`${notes.map((n) => `fakes: ${n}`).join("\n")}\nfakes: running; Ctrl-C stops both.\n`);

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`fakes: ${signal}, stopping…\n`);
  await fake!.close();
  await gcs.stop();
  process.exit(0);
};
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));
