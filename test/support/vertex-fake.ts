// A local Vertex AI (v1) for tests: a gRPC server built from the aiplatform package's own
// protos.json, so the REAL @google-cloud/aiplatform clients talk to it unchanged. It does the work
// for real, on this machine, against a fake-gcs-server:
//
// - JobService: a CustomJob runs its container command with the project venv's python. The bucket
//   paths the job names (/gcs/<bucket>/…, baseOutputDirectory) are downloaded into a temp dir laid
//   out like the Cloud Storage FUSE mount, /gcs/ in the command is that dir, the container env has
//   AIP_MODEL_DIR/AIP_CHECKPOINT_DIR (and AVATAR_GCS_FUSE_ROOT so the trainer maps gs:// URIs there);
//   files the job writes go back to the bucket while it runs and at the end, as FUSE would.
// - ModelService: uploadModel snapshots the artifacts (Vertex copies them), versions + aliases.
// - EndpointService: deployModel copies the snapshot to a model dir and starts handlers/local_server.py
//   with the container's AIP_* env (AIP_MODE=PREDICTION), exactly as the inference image would.
// - PredictionService.predict: instances/parameters → JSON → that server → predictions as Values;
//   a 400 from the container becomes INVALID_ARGUMENT with its message.
// - google.longrunning.Operations.GetOperation for every LRO above.
//
// It refuses what the real API refuses where it matters to the CLI (duplicate model or endpoint
// ids, a missing parent model, deleting an endpoint that still has models, undeploying a model with
// traffic, bad labels, bad machine/GPU pairs, AIP_* in the model env) and runs what the real image
// would crash on (HF_MODEL_ID / HF_MODEL_DIR next to artifacts: the container exits, the deploy fails).
// Names in responses carry a project NUMBER, as Vertex's do.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir, tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Storage } from "@google-cloud/storage";
import { grpc, protobuf } from "google-gax";
import * as protoLoader from "@grpc/proto-loader";

const require = createRequire(import.meta.url);
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const protosJson = require("@google-cloud/aiplatform/build/protos/protos.json");
// google-gax's exports map hides its protos directory from require(): go by file path.
const statusJson = JSON.parse(readFileSync(join(dirname(require.resolve("google-gax")), "..", "protos", "status.json"), "utf8"));

const V1 = "google.cloud.aiplatform.v1";
const root = protobuf.Root.fromJSON(protosJson);
const statusRoot = protobuf.Root.fromJSON(statusJson);

type Any = { typeUrl: string; value: Buffer };
function pack(type: string, value: object): Any {
  const T = root.lookupType(type);
  const problem = T.verify(T.fromObject(value) as never);
  if (problem) throw new Error(`fake: ${type}: ${problem}`);
  return { typeUrl: `type.googleapis.com/${type}`, value: Buffer.from(T.encode(T.fromObject(value)).finish()) };
}

/** The project venv's python (AVATAR_VENV, else the default location the CLI uses). */
export function venvPython(): string {
  const venv = process.env.AVATAR_VENV || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "avatar", "venv");
  return join(venv, "bin", "python");
}

// ------------------------------------------------------------------------------------------------
// errors

export interface FakeFailure {
  code: number;
  message: string;
  /** google.rpc.ErrorInfo attached as grpc-status-details-bin. */
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
}

class RpcError extends Error {
  readonly code: number;
  readonly info: Omit<FakeFailure, "code" | "message"> | undefined;

  constructor(code: number, message: string, info?: Omit<FakeFailure, "code" | "message">) {
    super(message);
    this.code = code;
    this.info = info;
  }
}

const S = grpc.status;
const invalid = (message: string) => new RpcError(S.INVALID_ARGUMENT, message);
const notFound = (message: string) => new RpcError(S.NOT_FOUND, message);

function toServiceError(error: unknown): grpc.ServiceError {
  const e = error instanceof RpcError ? error : new RpcError(S.INTERNAL, `fake: ${(error as Error)?.stack ?? String(error)}`);
  const metadata = new grpc.Metadata();
  if (e.info?.reason) {
    const ErrorInfo = statusRoot.lookupType("google.rpc.ErrorInfo");
    const Status = statusRoot.lookupType("google.rpc.Status");
    const info = ErrorInfo.encode(ErrorInfo.fromObject({ reason: e.info.reason, domain: e.info.domain ?? "aiplatform.googleapis.com", metadata: e.info.metadata ?? {} })).finish();
    const status = Status.encode(Status.fromObject({ code: e.code, message: e.message, details: [{ type_url: "type.googleapis.com/google.rpc.ErrorInfo", value: info }] })).finish();
    metadata.set("grpc-status-details-bin", Buffer.from(status));
  }
  return Object.assign(new Error(e.message), { code: e.code, details: e.message, metadata }) as grpc.ServiceError;
}

// ------------------------------------------------------------------------------------------------
// resource names, labels, filters

interface ParsedName {
  project: string;
  region: string;
  collection?: string;
  id?: string;
  version?: string;
}

function parseName(name: string, collection?: string): ParsedName {
  const m = /^projects\/([^/]+)\/locations\/([^/]+)(?:\/([A-Za-z]+)\/([^/@]+)(?:@(.+))?)?$/.exec(name ?? "");
  if (!m || (collection && m[3] !== collection)) throw invalid(`Invalid resource name "${name}"${collection ? ` (expected …/${collection}/…)` : ""}.`);
  return { project: m[1]!, region: m[2]!, collection: m[3], id: m[4], version: m[5] };
}

