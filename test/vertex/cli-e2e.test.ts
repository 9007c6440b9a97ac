// The vertex backend end to end through the built CLI, as a user or CI runs it: train → register →
// deploy → generate → status/list/logs → down, against fake-gcs-server and the Vertex fake (which
// runs the real trainer and serving stand-in). --dry-run must print the exact requests and send none.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, cliPath, runCli, type CliResult } from "../support/cli.ts";
import { PROJECT, REGION, startVertexWorld, tinyBase, type VertexWorld } from "./helpers.ts";

const LONG = 10 * 60_000;
const BUCKET = "avatar-vx-e2e";
const NAME = "nova";
const parent = `projects/${PROJECT}/locations/${REGION}`;
/** RPCs that change remote state: a dry run must send none of them. */
const MUTATING = ["CreateCustomJob", "CancelCustomJob", "UploadModel", "CreateEndpoint", "DeployModel", "UndeployModel", "DeleteEndpoint", "Predict"];

let world: VertexWorld;
let home: string;
let photos: string;
let base: string;
let env: Record<string, string | undefined>;

const vertex = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
const cli = (args: string[], timeoutMs = LONG) => runCli([...args, ...vertex], { env, cwd: home, timeoutMs });
const trainArgs = () => ["train", photos, "--name", NAME, "--base", base, "--steps", "4", "--resolution", "64", "--rank", "4", "--checkpoint-every", "2"];
const mutatingCalls = () => world.fake.calls.filter((c) => MUTATING.includes(c.method)).map((c) => c.method);

function ok(result: CliResult): NonNullable<CliResult["json"]>["data"] {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
  expect(result.json?.ok).toBe(true);
  expect(result.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
  return result.json!.data;
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-vx-e2e-"));
  photos = join(home, "photos");
  [world, base] = await Promise.all([startVertexWorld(BUCKET), tinyBase(), writeSyntheticSelfies(photos, 6, 21)]);
  env = cleanEnv(home, world.env);
}, LONG);

