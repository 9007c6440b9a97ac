// JobService batch prediction: a BatchPredictionJob runs the model version's serving container
// stand-in (handlers/local_server.py, as a deployment does) over the JSONL instances in the bucket
// and writes the output folder Vertex writes. What is known of real Vertex and where it comes from
// is in src/core/batch-spec.ts (the fake must not import src/: the facts are repeated briefly here):
// - the container gets `{"instances": [batchSize lines]}` on its predict route (Vertex docs "Get
//   batch predictions from a custom trained model"); the fake adds `"parameters": modelParameters`
//   when the job has them, as the field's description suggests (forwarding is UNCONFIRMED; the
//   handler gets each line's own parameters either way);
// - output folder `prediction-<model display name>-<create time as 2025_03_25T06_28_43_123Z>` with
//   `prediction.results-00000-of-00001` (names seen in public code reading real jobs), lines
//   `{"instance", "prediction"}` or `{"instance", "error": {"status", "message"}}` (REST reference
//   "PredictionResult"), and for failures `prediction.errors_stats-00000-of-00001` with
//   `('<message>', <count>)` lines (shape UNCONFIRMED: the start of such a message is quoted in
//   python-aiplatform #2666, "('Post request fails. Cannot get predictions. Error: Exceeded retries:
//   Non-OK result 422 (…)");
// - states PENDING → RUNNING → SUCCEEDED, PARTIALLY_SUCCEEDED (some instances failed: JobState's
//   "some results may be missing due to errors"; what real jobs report then is UNCONFIRMED), FAILED
//   (all failed, or the container never started), CANCELLING → CANCELLED; completionStats counted
//   per request. v1beta1's JobService takes the same calls (only it has dedicatedResources.spot).
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { checkLabels, checkMachine, exited, fetchObject, fromValue, invalid, labelFilter, notFound, parseName, repoRoot, RpcError, S, sleep, stopChild, timestamp } from "./common.ts";
import type { Ctx, Handler, VersionRecord } from "./types.ts";

interface BatchRecord {
  id: string;
  resource: any;
  cancelRequested?: boolean;
  done: Promise<void>;
  log: string[];
}

const TERMINAL = ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_PARTIALLY_SUCCEEDED", "JOB_STATE_EXPIRED"];

/** 2025-03-25T06:28:43.123Z → 2025_03_25T06_28_43_123Z, as real output folder names spell it. */
const folderTime = (ms: number) => new Date(ms).toISOString().replace(/[-:.]/g, "_");

function setState(job: BatchRecord, state: string, error?: { code: number; message: string }) {
  job.resource.state = state;
  job.resource.updateTime = timestamp();
  if (state === "JOB_STATE_RUNNING") job.resource.startTime ??= timestamp();
  if (TERMINAL.includes(state)) job.resource.endTime = timestamp();
  if (error) job.resource.error = { code: error.code, message: error.message, details: [] };
}

/** A 400 from the container, as the job's output reports it (prefix from python-aiplatform #2666; no retries here). */
const postFailure = (status: number, body: string) => `Post request fails. Cannot get predictions. Error: Exceeded retries: Non-OK result ${status} (${body.trim()}) from server.`;