const LABEL_KEY = /^[a-z][a-z0-9_-]{0,62}$/;
const LABEL_VALUE = /^[a-z0-9_-]{0,63}$/;
function checkLabels(labels: Record<string, string> | undefined): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!LABEL_KEY.test(k)) throw invalid(`Label key "${k}" is invalid: keys start with a lowercase letter, use [a-z0-9_-], ≤ 63 characters.`);
    if (!LABEL_VALUE.test(v)) throw invalid(`Label value "${v}" of "${k}" is invalid: [a-z0-9_-], ≤ 63 characters.`);
  }
}

/** The filter subset the fake understands: `labels.k="v"`, `labels.k=v`, `labels.k:*`, joined by AND. */
function labelFilter(filter: string): (labels: Record<string, string>) => boolean {
  if (!filter.trim()) return () => true;
  const terms = filter.split(/\s+AND\s+/).map((term) => {
    const m = /^labels\.([a-z][a-z0-9_-]*)(?:=(?:"([^"]*)"|([a-z0-9_-]+))|(:\*))$/.exec(term.trim());
    if (!m) throw invalid(`fake: unsupported filter term "${term}" (the fake knows labels.k="v", labels.k=v, labels.k:*)`);
    return { key: m[1]!, value: m[2] ?? m[3], any: Boolean(m[4]) };
  });
  return (labels) => terms.every((t) => (t.any ? t.key in labels : labels[t.key] === t.value));
}

const MACHINE_FOR_GPU: Record<string, RegExp> = { NVIDIA_L4: /^g2-standard-(4|8|12|16|32)$/, NVIDIA_TESLA_T4: /^n1-(standard|highmem|highcpu)-\d+$/ };
function checkMachine(spec: { machineType?: string; acceleratorType?: string; acceleratorCount?: number } | null | undefined): void {
  if (!spec?.machineType) throw invalid("machine_spec.machine_type is required.");
  const gpu = spec.acceleratorType && spec.acceleratorType !== "ACCELERATOR_TYPE_UNSPECIFIED" ? spec.acceleratorType : undefined;
  if (gpu) {
    const machines = MACHINE_FOR_GPU[gpu];
    if (!machines) throw invalid(`fake: accelerator ${gpu} is not one the fake knows.`);
    if (!machines.test(spec.machineType)) throw invalid(`Accelerator ${gpu} is not supported with machine type ${spec.machineType}.`);
    if (spec.acceleratorCount !== 1) throw invalid(`fake: accelerator_count ${spec.acceleratorCount} (the fake serves 1 GPU per replica).`);
  } else if (spec.machineType.startsWith("g2-")) {
    throw invalid(`Machine type ${spec.machineType} needs accelerator NVIDIA_L4.`);
  }
}

function timestamp(ms = Date.now()) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

/** google.protobuf.Value (as proto-loader decodes it: `kind` + the field) → JSON. */
function fromValue(v: any): unknown {
  switch (v?.kind) {
    case "numberValue":
      return v.numberValue;
    case "stringValue":
      return v.stringValue;
    case "boolValue":
      return v.boolValue;
    case "structValue":
      return Object.fromEntries(Object.entries(v.structValue?.fields ?? {}).map(([k, x]) => [k, fromValue(x)]));
    case "listValue":
      return (v.listValue?.values ?? []).map(fromValue);
    default:
      return null;
  }
}

function toValue(x: unknown): object {
  if (x === null || x === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof x === "number") return { numberValue: x };
  if (typeof x === "string") return { stringValue: x };
  if (typeof x === "boolean") return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(toValue) } };
  return { structValue: { fields: Object.fromEntries(Object.entries(x as object).map(([k, v]) => [k, toValue(v)])) } };
}

/**
 * An object's bytes with a plain GET (alt=media). The storage client's streaming download adds
 * listeners per chunk on big objects and floods stderr with MaxListenersExceededWarning.
 */