afterAll(async () => {
  await world?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("vertex backend through the CLI", () => {
  it("train --dry-run prints the exact requests (trainer package upload, CreateCustomJob) and sends nothing", async () => {
    const data = ok(await cli([...trainArgs(), "--dry-run", "--json"]));
    expect(data.dataset.status).toBe("dry-run");
    const [upload, create] = data.requests;
    expect(upload).toMatchObject({ service: "Cloud Storage", method: "upload" });
    expect(upload.request.objects).toContain(`gs://${BUCKET}/avatar/_trainer/${/_trainer\/([^/]+)\//.exec(upload.request.objects[0])![1]}/avatar_trainer/__main__.py`);
    expect(create).toMatchObject({ service: "JobService", method: "CreateCustomJob", request: { parent } });
    const job = create.request.customJob;
    expect(job.labels).toMatchObject({ avatar: NAME, "avatar-run": data.job.runId, "managed-by": "avatar-cli" });
    expect(job.jobSpec.workerPoolSpecs[0].machineSpec).toEqual({ machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 });
    expect(job.jobSpec.workerPoolSpecs[0].containerSpec.args).toEqual(expect.arrayContaining(["--steps", "4", "--resolution", "64", "--base", base]));
    expect(job.jobSpec.baseOutputDirectory).toEqual({ outputUriPrefix: `gs://${BUCKET}/avatar/${NAME}/runs/${data.job.runId}` });
    expect(mutatingCalls()).toEqual([]);
    expect(await world.gcs.objects(BUCKET)).toEqual(new Map());

    const human = await cli([...trainArgs(), "--dry-run", "--gpu", "t4", "--spot"]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain("JobService.CreateCustomJob");
    expect(human.stdout).toContain('"machineType": "n1-standard-8"');
    expect(human.stdout).toContain('"strategy": "SPOT"');
    expect(mutatingCalls()).toEqual([]);
  }, LONG);

  it("train runs the CustomJob, waits with progress, registers version 1; register again is idempotent", async () => {
    const result = await cli([...trainArgs(), "--json"]);
    const data = ok(result);
    expect(data.dataset.status).toBe("uploaded");
    expect(data.job).toMatchObject({ name: NAME, state: "succeeded", modelUri: `gs://${BUCKET}/avatar/${NAME}/runs/${data.job.runId}/model` });
    expect(data.registered).toMatchObject({ created: true, version: { modelId: `avatar-${NAME}`, versionId: "1", runId: data.job.runId } });
    expect(result.stderr).toContain(`Launched training run ${data.job.runId}`);
    expect(result.stderr).toMatch(/Training .*4 \/ 4/);
    expect(world.fake.requests("CreateCustomJob")).toHaveLength(1);
    expect(world.fake.requests("UploadModel")[0]).toMatchObject({ modelId: `avatar-${NAME}` });

    const again = ok(await cli(["register", "--name", NAME, "--json"]));
    expect(again).toMatchObject({ created: false, version: { versionId: "1", runId: data.job.runId } });
    const dry = ok(await cli(["register", "--name", NAME, "--dry-run", "--json"]));
    expect(dry.requests.at(-1)).toMatchObject({ service: "ModelService", method: "UploadModel", request: null });
    expect(dry.requests.at(-1).note).toMatch(/already version 1/);
    expect(world.fake.requests("UploadModel")).toHaveLength(1);
  }, LONG);

  it("deploy --dry-run shows CreateEndpoint + DeployModel; deploy shows stages; deploy again reuses", async () => {
    const before = mutatingCalls().length;
    const dry = ok(await cli(["deploy", NAME, "--dry-run", "--json"]));
    expect(dry.requests.map((r: { method: string }) => r.method)).toEqual(["CreateEndpoint", "DeployModel"]);
    expect(dry.requests[1].request).toMatchObject({ endpoint: `${parent}/endpoints/avatar-${NAME}`, trafficSplit: { "0": 100 }, deployedModel: { model: `${parent}/models/avatar-${NAME}@1` } });
    expect(mutatingCalls()).toHaveLength(before);

    const deployed = await cli(["deploy", NAME, "--json"]);
    const data = ok(deployed);
    expect(data).toMatchObject({ reused: false, endpoint: { name: NAME, state: "ready", modelVersion: "1", gpu: "l4" } });
    expect(deployed.stderr).toMatch(/starting model server/);
    const reused = ok(await cli(["deploy", NAME, "--json"]));
    expect(reused.reused).toBe(true);
    expect(world.fake.requests("DeployModel")).toHaveLength(1);
  }, LONG);

  it("generate writes a decodable image; a request the handler refuses exits 2", async () => {
    const data = ok(await cli(["generate", NAME, "{avatar} smiling", "--steps", "2", "--seed", "5", "--width", "256", "--height", "256", "--json"]));
    expect(data.images).toHaveLength(1);
    expect(data.images[0]).toMatchObject({ seed: 5, prompt: "sks person smiling" });
    const meta = await sharp(data.images[0].file).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["jpeg", 256, 256]);
    const predict = world.fake.requests("Predict").at(-1);
    expect(predict.endpoint).toBe(`${parent}/endpoints/avatar-${NAME}`);

    const bad = await cli(["generate", NAME, "x", "--steps", "1000", "--json"]);
    expect(bad.code).toBe(2);
    expect(bad.json!.error).toMatchObject({ code: "BAD_INPUT" });
    expect(bad.json!.error!.message).toMatch(/steps/);
  }, LONG);

  it("generate --batch - reads prompts from stdin and keeps the results in the bucket under outputs/<stamp>/", async () => {
    const batch = await runCli(["generate", NAME, "--batch", "-", "--steps", "1", "--width", "256", "--height", "256", "--json", ...vertex], {
      env,
      cwd: home,
      timeoutMs: LONG,
      stdin: "{avatar} on the moon\n# skipped\n{avatar} under the sea\n",
    });
    const data = ok(batch);
    expect(data.images.map((i: { prompt: string }) => i.prompt)).toEqual(["sks person on the moon", "sks person under the sea"]);
    const stamp = data.dir.split("/").at(-1);
    expect(data.stored).toEqual({ uri: `gs://${BUCKET}/avatar/${NAME}/outputs/${stamp}/`, objects: 4 });
    const kept = [...(await world.gcs.objects(BUCKET)).keys()].filter((k) => k.startsWith(`avatar/${NAME}/outputs/${stamp}/`)).sort();
    expect(kept.map((k) => k.split("/").at(-1))).toEqual(["01-on-the-moon-" + data.images[0].seed + ".jpg", "02-under-the-sea-" + data.images[1].seed + ".jpg", "contact-sheet.jpg", "images.json"]);
  }, LONG);

  it("status, list and logs find everything by labels", async () => {
    const status = ok(await cli(["status", NAME, "--json"]));
    expect(status.runs.map((r: { state: string }) => r.state)).toEqual(["succeeded"]);
    expect(status.models).toHaveLength(1);
    expect(status.endpoint).toMatchObject({ state: "ready", modelVersion: "1" });
    const list = ok(await cli(["list", "--json"]));
    expect(list.backend).toBe("vertex");
    expect(list.avatars.map((a: { name: string }) => a.name)).toEqual([NAME]);
    const logs = ok(await cli(["logs", NAME, "--json"]));
    expect(logs.source).toBe("training");
    expect(logs.lines).toContain(`log       gs://${BUCKET}/avatar/${NAME}/runs/${logs.runId}/logs/trainer.log`);
    expect(logs.lines.some((l: string) => l.startsWith("step=4/4 loss="))).toBe(true);
    const tail = ok(await cli(["logs", NAME, "--tail", "1", "--json"]));
    expect(tail.lines).toEqual([expect.stringMatching(/^done output=/)]);
    const serving = ok(await cli(["logs", NAME, "--serving", "--json"]));
    expect(serving.lines.join("\n")).toContain("aiplatform.googleapis.com/Endpoint");
  }, LONG);

  it("down --dry-run lists UndeployModel + DeleteEndpoint; down stops it; down again has nothing to stop", async () => {
    const before = mutatingCalls().length;
    const dry = ok(await cli(["down", NAME, "--dry-run", "--json"]));
    expect(dry).toMatchObject({ name: NAME, wouldStop: true, dryRun: true });
    expect(dry.requests.map((r: { method: string }) => r.method)).toEqual(["UndeployModel", "DeleteEndpoint"]);
    expect(mutatingCalls()).toHaveLength(before);
    expect(world.fake.runningServers()).toHaveLength(1);

    expect(ok(await cli(["down", NAME, "--json"]))).toEqual({ name: NAME, stopped: true });
    expect(world.fake.runningServers()).toEqual([]);
    expect(ok(await cli(["down", NAME, "--json"]))).toEqual({ name: NAME, stopped: false });
    const gone = await cli(["generate", NAME, "x", "--json"]);
    expect(gone.code).toBe(6);
  }, LONG);

  it("register --artifact-uri imports a LoRA from another bucket prefix or from this machine as new versions, once each", async () => {
    const objects = await world.gcs.objects(BUCKET);
    const modelKey = [...objects.keys()].find((k) => k.startsWith(`avatar/${NAME}/runs/`) && k.endsWith("/model/avatar.json"))!;
    const manifest = JSON.parse(objects.get(modelKey)!.toString());
    const weights = objects.get(modelKey.replace("avatar.json", "pytorch_lora_weights.safetensors"))!;

    // The run's own folder: the same run id, nothing copied, the existing version.
    const same = ok(await cli(["register", "--name", NAME, "--artifact-uri", `gs://${BUCKET}/${modelKey.replace("/avatar.json", "")}/`, "--json"]));
    expect(same).toMatchObject({ created: false, imported: { copied: false, runId: manifest.run_id }, version: { versionId: "1" } });

    // Another prefix in Cloud Storage, as a trainer elsewhere left it.
    const bucket = world.gcs.storage().bucket(BUCKET);
    await bucket.file("exports/gpu-box/pytorch_lora_weights.safetensors").save(weights);
    await bucket.file("exports/gpu-box/avatar.json").save(JSON.stringify({ ...manifest, run_id: "20250303-030303" }));
    const before = world.fake.requests("UploadModel").length;
    const fromGcs = ok(await cli(["register", "--name", NAME, "--artifact-uri", `gs://${BUCKET}/exports/gpu-box`, "--json"]));
    expect(fromGcs).toMatchObject({ created: true, imported: { copied: true, runId: "20250303-030303", from: `gs://${BUCKET}/exports/gpu-box` }, version: { versionId: "2" } });
    const upload = world.fake.requests("UploadModel").at(-1);
    expect(upload.model.artifactUri).toBe(`gs://${BUCKET}/avatar/${NAME}/runs/20250303-030303/model`);
    const after = await world.gcs.objects(BUCKET);
    expect(after.get(`avatar/${NAME}/runs/20250303-030303/model/pytorch_lora_weights.safetensors`)).toEqual(weights);
    expect(after.has(`avatar/${NAME}/runs/20250303-030303/model/handler.py`)).toBe(true);

    // A folder on this machine (trained on a local GPU), uploaded into the bucket.
    const local = join(home, "trained-here");
    mkdirSync(local);
    writeFileSync(join(local, "pytorch_lora_weights.safetensors"), weights);
    writeFileSync(join(local, "avatar.json"), JSON.stringify({ ...manifest, run_id: "20250404-040404" }));
    const dry = ok(await cli(["register", "--name", NAME, "--artifact-uri", local, "--dry-run", "--json"]));
    expect(dry.requests.map((r: { method: string }) => r.method)).toEqual(["copy", "put", "UploadModel"]);
    expect(dry.requests[0].request).toMatchObject({ from: local, to: `gs://${BUCKET}/avatar/${NAME}/runs/20250404-040404/model` });
    expect(world.fake.requests("UploadModel")).toHaveLength(before + 1);
    expect((await world.gcs.objects(BUCKET)).has(`avatar/${NAME}/runs/20250404-040404/model/avatar.json`)).toBe(false);
    const fromDisk = ok(await cli(["register", "--name", NAME, "--artifact-uri", local, "--json"]));
    expect(fromDisk).toMatchObject({ created: true, imported: { copied: true, runId: "20250404-040404" }, version: { versionId: "3" } });
    expect(ok(await cli(["register", "--name", NAME, "--artifact-uri", local, "--json"]))).toMatchObject({ created: false, version: { versionId: "3" } });
    expect(world.fake.requests("UploadModel")).toHaveLength(before + 2);

    const missing = await cli(["register", "--name", NAME, "--artifact-uri", `gs://${BUCKET}/exports/nothing-here`, "--json"]);
    expect(missing.code).toBe(2);
    expect(missing.json!.error!.message).toBe(`gs://${BUCKET}/exports/nothing-here has no avatar.json.`);
  }, LONG);
});

describe("interrupting a vertex wait", () => {
  it("Ctrl-C while training leaves the job running on Vertex; `status --wait` re-attaches until it succeeds", async () => {
    const name = "ivy";
    const child = spawn(process.execPath, [cliPath, "train", photos, "--name", name, "--base", base, "--steps", "4", "--resolution", "64", "--rank", "4", "--no-register", ...vertex], {
      cwd: home,
      env: env as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`never launched:\n${stderr}`)), LONG);
      child.stderr.on("data", (d) => {
        stderr += d;
        if (stderr.includes("Launched training run")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/Still running: training job \d+/);
    expect(stderr).toMatch(/avatar status/);
    expect(world.fake.requests("CancelCustomJob")).toEqual([]);

    const waited = await cli(["status", name, "--wait", "--json"]);
    const data = ok(waited);
    expect(data.runs.map((r: { state: string }) => r.state)).toEqual(["succeeded"]);
    expect(data.models).toEqual([]);
    expect(waited.stderr).toMatch(/Training .*4 \/ 4/);
  }, LONG);
});

describe("vertex errors through the CLI", () => {
  it("RESOURCE_EXHAUSTED on CreateCustomJob exits 5 with a hint naming the quota and a region with L4", async () => {
    world.fake.failNext("CreateCustomJob", {
      code: 8,
      message: "The following quota metrics exceed quota limits: aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus",
      reason: "RATE_LIMIT_EXCEEDED",
      metadata: { quota_metric: "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus" },
    });
    const r = await cli(["train", photos, "--name", "quota-test", "--base", base, "--steps", "4", "--resolution", "64", "--json"]);
    expect(r.code, r.stderr).toBe(5);
    expect(r.json!.error!.code).toBe("QUOTA");
    expect(r.json!.error!.hint).toContain("custom_model_training_nvidia_l4_gpus");
    expect(r.json!.error!.hint).toMatch(/--region (us-east4|us-west1|europe-west4)/);
  }, LONG);

  it("without a project the vertex backend is a usage error naming the flag", async () => {
    const r = await runCli(["list", "--backend", "vertex", "--bucket", BUCKET, "--json"], { env, cwd: home });
    expect(r.code).toBe(2);
    expect(r.json!.error).toMatchObject({ code: "USAGE" });
    expect(r.json!.error!.hint).toContain("--project");
  });

  it("doctor asks Vertex AI itself and names the GPU quota; a denied API is a failed check with a hint", async () => {
    const report = await cli(["doctor", "--json"]);
    expect(report.code, report.stderr).toBe(0);
    const check = (name: string) => report.json!.data.checks.find((c: { name: string }) => c.name === name);
    expect(check("vertex-ai")).toMatchObject({ status: "ok", message: `Vertex AI answers for ${PROJECT} in ${REGION}` });
    expect(check("gpu-region")).toMatchObject({ status: "ok" });
    expect(check("gpu-region").message).toContain("custom_model_training_nvidia_l4_gpus");
    expect(world.fake.requests("ListCustomJobs").at(-1)).toMatchObject({ parent, pageSize: 1 });

    world.fake.failNext("ListCustomJobs", { code: 7, message: "Vertex AI API has not been used in project avatar-test before or it is disabled", reason: "SERVICE_DISABLED" });
    const elsewhere = vertex.map((v) => (v === REGION ? "southamerica-east1" : v));
    const denied = await runCli(["doctor", "--json", ...elsewhere], { env, cwd: home });
    const vertexAi = denied.json!.data.checks.find((c: { name: string }) => c.name === "vertex-ai");
    expect(vertexAi.status).toBe("fail");
    expect(vertexAi.hint).toBe(`Enable the API: gcloud services enable aiplatform.googleapis.com --project ${PROJECT}`);
    expect(denied.json!.data.healthy).toBe(false);
    expect(denied.json!.data.checks.find((c: { name: string }) => c.name === "gpu-region")).toMatchObject({ status: "warn" });
  }, LONG);

  it("PERMISSION_DENIED exits 4 and NOT_FOUND exits 6, with hints and no stack trace", async () => {
    world.fake.failNext("ListCustomJobs", { code: 7, message: "Permission 'aiplatform.customJobs.list' denied on resource", reason: "IAM_PERMISSION_DENIED" });
    const denied = await cli(["list", "--json"]);
    expect(denied.code).toBe(4);
    expect(denied.json!.error).toMatchObject({ code: "PERMISSION" });
    expect(denied.json!.error!.hint).toContain("roles/aiplatform.user");

    world.fake.failNext("ListEndpoints", { code: 5, message: "Location us-central1 not found for project" });
    const missing = await cli(["list"]);
    expect(missing.code).toBe(6);
    expect(missing.stderr).toMatch(/error: Not found while listing endpoints/);
    expect(missing.stderr).toMatch(/hint: /);
    expect(missing.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
  }, LONG);
});