export function batchService(ctx: Ctx, unary: (method: string, handler: Handler) => unknown) {
  const jobs = new Map<string, BatchRecord>();

  /** The serving container stand-in for one job, started like a deployment's (AIP_* env, ready line, health). */
  async function startServer(job: BatchRecord, version: VersionRecord): Promise<{ child: ChildProcess; url: string; predictRoute: string }> {
    const modelDir = join(ctx.work, `batch-${job.id}`, "model");
    cpSync(version.snapshot, modelDir, { recursive: true });
    const health = `/v1/endpoints/batch-${job.id}/deployedModels/${job.id}`;
    const env: Record<string, string> = {
      PATH: `${dirname(ctx.python)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      HOME: process.env.HOME ?? tmpdir(),
      PYTHONUNBUFFERED: "1",
      ...Object.fromEntries((version.resource.containerSpec.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value])),
      ...ctx.options.env,
      // Which AIP_* a batch job's container gets is UNCONFIRMED; these are a deployment's.
      AIP_MODE: "PREDICTION",
      AIP_HTTP_PORT: "0",
      AIP_HEALTH_ROUTE: health,
      AIP_PREDICT_ROUTE: `${health}:predict`,
      AIP_STORAGE_URI: version.resource.artifactUri,
      AIP_FRAMEWORK: "CUSTOM_CONTAINER",
      AIP_PROJECT_NUMBER: ctx.projectNumber,
    };
    const script = ctx.options.serverScript ?? join(repoRoot, "handlers", "local_server.py");
    const child = spawn(ctx.python, [script, "--model-dir", modelDir], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let url: string | undefined;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        job.log.push(line);
        url ??= /^ready url=(\S+)/.exec(line)?.[1];
      });
    }
    const deadline = Date.now() + 1000 * Number(version.resource.containerSpec.deploymentTimeout?.seconds || 600);
    while (Date.now() < deadline && !ctx.isClosed() && !job.cancelRequested) {
      if (exited(child)) throw new RpcError(S.FAILED_PRECONDITION, `Model server exited unexpectedly (fake: ${job.log.at(-1) ?? "no output"}).`);
      if (url) {
        const ok = await fetch(`${url}${health}`).then((r) => r.status === 200, () => false);
        if (ok) return { child, url, predictRoute: `${health}:predict` };
      }
      await sleep(100);
    }
    await stopChild(child);
    throw new RpcError(job.cancelRequested ? S.CANCELLED : S.DEADLINE_EXCEEDED, job.cancelRequested ? "CANCELED" : "Model server never became ready within the deployment timeout.");
  }

  async function readInstances(uris: string[]): Promise<unknown[]> {
    const lines: unknown[] = [];
    for (const uri of uris) {
      const { bucket, prefix } = ctx.parseGs(uri);
      for (const line of (await fetchObject(ctx.options.gcsEndpoint, bucket, prefix)).toString("utf8").split("\n")) {
        if (!line.trim()) continue;
        try {
          lines.push(JSON.parse(line));
        } catch {
          lines.push({ fakeUnparsed: line }); // answered as a failed instance below
        }
      }
    }
    return lines;
  }

  async function writeOutput(job: BatchRecord, results: object[], errors: Map<string, number>): Promise<void> {
    const dir = job.resource.outputInfo.gcsOutputDirectory as string;
    const { bucket, prefix } = ctx.parseGs(dir);
    const save = (name: string, text: string) => ctx.storage.bucket(bucket).file(`${prefix}/${name}`).save(text, { resumable: false });
    await save("prediction.results-00000-of-00001", results.map((r) => `${JSON.stringify(r)}\n`).join(""));
    if (errors.size) await save("prediction.errors_stats-00000-of-00001", [...errors].map(([m, n]) => `(${JSON.stringify(m).replace(/^"|"$/g, "'")}, ${n})\n`).join(""));
  }

  async function runJob(job: BatchRecord): Promise<void> {
    await sleep(ctx.options.jobStartDelayMs ?? 300);
    const spec = job.resource;
    if (job.cancelRequested || ctx.isClosed()) return setState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
    const results: object[] = [];
    const errors = new Map<string, number>();
    let server: { child: ChildProcess; url: string; predictRoute: string } | undefined;
    try {
      const instances = await readInstances(spec.inputConfig.gcsSource.uris);
      const stats = spec.completionStats;
      stats.incompleteCount = String(instances.length);
      const created = Number(spec.createTime.seconds) * 1000 + Math.floor(spec.createTime.nanos / 1e6);
      spec.outputInfo = { gcsOutputDirectory: `${spec.outputConfig.gcsDestination.outputUriPrefix.replace(/\/+$/, "")}/prediction-${ctx.findModel(spec.model).version.resource.displayName}-${folderTime(created)}` };
      setState(job, "JOB_STATE_RUNNING");
      server = await startServer(job, ctx.findModel(spec.model).version);
      const size = Number(spec.manualBatchTuningParameters?.batchSize) || 64;
      const parameters = spec.modelParameters ? fromValue(spec.modelParameters) : undefined;
      let ok = 0;
      let failed = 0;
      for (let at = 0; at < instances.length && !job.cancelRequested && !ctx.isClosed(); at += size) {
        const chunk = instances.slice(at, at + size);
        const fail = (message: string) => {
          for (const instance of chunk) results.push({ instance, error: { status: "FAILED_PRECONDITION", message } });
          errors.set(message, (errors.get(message) ?? 0) + chunk.length);
          failed += chunk.length;
        };
        if (chunk.some((i) => (i as { fakeUnparsed?: string })?.fakeUnparsed !== undefined)) {
          fail("fake: an input line is not JSON");
        } else {
          const body = JSON.stringify({ instances: chunk, ...(parameters === undefined || parameters === null ? {} : { parameters }) });
          const response = await fetch(`${server.url}${server.predictRoute}`, { method: "POST", headers: { "content-type": "application/json" }, body }).catch((e: Error) => e);
          if (response instanceof Error) fail(`fake: the model server did not answer: ${response.message}`);
          else {
            const text = await response.text();
            const predictions = response.status === 200 ? (JSON.parse(text) as { predictions?: unknown[] }).predictions : undefined;
            if (response.status !== 200) fail(postFailure(response.status, text));
            else if (!Array.isArray(predictions) || predictions.length !== chunk.length) fail(`fake: the model answered ${Array.isArray(predictions) ? predictions.length : "no"} predictions for ${chunk.length} instances`);
            else {
              chunk.forEach((instance, i) => results.push({ instance, prediction: predictions[i] }));
              ok += chunk.length;
            }
          }
        }
        Object.assign(stats, { successfulCount: String(ok), failedCount: String(failed), incompleteCount: String(instances.length - ok - failed) });
        spec.updateTime = timestamp();
      }
      await writeOutput(job, results, errors);
      if (job.cancelRequested) setState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
      else if (failed === 0) setState(job, "JOB_STATE_SUCCEEDED");
      else if (ok > 0) setState(job, "JOB_STATE_PARTIALLY_SUCCEEDED");
      else setState(job, "JOB_STATE_FAILED", { code: 3, message: `fake: every instance failed; the first: ${[...errors.keys()][0]}` });
    } catch (error) {
      job.log.push(`fake: ${(error as Error).message}`);
      if (job.cancelRequested) setState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
      else setState(job, "JOB_STATE_FAILED", { code: (error as RpcError).code ?? 13, message: (error as Error).message });
    } finally {
      await stopChild(server?.child);
    }
  }

  const findJob = (name: string) => {
    const p = parseName(name, "batchPredictionJobs");
    ctx.loc(p);
    const job = jobs.get(p.id!);
    if (!job) throw notFound(`BatchPredictionJob ${name} not found.`);
    return job;
  };

  return {
    CreateBatchPredictionJob: unary("CreateBatchPredictionJob", (req) => {
      const locName = ctx.location(req.parent);
      const spec = req.batchPredictionJob;
      if (!spec?.displayName) throw invalid("batch_prediction_job.display_name is required.");
      checkLabels(spec.labels);
      if (!spec.model) throw invalid("fake: only batch jobs of a registered model (batch_prediction_job.model) are run.");
      const { version } = ctx.findModel(spec.model);
      if (spec.inputConfig?.instancesFormat !== "jsonl") throw invalid(`fake: instances_format "${spec.inputConfig?.instancesFormat}" is not run by the fake (jsonl is).`);
      const uris: string[] = spec.inputConfig.gcsSource?.uris ?? [];
      if (uris.length === 0) throw invalid("input_config.gcs_source.uris is required.");
      for (const uri of uris) ctx.parseGs(uri);
      if (spec.outputConfig?.predictionsFormat !== "jsonl") throw invalid(`fake: predictions_format "${spec.outputConfig?.predictionsFormat}" is not written by the fake (jsonl is).`);
      ctx.parseGs(spec.outputConfig.gcsDestination?.outputUriPrefix ?? "");
      // A custom container model supports dedicated resources only (BatchPredictionJob.dedicated_resources).
      if (!spec.dedicatedResources) throw invalid(`Model ${spec.model} does not support automatic resources: batch_prediction_job.dedicated_resources is required.`);
      checkMachine(spec.dedicatedResources.machineSpec);
      const batchSize = spec.manualBatchTuningParameters?.batchSize;
      if (batchSize !== undefined && batchSize !== null && Number(batchSize) < 0) throw invalid("manual_batch_tuning_parameters.batch_size must be ≥ 0.");
      const id = String(ctx.nextId());
      const resource = {
        ...spec,
        name: `${locName}/batchPredictionJobs/${id}`,
        model: version.resource.name,
        modelVersionId: version.resource.versionId,
        state: "JOB_STATE_PENDING",
        completionStats: { successfulCount: "0", failedCount: "0", incompleteCount: "0" },
        createTime: timestamp(),
        updateTime: timestamp(),
      };
      const job: BatchRecord = { id, resource, log: [], done: Promise.resolve() };
      job.done = runJob(job);
      ctx.track(job.done);
      jobs.set(id, job);
      return resource;
    }),
    GetBatchPredictionJob: unary("GetBatchPredictionJob", (req) => findJob(req.name).resource),
    ListBatchPredictionJobs: unary("ListBatchPredictionJobs", (req) => {
      const locName = ctx.location(req.parent);
      const match = labelFilter(req.filter ?? "");
      return { batchPredictionJobs: [...jobs.values()].map((j) => j.resource).filter((r) => r.name.startsWith(locName) && match(r.labels ?? {})), nextPageToken: "" };
    }),
    CancelBatchPredictionJob: unary("CancelBatchPredictionJob", (req) => {
      const job = findJob(req.name);
      if (TERMINAL.includes(job.resource.state)) throw new RpcError(S.FAILED_PRECONDITION, `Cannot cancel BatchPredictionJob ${req.name} in state ${job.resource.state}.`);
      job.cancelRequested = true;
      if (job.resource.state === "JOB_STATE_RUNNING") setState(job, "JOB_STATE_CANCELLING");
      return {};
    }),
  };
}