export async function fetchObject(endpoint: string, bucket: string, name: string): Promise<Buffer> {
  const response = await fetch(`${endpoint}/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(name)}?alt=media`);
  if (!response.ok) throw new Error(`fake: GET gs://${bucket}/${name}: ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

function walk(dir: string): string[] {
  const out: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(path));
    else if (e.isFile()) out.push(path);
  }
  return out;
}

function stopChild(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    const kill = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal); // the whole group (sh → python, python → workers)
      } catch {
        child.kill(signal);
      }
    };
    kill("SIGTERM");
    setTimeout(() => kill("SIGKILL"), graceMs).unref();
  });
}

// ------------------------------------------------------------------------------------------------
// records

interface JobRecord {
  id: string;
  resource: any;
  child?: ChildProcess;
  cancelRequested?: boolean;
  timedOut?: boolean;
  log: string[];
  done: Promise<void>;
}

interface VersionRecord {
  resource: any;
  snapshot: string;
}

interface ModelRecord {
  id: string;
  createTime: ReturnType<typeof timestamp>;
  versions: VersionRecord[];
}

interface ServerRecord {
  child: ChildProcess;
  url: string;
  predictRoute: string;
  log: string[];
}

interface EndpointRecord {
  id: string;
  resource: any;
  servers: Map<string, ServerRecord>;
}

interface OperationRecord {
  name: string;
  done: boolean;
  metadataType: string;
  metadata: any;
  response?: Any;
  error?: { code: number; message: string };
}

export interface RecordedCall {
  method: string;
  request: any;
}

export interface VertexFakeOptions {
  /** fake-gcs-server endpoint (http://127.0.0.1:port). */
  gcsEndpoint: string;
  project?: string;
  projectNumber?: string;
  python?: string;
  /** Extra environment for jobs and serving containers (e.g. HF_HUB_OFFLINE=1). */
  env?: Record<string, string>;
  /** How long a CustomJob stays PENDING before it starts (default 300 ms). */
  jobStartDelayMs?: number;
}

export interface VertexFake {
  /** host:port, the value for AVATAR_VERTEX_ENDPOINT. */
  address: string;
  port: number;
  project: string;
  projectNumber: string;
  calls: RecordedCall[];
  /** Requests of one method (e.g. "CreateCustomJob"), in order. */
  requests(method: string): any[];
  /** The next call of `method` fails with this status (and ErrorInfo when reason is given). */
  failNext(method: string, failure: FakeFailure): void;
  /** The next LRO started by `method` ends with this error instead of its result. */
  failOperation(method: string, failure: { code: number; message: string }): void;
  /** Output lines of a job's container (what Cloud Logging would hold). */
  jobLog(id: string): string[];
  /** Resolves when a job has finished (state and outputs settled). */
  jobDone(id: string): Promise<void>;
  /** Output of a deployed model's serving container (also of one that failed to start). */
  serverLog(deployedModelId: string): string[];
  /** Deployed model ids of running serving containers. */
  runningServers(): string[];
  close(): Promise<void>;
}

export async function startVertexFake(options: VertexFakeOptions): Promise<VertexFake> {
  const project = options.project ?? "avatar-test";
  const projectNumber = options.projectNumber ?? "314159265358";
  const python = options.python ?? venvPython();
  const work = mkdtempSync(join(tmpdir(), "avatar-vertex-fake-"));
  const storage = new Storage({ apiEndpoint: options.gcsEndpoint, projectId: project });
  const calls: RecordedCall[] = [];
  const failures = new Map<string, FakeFailure[]>();
  const opFailures = new Map<string, { code: number; message: string }[]>();
  const jobs = new Map<string, JobRecord>();
  const models = new Map<string, ModelRecord>();
  const endpoints = new Map<string, EndpointRecord>();
  const operations = new Map<string, OperationRecord>();
  const pending = new Set<Promise<unknown>>();
  const serverLogs = new Map<string, string[]>(); // deployed model id → serving container output
  let counter = 1000;
  let closed = false;

  const loc = (p: ParsedName) => {
    if (p.project !== project && p.project !== projectNumber) throw new RpcError(S.PERMISSION_DENIED, `Permission denied on project ${p.project} (or it may not exist).`);
    return `projects/${projectNumber}/locations/${p.region}`;
  };
  const location = (parent: string) => loc(parseName(parent));

  // ---- GCS helpers (the real storage client against the emulator)
  const parseGs = (uri: string) => {
    const m = /^gs:\/\/([^/]+)\/?(.*)$/.exec(uri);
    if (!m) throw invalid(`"${uri}" is not a gs:// URI.`);
    return { bucket: m[1]!, prefix: m[2]!.replace(/\/+$/, "") };
  };
  async function listObjects(bucket: string, prefix: string): Promise<string[]> {
    const [files] = await storage.bucket(bucket).getFiles({ prefix });
    return files.map((f) => f.name).filter((n) => n === prefix || prefix === "" || n.startsWith(`${prefix}/`));
  }
  async function download(bucket: string, names: string[], dir: string, strip = ""): Promise<Map<string, string>> {
    const hashes = new Map<string, string>();
    for (const name of names) {
      const body = await fetchObject(options.gcsEndpoint, bucket, name);
      const target = join(dir, strip ? relative(strip, name) : name);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, body);
      hashes.set(name, md5(body));
    }
    return hashes;
  }

  // ---- operations
  function operation(resource: string, metadataType: string, metadata: object): OperationRecord {
    const op: OperationRecord = { name: `${resource}/operations/${++counter}`, done: false, metadataType, metadata: { genericMetadata: { createTime: timestamp(), updateTime: timestamp() }, ...metadata } };
    operations.set(op.name, op);
    return op;
  }
  function wire(op: OperationRecord) {
    return {
      name: op.name,
      done: op.done,
      metadata: pack(op.metadataType, op.metadata),
      ...(op.error ? { error: { code: op.error.code, message: op.error.message, details: [] } } : op.response ? { response: op.response } : {}),
    };
  }
  /** Runs `work` in the background; the op ends with its response, or its error as a Status. */
  function run(method: string, op: OperationRecord, work: () => Promise<Any>) {
    const injected = opFailures.get(method)?.shift();
    const task = (async () => {
      try {
        if (injected) throw new RpcError(injected.code, injected.message);
        op.response = await work();
      } catch (error) {
        const e = error instanceof RpcError ? error : new RpcError(S.INTERNAL, String((error as Error)?.message ?? error));
        op.error = { code: e.code, message: e.message };
      } finally {
        op.metadata.genericMetadata.updateTime = timestamp();
        op.done = true;
      }
    })();
    pending.add(task);
    void task.finally(() => pending.delete(task));
    return wire(op);
  }

  // ---- jobs
  const terminal = (state: string) => ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"].includes(state);
  function setJobState(job: JobRecord, state: string, error?: { code: number; message: string }) {
    job.resource.state = state;
    job.resource.updateTime = timestamp();
    if (state === "JOB_STATE_RUNNING") job.resource.startTime = timestamp();
    if (terminal(state)) job.resource.endTime = timestamp();
    if (error) job.resource.error = { code: error.code, message: error.message, details: [] };
  }

  async function runJob(job: JobRecord): Promise<void> {
    await new Promise((r) => setTimeout(r, options.jobStartDelayMs ?? 300));
    if (job.cancelRequested || closed) {
      setJobState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
      return;
    }
    setJobState(job, "JOB_STATE_RUNNING");
    const pool = job.resource.jobSpec.workerPoolSpecs[0];
    const container = pool.containerSpec;
    const fuse = mkdtempSync(join(work, `job-${job.id}-gcs-`));
    const known = new Map<string, string>(); // "<bucket>/<object>" → md5 of what the bucket holds
    try {
      // What the job names in the bucket: /gcs/<bucket>/<path> in its command and args, and its base output dir.
      const strings: string[] = [...container.command, ...container.args];
      const wanted: { bucket: string; prefix: string }[] = [];
      for (const s of strings) for (const m of s.matchAll(/\/gcs\/([a-z0-9][a-z0-9._-]*)\/([^\s'"]*)/g)) wanted.push({ bucket: m[1]!, prefix: m[2]!.replace(/\/+$/, "") });
      const base = job.resource.jobSpec.baseOutputDirectory?.outputUriPrefix || "";
      if (base) wanted.push(parseGs(base));
      for (const w of wanted) {
        const names = await listObjects(w.bucket, w.prefix);
        for (const [name, hash] of await download(w.bucket, names, join(fuse, w.bucket))) known.set(`${w.bucket}/${name}`, hash);
        // The mount shows the bucket even where nothing exists yet.
        mkdirSync(join(fuse, w.bucket), { recursive: true });
      }
      if (job.cancelRequested || closed) {
        setJobState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
        return;
      }
      const mount = (s: string) => s.replace(/(^|[\s'"=])\/gcs\//g, `$1${fuse}/`);
      const command = container.command.length ? container.command.map(mount) : [];
      if (command.length === 0) throw new RpcError(S.INVALID_ARGUMENT, "fake: the training image has no entrypoint; the job must pass a command.");
      const env: Record<string, string> = {
        PATH: `${dirname(python)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        HOME: process.env.HOME ?? tmpdir(),
        ...Object.fromEntries((container.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value])),
        ...(base ? { AIP_MODEL_DIR: `${base.replace(/\/$/, "")}/model/`, AIP_CHECKPOINT_DIR: `${base.replace(/\/$/, "")}/checkpoints/`, AIP_TENSORBOARD_LOG_DIR: `${base.replace(/\/$/, "")}/logs/` } : {}),
        CLOUD_ML_JOB_ID: job.id,
        AVATAR_GCS_FUSE_ROOT: fuse,
        ...options.env,
      };
      const child = spawn(command[0]!, [...command.slice(1), ...container.args.map(mount)], { cwd: fuse, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
      job.child = child;
      for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on("line", (l) => job.log.push(l));
      // Files written through the mount reach the bucket as they are closed: sync while it runs.
      let syncing = Promise.resolve();
      const sync = () => (syncing = syncing.then(() => syncUp(fuse, known)).catch(() => undefined));
      const timer = setInterval(sync, 400);
      const timeoutSeconds = Number(job.resource.jobSpec.scheduling?.timeout?.seconds ?? 0);
      const killer = timeoutSeconds > 0 ? setTimeout(() => ((job.timedOut = true), void stopChild(child)), timeoutSeconds * 1000) : undefined;
      const code = await new Promise<number | null>((resolve) => {
        child.on("error", (e) => (job.log.push(`exec error: ${e.message}`), resolve(127)));
        child.on("exit", (c) => resolve(c));
      });
      clearInterval(timer);
      if (killer) clearTimeout(killer);
      await sync();
      await syncing;
      if (job.cancelRequested) setJobState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
      else if (job.timedOut) setJobState(job, "JOB_STATE_FAILED", { code: 4, message: `Job exceeded the timeout of ${timeoutSeconds}s.` });
      else if (code === 0) setJobState(job, "JOB_STATE_SUCCEEDED");
      else {
        setJobState(job, "JOB_STATE_FAILED", {
          code: 3,
          message: `The replica workerpool0-0 exited with a non-zero status of ${code}. Termination reason: Error. To find out more about why your job exited please check the logs: https://console.cloud.google.com/logs/viewer?project=${projectNumber}&resource=ml_job%2Fjob_id%2F${job.id}`,
        });
      }
    } catch (error) {
      job.log.push(`fake: ${(error as Error).message}`);
      setJobState(job, "JOB_STATE_FAILED", { code: (error as RpcError).code ?? 13, message: (error as Error).message });
    } finally {
      rmSync(fuse, { recursive: true, force: true });
    }
  }

  /** The FUSE dir → bucket: new or changed files up, files gone from the dir deleted. Temp files (.name) stay local. */
  async function syncUp(fuse: string, known: Map<string, string>): Promise<void> {
    const seen = new Set<string>();
    for (const path of walk(fuse)) {
      const rel = relative(fuse, path).split("/");
      const [bucket, ...rest] = rel;
      if (!bucket || rest.length === 0 || rest.at(-1)!.startsWith(".")) continue;
      const key = `${bucket}/${rest.join("/")}`;
      let body: Buffer;
      try {
        body = readFileSync(path);
      } catch {
        continue; // renamed or removed while we looked
      }
      seen.add(key);
      const hash = md5(body);
      if (known.get(key) === hash) continue;
      await storage.bucket(bucket).file(rest.join("/")).save(body, { resumable: false });
      known.set(key, hash);
    }
    for (const key of [...known.keys()]) {
      if (seen.has(key)) continue;
      const [bucket, ...rest] = key.split("/");
      await storage.bucket(bucket!).file(rest.join("/")).delete({ ignoreNotFound: true });
      known.delete(key);
    }
  }

  // ---- models
  const modelName = (locName: string, id: string) => `${locName}/models/${id}`;
  function findModel(name: string): { model: ModelRecord; version: VersionRecord } {
    const p = parseName(name, "models");
    loc(p);
    const model = models.get(p.id!);
    if (!model) throw notFound(`Model ${name} not found.`);
    const v = p.version;
    const version = !v ? model.versions.find((x) => x.resource.versionAliases.includes("default")) : /^\d+$/.test(v) ? model.versions.find((x) => x.resource.versionId === v) : model.versions.find((x) => x.resource.versionAliases.includes(v));
    if (!version) throw notFound(`Model ${name} not found.`);
    return { model, version };
  }

  // ---- serving
  async function startServer(ep: EndpointRecord, dmId: string, version: VersionRecord, machineSpec: any): Promise<ServerRecord> {
    const modelDir = join(work, `serve-${dmId}`, "model");
    // What the image's entrypoint does: copy AIP_STORAGE_URI/* to the model dir.
    cpSync(version.snapshot, modelDir, { recursive: true });
    const env: Record<string, string> = {
      PATH: `${dirname(python)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      HOME: process.env.HOME ?? tmpdir(),
      PYTHONUNBUFFERED: "1",
      ...Object.fromEntries((version.resource.containerSpec.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value])),
      ...options.env,
    };
    const sources = ["HF_MODEL_ID", "HF_MODEL_DIR"].filter((k) => env[k]);
    const log: string[] = [];
    if (sources.length) {
      // huggingface-pytorch-inference …transformers.4-48 entrypoint.sh: exactly one source, else exit 1.
      log.push("ERROR: Exactly one of HF_MODEL_ID, HF_MODEL_DIR, or AIP_STORAGE_URI must be provided.");
      throw Object.assign(new RpcError(S.FAILED_PRECONDITION, "Model server exited unexpectedly. Model server logs can be found at Cloud Logging."), { log });
    }
    const health = `/v1/endpoints/${ep.id}/deployedModels/${dmId}`;
    const predictRoute = `${health}:predict`;
    Object.assign(env, {
      AIP_MODE: "PREDICTION",
      AIP_MODE_VERSION: "1.0.0",
      AIP_HTTP_PORT: "0", // the real container gets 8080; here any free port (read from the ready line)
      AIP_HEALTH_ROUTE: health,
      AIP_PREDICT_ROUTE: predictRoute,
      AIP_STORAGE_URI: version.resource.artifactUri,
      AIP_DEPLOYED_MODEL_ID: dmId,
      AIP_ENDPOINT_ID: ep.id,
      AIP_MODEL_NAME: ep.id,
      AIP_VERSION_NAME: dmId,
      AIP_FRAMEWORK: "CUSTOM_CONTAINER",
      AIP_MACHINE_TYPE: machineSpec.machineType,
      AIP_ACCELERATOR_TYPE: machineSpec.acceleratorType,
      AIP_PROJECT_NUMBER: projectNumber,
    });
    const child = spawn(python, [join(repoRoot, "handlers", "local_server.py"), "--model-dir", modelDir], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let url: string | undefined;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        log.push(line);
        url ??= /^ready url=(\S+)/.exec(line)?.[1];
      });
    }
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const deadline = Date.now() + 1000 * Number(version.resource.containerSpec.deploymentTimeout?.seconds || 600);
    while (Date.now() < deadline && !closed) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw Object.assign(new RpcError(S.FAILED_PRECONDITION, `Model server exited unexpectedly (fake: ${log.at(-1) ?? "no output"}).`), { log });
      }
      if (url) {
        try {
          const r = await fetch(`${url}${health}`);
          if (r.status === 200) return { child, url, predictRoute, log };
        } catch {
          // not yet
        }
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 100))]);
    }
    await stopChild(child);
    throw new RpcError(S.DEADLINE_EXCEEDED, "Model server never became ready within the deployment timeout.");
  }

  function findEndpoint(name: string): EndpointRecord {
    const p = parseName(name, "endpoints");
    loc(p);
    const ep = endpoints.get(p.id!);
    if (!ep) throw notFound(`Endpoint ${name} not found.`);
    return ep;
  }

  // ---- gRPC plumbing
  const pkgDef = protoLoader.fromJSON(protosJson, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(pkgDef) as any;
  const v1 = pkg.google.cloud.aiplatform.v1;
  const server = new grpc.Server();

  type Handler = (request: any) => Promise<object> | object;
  const unary = (method: string, handler: Handler) => (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
    calls.push({ method, request: call.request });
    const injected = failures.get(method)?.shift();
    if (injected) return callback(toServiceError(new RpcError(injected.code, injected.message, injected)));
    Promise.resolve()
      .then(() => handler(call.request))
      .then((response) => callback(null, response), (error) => callback(toServiceError(error)));
  };

  server.addService(v1.JobService.service, {
    CreateCustomJob: unary("CreateCustomJob", (req) => {
      const locName = location(req.parent);
      const spec = req.customJob;
      if (!spec?.displayName) throw invalid("custom_job.display_name is required.");
      checkLabels(spec.labels);
      const pools = spec.jobSpec?.workerPoolSpecs ?? [];
      if (pools.length === 0) throw invalid("custom_job.job_spec.worker_pool_specs is required.");
      checkMachine(pools[0].machineSpec);
      if (!pools[0].containerSpec?.imageUri) throw invalid("worker_pool_specs[0].container_spec.image_uri is required.");
      if (Number(pools[0].replicaCount) < 1) throw invalid("worker_pool_specs[0].replica_count must be ≥ 1.");
      const base = spec.jobSpec.baseOutputDirectory?.outputUriPrefix;
      if (base) parseGs(base);
      const id = String(++counter);
      const resource = { ...spec, name: `${locName}/customJobs/${id}`, state: "JOB_STATE_PENDING", createTime: timestamp(), updateTime: timestamp() };
      const job: JobRecord = { id, resource, log: [], done: Promise.resolve() };
      job.done = runJob(job);
      pending.add(job.done);
      jobs.set(id, job);
      return resource;
    }),
    GetCustomJob: unary("GetCustomJob", (req) => {
      const p = parseName(req.name, "customJobs");
      loc(p);
      const job = jobs.get(p.id!);
      if (!job) throw notFound(`CustomJob ${req.name} not found.`);
      return job.resource;
    }),
    ListCustomJobs: unary("ListCustomJobs", (req) => {
      const locName = location(req.parent);
      const match = labelFilter(req.filter ?? "");
      return { customJobs: [...jobs.values()].map((j) => j.resource).filter((r) => r.name.startsWith(locName) && match(r.labels ?? {})), nextPageToken: "" };
    }),
    CancelCustomJob: unary("CancelCustomJob", (req) => {
      const p = parseName(req.name, "customJobs");
      loc(p);
      const job = jobs.get(p.id!);
      if (!job) throw notFound(`CustomJob ${req.name} not found.`);
      if (terminal(job.resource.state)) throw new RpcError(S.FAILED_PRECONDITION, `Cannot cancel CustomJob ${req.name} in state ${job.resource.state}.`);
      job.cancelRequested = true;
      if (job.resource.state === "JOB_STATE_RUNNING") {
        setJobState(job, "JOB_STATE_CANCELLING");
        void stopChild(job.child);
      }
      return {};
    }),
  });

  server.addService(v1.ModelService.service, {
    UploadModel: unary("UploadModel", (req) => {
      const locName = location(req.parent);
      const m = req.model;
      if (!m?.displayName) throw invalid("model.display_name is required.");
      if (!m.containerSpec?.imageUri) throw invalid("model.container_spec.image_uri is required.");
      checkLabels(m.labels);
      for (const e of m.containerSpec.env ?? []) {
        if (e.name.startsWith("AIP_")) throw invalid(`Environment variable ${e.name} is reserved: AIP_* variables are set by Vertex AI.`);
      }
      const { bucket, prefix } = parseGs(m.artifactUri || "");
      for (const alias of m.versionAliases ?? []) {
        if (!/^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$/.test(alias)) throw invalid(`Version alias "${alias}" is invalid.`);
      }
      let record: ModelRecord;
      if (req.parentModel) {
        if (req.modelId) throw invalid("model_id cannot be set together with parent_model.");
        const p = parseName(req.parentModel, "models");
        loc(p);
        const parent = models.get(p.id!);
        if (!parent) throw notFound(`Parent model ${req.parentModel} not found.`);
        for (const alias of m.versionAliases ?? []) {
          if (alias !== "default" && parent.versions.some((v) => v.resource.versionAliases.includes(alias))) {
            throw new RpcError(S.ALREADY_EXISTS, `Alias "${alias}" is already used by another version of ${req.parentModel}.`);
          }
        }
        record = parent;
      } else {
        const id = req.modelId || String(++counter);
        if (!/^[a-z][a-z0-9_-]{0,62}$/.test(id) && !/^\d+$/.test(id)) throw invalid(`model_id "${id}" is invalid.`);
        if (models.has(id)) throw new RpcError(S.ALREADY_EXISTS, `Model ${modelName(locName, id)} already exists.`);
        record = { id, createTime: timestamp(), versions: [] };
        models.set(id, record); // reserved now, visible with its first version
      }
      const versionId = String(record.versions.length + 1);
      const op = operation(modelName(locName, record.id), `${V1}.UploadModelOperationMetadata`, {});
      return run("UploadModel", op, async () => {
        // Vertex copies the artifacts: later changes in the bucket do not reach this version.
        const names = await listObjects(bucket, prefix);
        if (names.length === 0) {
          if (record.versions.length === 0) models.delete(record.id);
          throw invalid(`No files found in artifact_uri ${m.artifactUri}.`);
        }
        const snapshot = join(work, "models", record.id, versionId);
        await download(bucket, names, snapshot, prefix);
        const aliases = [...new Set<string>(m.versionAliases ?? [])];
        if (record.versions.length === 0 && !aliases.includes("default")) aliases.unshift("default");
        if (aliases.includes("default")) for (const v of record.versions) v.resource.versionAliases = v.resource.versionAliases.filter((a: string) => a !== "default");
        const now = timestamp();
        const resource = {
          ...m,
          name: modelName(locName, record.id),
          versionId,
          versionAliases: aliases,
          versionCreateTime: now,
          versionUpdateTime: now,
          createTime: record.createTime,
          updateTime: now,
          deployedModels: [],
        };
        record.versions.push({ resource, snapshot });
        return pack(`${V1}.UploadModelResponse`, { model: resource.name, modelVersionId: versionId });
      });
    }),
    GetModel: unary("GetModel", (req) => findModel(req.name).version.resource),
    ListModels: unary("ListModels", (req) => {
      const locName = location(req.parent);
      const match = labelFilter(req.filter ?? "");
      const found = [...models.values()]
        .map((m) => m.versions.find((v) => v.resource.versionAliases.includes("default"))?.resource)
        .filter((r) => r && r.name.startsWith(locName) && match(r.labels ?? {}));
      return { models: found, nextPageToken: "" };
    }),
    ListModelVersions: unary("ListModelVersions", (req) => {
      const { model } = findModel(req.name.replace(/@.*$/, ""));
      const match = labelFilter(req.filter ?? "");
      return { models: model.versions.map((v) => v.resource).filter((r) => match(r.labels ?? {})), nextPageToken: "" };
    }),
  });

  server.addService(v1.EndpointService.service, {
    CreateEndpoint: unary("CreateEndpoint", (req) => {
      const locName = location(req.parent);
      if (!req.endpoint?.displayName) throw invalid("endpoint.display_name is required.");
      checkLabels(req.endpoint.labels);
      const id = req.endpointId || String(++counter);
      if (!/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(id) && !/^[1-9]\d{0,8}$/.test(id)) throw invalid(`endpoint_id "${id}" is invalid.`);
      if (endpoints.has(id)) throw new RpcError(S.ALREADY_EXISTS, `Endpoint ${locName}/endpoints/${id} already exists.`);
      const resource = { ...req.endpoint, name: `${locName}/endpoints/${id}`, deployedModels: [], trafficSplit: {}, createTime: timestamp(), updateTime: timestamp() };
      const op = operation(resource.name, `${V1}.CreateEndpointOperationMetadata`, {});
      return run("CreateEndpoint", op, async () => {
        endpoints.set(id, { id, resource, servers: new Map() });
        return pack(`${V1}.Endpoint`, resource);
      });
    }),
    GetEndpoint: unary("GetEndpoint", (req) => findEndpoint(req.name).resource),
    ListEndpoints: unary("ListEndpoints", (req) => {
      const locName = location(req.parent);
      const match = labelFilter(req.filter ?? "");
      return { endpoints: [...endpoints.values()].map((e) => e.resource).filter((r) => r.name.startsWith(locName) && match(r.labels ?? {})), nextPageToken: "" };
    }),
    DeployModel: unary("DeployModel", (req) => {
      const ep = findEndpoint(req.endpoint);
      const dm = req.deployedModel;
      if (!dm?.model) throw invalid("deployed_model.model is required.");
      const { version } = findModel(dm.model);
      const resources = dm.dedicatedResources;
      if (!resources) throw invalid(`Model ${dm.model} does not support automatic resources: deployed_model.dedicated_resources is required.`);
      checkMachine(resources.machineSpec);
      if (Number(resources.minReplicaCount) < 1) throw invalid("dedicated_resources.min_replica_count must be ≥ 1.");
      if (Number(resources.maxReplicaCount) !== 0 && Number(resources.maxReplicaCount) < Number(resources.minReplicaCount)) throw invalid("dedicated_resources.max_replica_count must be ≥ min_replica_count.");
      const split: Record<string, number> = { ...(req.trafficSplit ?? {}) };
      const existing = ep.resource.deployedModels.map((d: any) => d.id);
      if (Object.keys(split).length === 0) {
        if (existing.length) throw invalid("traffic_split is required when the endpoint already has deployed models.");
        split["0"] = 100;
      }
      for (const key of Object.keys(split)) if (key !== "0" && !existing.includes(key)) throw invalid(`traffic_split names unknown deployed model ${key}.`);
      if (Object.values(split).reduce((a, b) => a + Number(b), 0) !== 100) throw invalid("traffic_split must add up to 100.");
      const dmId = String(4_000_000_000 + ++counter);
      const op = operation(ep.resource.name, `${V1}.DeployModelOperationMetadata`, { deploymentStage: "STARTING_DEPLOYMENT" });
      const stage = async (s: string, ms = 150) => {
        op.metadata.deploymentStage = s;
        op.metadata.genericMetadata.updateTime = timestamp();
        await new Promise((r) => setTimeout(r, ms));
      };
      return run("DeployModel", op, async () => {
        await stage("STARTING_DEPLOYMENT");
        await stage("PREPARING_MODEL");
        await stage("CREATING_SERVING_CLUSTER");
        await stage("GETTING_CONTAINER_IMAGE");
        op.metadata.deploymentStage = "STARTING_MODEL_SERVER";
        let srv: ServerRecord;
        try {
          srv = await startServer(ep, dmId, version, resources.machineSpec);
        } catch (error) {
          op.metadata.deploymentStage = "FAILED_TO_DEPLOY";
          serverLogs.set(dmId, (error as { log?: string[] }).log ?? []);
          throw error;
        }
        serverLogs.set(dmId, srv.log);
        await stage("FINISHING_UP");
        ep.servers.set(dmId, srv);
        const deployed = { ...dm, id: dmId, model: version.resource.name, modelVersionId: version.resource.versionId, createTime: timestamp() };
        ep.resource.deployedModels.push(deployed);
        const next: Record<string, number> = {};
        for (const [k, v] of Object.entries(split)) next[k === "0" ? dmId : k] = Number(v);
        for (const id of existing) next[id] ??= 0;
        ep.resource.trafficSplit = next;
        ep.resource.updateTime = timestamp();
        version.resource.deployedModels.push({ endpoint: ep.resource.name, deployedModelId: dmId });
        op.metadata.deploymentStage = "SUCCESSFULLY_DEPLOYED";
        return pack(`${V1}.DeployModelResponse`, { deployedModel: deployed });
      });
    }),
    UndeployModel: unary("UndeployModel", (req) => {
      const ep = findEndpoint(req.endpoint);
      const id = req.deployedModelId;
      const dm = ep.resource.deployedModels.find((d: any) => d.id === id);
      if (!dm) throw notFound(`Deployed model ${id} not found on ${req.endpoint}.`);
      const others = ep.resource.deployedModels.filter((d: any) => d.id !== id).map((d: any) => d.id);
      const given: Record<string, number> = { ...(req.trafficSplit ?? {}) };
      let next: Record<string, number>;
      if (others.length === 0) next = {};
      else if (Object.keys(given).length) {
        if ((given[id] ?? 0) !== 0) throw invalid(`traffic_split still sends traffic to ${id}, which is being undeployed.`);
        if (Object.values(given).reduce((a, b) => a + Number(b), 0) !== 100) throw invalid("traffic_split must add up to 100.");
        next = Object.fromEntries(others.map((o: string) => [o, Number(given[o] ?? 0)]));
      } else {
        if ((ep.resource.trafficSplit[id] ?? 0) > 0) throw new RpcError(S.FAILED_PRECONDITION, `Deployed model ${id} still has ${ep.resource.trafficSplit[id]}% of the traffic; pass a traffic_split that moves it.`);
        next = Object.fromEntries(others.map((o: string) => [o, Number(ep.resource.trafficSplit[o] ?? 0)]));
      }
      const op = operation(ep.resource.name, `${V1}.UndeployModelOperationMetadata`, {});
      return run("UndeployModel", op, async () => {
        await stopChild(ep.servers.get(id)?.child);
        ep.servers.delete(id);
        ep.resource.deployedModels = ep.resource.deployedModels.filter((d: any) => d.id !== id);
        ep.resource.trafficSplit = next;
        for (const m of models.values()) for (const v of m.versions) v.resource.deployedModels = v.resource.deployedModels.filter((r: any) => r.deployedModelId !== id);
        return pack(`${V1}.UndeployModelResponse`, {});
      });
    }),
    DeleteEndpoint: unary("DeleteEndpoint", (req) => {
      const ep = findEndpoint(req.name);
      if (ep.resource.deployedModels.length) throw new RpcError(S.FAILED_PRECONDITION, `Endpoint ${req.name} still has deployed models; undeploy them first.`);
      const op = operation(ep.resource.name, `${V1}.DeleteOperationMetadata`, {});
      return run("DeleteEndpoint", op, async () => {
        endpoints.delete(ep.id);
        return pack("google.protobuf.Empty", {});
      });
    }),
  });

  server.addService(v1.PredictionService.service, {
    Predict: unary("Predict", async (req) => {
      const ep = findEndpoint(req.endpoint);
      const split: Record<string, number> = ep.resource.trafficSplit ?? {};
      const target = ep.resource.deployedModels.filter((d: any) => (split[d.id] ?? 0) > 0).sort((a: any, b: any) => split[b.id]! - split[a.id]!)[0];
      if (!target) throw new RpcError(S.FAILED_PRECONDITION, `Endpoint ${req.endpoint} has no deployed model with traffic.`);
      const srv = ep.servers.get(target.id)!;
      const body: Record<string, unknown> = { instances: (req.instances ?? []).map(fromValue) };
      if (req.parameters) body.parameters = fromValue(req.parameters);
      const text = JSON.stringify(body);
      if (Buffer.byteLength(text) > 1.5 * 1024 * 1024) throw invalid("Request payload size exceeds the limit: 1572864 bytes.");
      const response = await fetch(`${srv.url}${srv.predictRoute}`, { method: "POST", headers: { "content-type": "application/json" }, body: text });
      const answer = await response.text();
      if (response.status === 400) {
        let message = answer;
        try {
          message = (JSON.parse(answer) as { error?: string }).error ?? answer;
        } catch {
          // not JSON
        }
        throw invalid(message);
      }
      if (response.status !== 200) throw new RpcError(S.INTERNAL, `The model server answered ${response.status}: ${answer.slice(0, 300)}`);
      const parsed = JSON.parse(answer) as { predictions?: unknown };
      if (!Array.isArray(parsed.predictions)) throw new RpcError(S.FAILED_PRECONDITION, 'The model server response has no "predictions" list.');
      const { version } = findModel(`${target.model}@${target.modelVersionId}`);
      return {
        predictions: parsed.predictions.map(toValue),
        deployedModelId: target.id,
        model: target.model,
        modelVersionId: target.modelVersionId,
        modelDisplayName: version.resource.displayName,
      };
    }),
  });

  server.addService(pkg.google.longrunning.Operations.service, {
    GetOperation: unary("GetOperation", (req) => {
      const op = operations.get(req.name);
      if (!op) throw notFound(`Operation ${req.name} not found.`);
      return wire(op);
    }),
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
  );

  return {
    address: `127.0.0.1:${port}`,
    port,
    project,
    projectNumber,
    calls,
    requests: (method) => calls.filter((c) => c.method === method).map((c) => c.request),
    failNext(method, failure) {
      failures.set(method, [...(failures.get(method) ?? []), failure]);
    },
    failOperation(method, failure) {
      opFailures.set(method, [...(opFailures.get(method) ?? []), failure]);
    },
    jobLog: (id) => [...(jobs.get(id)?.log ?? [])],
    jobDone: (id) => jobs.get(id)?.done ?? Promise.resolve(),
    serverLog: (id) => [...(serverLogs.get(id) ?? [])],
    runningServers: () => [...endpoints.values()].flatMap((e) => [...e.servers.entries()].filter(([, s]) => s.child.exitCode === null && s.child.signalCode === null).map(([id]) => id)),
    async close() {
      closed = true;
      await Promise.all([...jobs.values()].map((j) => stopChild(j.child, 2000)));
      await Promise.all([...endpoints.values()].flatMap((e) => [...e.servers.values()].map((s) => stopChild(s.child, 2000))));
      await Promise.allSettled([...pending]);
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      server.forceShutdown();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
