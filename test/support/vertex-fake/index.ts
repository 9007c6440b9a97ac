// A local Vertex AI (v1) for tests: a gRPC server built from the aiplatform package's own
// protos.json, so the REAL @google-cloud/aiplatform clients talk to it unchanged. It does the work
// for real, on this machine, against a fake-gcs-server:
//
// - JobService (jobs.ts): a CustomJob runs its container command with the project venv's python. The
//   bucket paths the job names (/gcs/<bucket>/…, baseOutputDirectory) are downloaded into a temp dir
//   laid out like the Cloud Storage FUSE mount, /gcs/ in the command is that dir, the container env has
//   AIP_MODEL_DIR/AIP_CHECKPOINT_DIR (and AVATAR_GCS_FUSE_ROOT so the trainer maps gs:// URIs there);
//   files the job writes go back to the bucket while it runs and at the end, as FUSE would. A job can
//   be preempted like a Spot VM (SIGTERM, then FAILED, or a restart in place with
//   scheduling.restartJobOnWorkerRestart).
// - ModelService (models.ts): uploadModel snapshots the artifacts (Vertex copies them), versions + aliases.
// - EndpointService (endpoints.ts): deployModel copies the snapshot to a model dir and starts
//   handlers/local_server.py with the container's AIP_* env (AIP_MODE=PREDICTION), exactly as the
//   inference image would; serving GPUs count against an optional quota; deployments can be slow
//   (deployDelayMs) and cancelled.
// - PredictionService.predict (prediction.ts): instances/parameters → JSON → that server → predictions
//   as Values; container errors, the payload limits and the time limits answer as real Vertex does.
//   Dedicated endpoints (dedicatedEndpointEnabled) answer only on a second port that plays their DNS
//   names (dedicatedAddress, checked against the call's :authority); shared ones only on the first.
// - JobService batch prediction (batch.ts): a BatchPredictionJob runs local_server.py over the JSONL
//   instances in the bucket, batchSize lines per request, and writes Vertex's output folder.
// - google.longrunning.Operations (operations.ts): Get, List, Cancel, Delete for every LRO above.
// Every other unary method of these services answers UNIMPLEMENTED (and can still be given faults).
//
// It refuses what the real API refuses where it matters to the CLI (duplicate model or endpoint
// ids, a missing parent model, deleting an endpoint that still has models, undeploying a model with
// traffic, bad labels, bad machine/GPU pairs, AIP_* in the model env) and runs what the real image
// would crash on (HF_MODEL_ID / HF_MODEL_DIR next to artifacts: the container exits, the deploy fails).
// Names in responses carry a project NUMBER, as Vertex's do.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { Storage } from "@google-cloud/storage";
import { grpc } from "google-gax";
import { checkFailure, fetchObject, invalid, md5, notFound, parseName, pkg, RpcError, S, SERVICES, stopChild, toServiceError, UNARY_METHODS, venvPython, type FakeFailure } from "./common.ts";
import { batchService } from "./batch.ts";
import { endpointService } from "./endpoints.ts";
import { jobService } from "./jobs.ts";
import { modelService } from "./models.ts";
import { operationsService, operationTools } from "./operations.ts";
import { predictionService } from "./prediction.ts";
import type { Ctx, FakeHost, Handler, RecordedCall, VertexFake, VertexFakeOptions } from "./types.ts";

export { fetchObject, venvPython, UNARY_METHODS, type FakeFailure } from "./common.ts";
export { DEDICATED_PAYLOAD_LIMIT, PREDICT_REQUEST_LIMIT } from "./prediction.ts";
export type { FakeHost, PredictRecord, PreemptOptions, RecordedCall, VertexFake, VertexFakeOptions } from "./types.ts";

function checkMs(name: string, ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`fake: ${name} must be a number of milliseconds ≥ 0, got ${ms}`);
}

function checkQuota(n: number | undefined): void {
  if (n !== undefined && (!Number.isInteger(n) || n < 0)) throw new Error(`fake: servingGpuQuota must be an integer ≥ 0 or undefined, got ${n}`);
}

export async function startVertexFake(options: VertexFakeOptions): Promise<VertexFake> {
  const project = options.project ?? "avatar-test";
  const projectNumber = options.projectNumber ?? "314159265358";
  checkMs("predictTimeoutMs", options.predictTimeoutMs ?? 0);
  checkMs("dedicatedPredictTimeoutMs", options.dedicatedPredictTimeoutMs ?? 0);
  checkMs("deployDelayMs", options.deployDelayMs ?? 0);
  checkMs("preemptGraceMs", options.preemptGraceMs ?? 0);
  checkQuota(options.servingGpuQuota);
  const work = mkdtempSync(join(tmpdir(), "avatar-vertex-fake-"));
  const storage = new Storage({ apiEndpoint: options.gcsEndpoint, projectId: project });
  const calls: RecordedCall[] = [];
  const failures = new Map<string, { failure: FakeFailure; left: number }[]>();
  const opFailures = new Map<string, { code: number; message: string }[]>();
  const pending = new Set<Promise<unknown>>();
  let counter = 1000;
  let closed = false;

  const track = (task: Promise<unknown>) => {
    pending.add(task);
    void task.finally(() => pending.delete(task)).catch(() => undefined);
  };
  const nextId = () => ++counter;
  const loc: Ctx["loc"] = (p) => {
    if (p.project !== project && p.project !== projectNumber) throw new RpcError(S.PERMISSION_DENIED, `Permission denied on project ${p.project} (or it may not exist).`);
    return `projects/${projectNumber}/locations/${p.region}`;
  };
  const operations: Ctx["operations"] = new Map();
  const ops = operationTools({ operations, nextId, track }, opFailures);

  const ctx: Ctx = {
    options,
    project,
    projectNumber,
    python: options.python ?? venvPython(),
    work,
    storage,
    jobs: new Map(),
    models: new Map(),
    endpoints: new Map(),
    operations,
    serverLogs: new Map(),
    reservations: new Set(),
    predictions: [],
    settings: {
      predictTimeoutMs: options.predictTimeoutMs ?? 60_000,
      dedicatedPredictTimeoutMs: options.dedicatedPredictTimeoutMs,
      deployDelayMs: options.deployDelayMs ?? 0,
      servingGpuQuota: options.servingGpuQuota,
      preemptGraceMs: options.preemptGraceMs ?? 30_000,
    },
    track,
    nextId,
    isClosed: () => closed,
    loc,
    location: (parent) => loc(parseName(parent)),
    parseGs(uri) {
      const m = /^gs:\/\/([^/]+)\/?(.*)$/.exec(uri);
      if (!m) throw invalid(`"${uri}" is not a gs:// URI.`);
      return { bucket: m[1]!, prefix: m[2]!.replace(/\/+$/, "") };
    },
    async listObjects(bucket, prefix) {
      const [files] = await storage.bucket(bucket).getFiles({ prefix });
      return files.map((f) => f.name).filter((n) => n === prefix || prefix === "" || n.startsWith(`${prefix}/`));
    },
    async download(bucket, names, dir, strip = "") {
      const hashes = new Map<string, string>();
      for (const name of names) {
        const body = await fetchObject(options.gcsEndpoint, bucket, name);
        const target = join(dir, strip ? relative(strip, name) : name);
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, body);
        hashes.set(name, md5(body));
      }
      return hashes;
    },
    operation: ops.operation,
    run: ops.run,
    wire: ops.wire,
    findModel(name) {
      const p = parseName(name, "models");
      loc(p);
      const model = ctx.models.get(p.id!);
      if (!model) throw notFound(`Model ${name} not found.`);
      const v = p.version;
      const version = !v ? model.versions.find((x) => x.resource.versionAliases.includes("default")) : /^\d+$/.test(v) ? model.versions.find((x) => x.resource.versionId === v) : model.versions.find((x) => x.resource.versionAliases.includes(v));
      if (!version) throw notFound(`Model ${name} not found.`);
      return { model, version };
    },
    findEndpoint(name) {
      const p = parseName(name, "endpoints");
      loc(p);
      const ep = ctx.endpoints.get(p.id!);
      if (!ep) throw notFound(`Endpoint ${name} not found.`);
      return ep;
    },
  };
  // ---- gRPC plumbing
  // Requests over Vertex's payload limits must reach the services (which answer as Vertex does),
  // not stop at grpc-js's default 4 MB receive limit.
  const serverOptions = { "grpc.max_receive_message_length": 64 * 1024 * 1024 };
  const server = new grpc.Server(serverOptions);
  const dedicatedServer = new grpc.Server(serverOptions);
  const unaryOn = (host: FakeHost) => (method: string, handler: Handler) => (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
    calls.push({ method, request: call.request, host });
    const queue = failures.get(method);
    const head = queue?.[0];
    if (head) {
      if (--head.left <= 0) queue!.shift();
      return callback(toServiceError(new RpcError(head.failure.code, head.failure.message, head.failure)));
    }
    const cancelled = new AbortController();
    call.on("cancelled", () => cancelled.abort());
    const metadata = Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)]));
    Promise.resolve()
      .then(() => handler(call.request, { cancelled: cancelled.signal, host, authority: call.getHost(), metadata }))
      .then((response) => callback(null, response), (error) => callback(toServiceError(error)));
  };
  const unary = unaryOn("shared");
  const batch = batchService(ctx, unary);
  const implemented: Record<string, Record<string, unknown>> = {
    [SERVICES[0]]: { ...jobService(ctx, unary), ...batch },
    [SERVICES[1]]: modelService(ctx, unary),
    [SERVICES[2]]: endpointService(ctx, unary),
    [SERVICES[3]]: predictionService(ctx, unary),
    [SERVICES[4]]: operationsService(ctx, unary),
  };
  /** The service's handlers, the rest of its unary methods answering UNIMPLEMENTED (faults apply to them too). */
  const withUnimplemented = (service: string, handlers: Record<string, unknown>, on: typeof unary) => {
    const all = { ...handlers };
    for (const [method, owner] of UNARY_METHODS) {
      if (owner === service && !all[method]) {
        all[method] = on(method, () => {
          throw new RpcError(S.UNIMPLEMENTED, `fake: ${method} is not implemented by the Vertex fake.`);
        });
      }
    }
    return all as grpc.UntypedServiceImplementation;
  };
  const definitionOf = (service: string) => service.split(".").reduce((o: any, k) => o[k], pkg).service;
  for (const service of SERVICES) server.addService(definitionOf(service), withUnimplemented(service, implemented[service]!, unary));
  // Batch jobs with Spot VMs are created through v1beta1 (batch.ts); its other methods answer UNIMPLEMENTED (grpc-js).
  server.addService(definitionOf("google.cloud.aiplatform.v1beta1.JobService"), batch as grpc.UntypedServiceImplementation);
  // The dedicated DNS names serve predictions only (Vertex docs: Predict, RawPredict, StreamRawPredict, …).
  const onDedicated = unaryOn("dedicated");
  dedicatedServer.addService(definitionOf(SERVICES[3]), withUnimplemented(SERVICES[3], predictionService(ctx, onDedicated), onDedicated));

  const bind = (s: grpc.Server) =>
    new Promise<number>((resolve, reject) => s.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))));
  const port = await bind(server);
  const dedicatedPort = await bind(dedicatedServer);

  return {
    address: `127.0.0.1:${port}`,
    port,
    dedicatedAddress: `127.0.0.1:${dedicatedPort}`,
    project,
    projectNumber,
    calls,
    requests: (method) => calls.filter((c) => c.method === method).map((c) => c.request),
    predictions: ctx.predictions,
    failNext(method, failure) {
      checkFailure(method, failure);
      failures.set(method, [...(failures.get(method) ?? []), { failure, left: failure.times ?? 1 }]);
    },
    failOperation(method, failure) {
      opFailures.set(method, [...(opFailures.get(method) ?? []), failure]);
    },
    preemptNext(preempt = {}) {
      const afterCheckpoints = preempt.afterCheckpoints ?? 1;
      if (!Number.isInteger(afterCheckpoints) || afterCheckpoints < 0) throw new Error(`fake: afterCheckpoints must be an integer ≥ 0, got ${afterCheckpoints}`);
      ctx.settings.preempt = { afterCheckpoints };
    },
    setPredictTimeout(ms, endpointType = "shared") {
      if (ms !== undefined) checkMs("predict timeout", ms);
      if (endpointType === "dedicated") ctx.settings.dedicatedPredictTimeoutMs = ms;
      else ctx.settings.predictTimeoutMs = ms ?? 60_000;
    },
    setDeployDelay(ms) {
      checkMs("deploy delay", ms);
      ctx.settings.deployDelayMs = ms;
    },
    setServingGpuQuota(n) {
      checkQuota(n);
      ctx.settings.servingGpuQuota = n;
    },
    jobLog: (id) => [...(ctx.jobs.get(id)?.log ?? [])],
    jobDone: (id) => ctx.jobs.get(id)?.done ?? Promise.resolve(),
    serverLog: (id) => [...(ctx.serverLogs.get(id) ?? [])],
    runningServers: () => [...ctx.endpoints.values()].flatMap((e) => [...e.servers.entries()].filter(([, s]) => s.child.exitCode === null && s.child.signalCode === null).map(([id]) => id)),
    async close() {
      closed = true;
      for (const op of ctx.operations.values()) if (!op.done && op.cancellable) op.abort.abort(new RpcError(S.CANCELLED, "fake: closed"));
      await Promise.all([...ctx.jobs.values()].map((j) => stopChild(j.child, 2000)));
      await Promise.all([...ctx.endpoints.values()].flatMap((e) => [...e.servers.values()].map((s) => stopChild(s.child, 2000))));
      await Promise.allSettled([...pending]);
      for (const s of [server, dedicatedServer]) {
        await new Promise<void>((resolve) => s.tryShutdown(() => resolve()));
        s.forceShutdown();
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
}
