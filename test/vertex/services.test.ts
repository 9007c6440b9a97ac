// The vertex backend's services (training, registry, serving) through the REAL @google-cloud/aiplatform
// and @google-cloud/storage clients, against the Vertex fake and fake-gcs-server. Requests are checked
// on the fake's side; the fake really runs the trainer and the serving container stand-in.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend, ModelVersion, TrainingJob, TrainingJobSpec } from "../../src/backends/backend.ts";
import { AvatarError } from "../../src/core/errors.ts";
import { resourceLabels } from "../../src/core/names.ts";
import { runCheckpointKey, runModelKey } from "../../src/core/run-keys.ts";
import { datasetKey } from "../../src/core/store-keys.ts";
import { SERVE_IMAGE, TRAIN_IMAGE } from "../../src/core/vertex-specs.ts";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { prepareDataset } from "../../src/workflows/prepare.ts";
import { ensureDataset } from "../../src/workflows/upload.ts";
import { repoRoot } from "../support/cli.ts";
import { objectsUnder, PROJECT, REGION, startVertexWorld, tinyBase, type VertexWorld } from "./helpers.ts";

const LONG = 10 * 60_000;
const BUCKET = "avatar-vx-services";
const NAME = "vera";
const RUN = "20260101-101010";
const parent = `projects/${PROJECT}/locations/${REGION}`;

let world: VertexWorld;
let backend: Backend;
let base: string;
let sha: string;
let work: string;

const quietCtx = {
  out: { progress: () => ({ update() {}, done() {} }), detail() {}, info() {}, warn() {}, success() {} },
  signal: new AbortController().signal,
} as never;

function jobSpec(runId: string, overrides: Partial<TrainingJobSpec["trainer"]> = {}, spot = false): TrainingJobSpec {
  return {
    name: NAME,
    runId,
    displayName: `avatar-${NAME}-${runId}`,
    labels: { ...resourceLabels(NAME, runId), "avatar-dataset": sha.slice(0, 32) },
    gpu: "l4",
    spot,
    timeoutSeconds: 3 * 3600,
    datasetKey: datasetKey(NAME, sha),
    modelKey: runModelKey(NAME, runId),
    checkpointKey: runCheckpointKey(NAME, runId),
    trainer: {
      base, resolution: 64, token: "sks", classWord: "person", steps: 4, rank: 4, lr: 1e-4, seed: 1, caption: "none",
      checkpointEvery: 2, logEvery: 1, flip: false, name: NAME, runId, datasetSha256: sha, ...overrides,
    },
  };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "avatar-vx-services-"));
  [world, base] = await Promise.all([startVertexWorld(BUCKET), tinyBase()]);
  backend = await world.backend();
  // The dataset as `avatar train` uploads it: prepared, zipped, content-addressed.
  await writeSyntheticSelfies(join(work, "photos"), 5, 11, 512);
  const prepared = await prepareDataset({ cwd: work, out: quietCtx.out, signal: quietCtx.signal } as never, { dir: join(work, "photos"), maxSize: 512 });
  try {
    sha = (await ensureDataset(quietCtx, backend.store, prepared, NAME)).sha256;
  } finally {
    await prepared.dispose();
  }
}, LONG);

afterAll(async () => {
  await world?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("training: a CustomJob the fake runs for real", () => {
  let job: TrainingJob;

  it("launches with the CustomJob spec, uploads the trainer package once, and waits with phases and progress", async () => {
    const launched = await backend.training.launch(jobSpec(RUN));
    expect(launched).toMatchObject({ name: NAME, runId: RUN, state: "queued", modelUri: `gs://${BUCKET}/avatar/${NAME}/runs/${RUN}/model` });
    expect(launched.id).toMatch(/^\d+$/);

    const [request] = world.fake.requests("CreateCustomJob");
    expect(request.parent).toBe(parent);
    const pool = request.customJob.jobSpec.workerPoolSpecs[0];
    expect(pool.machineSpec).toMatchObject({ machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 });
    expect(pool.containerSpec.imageUri).toBe(TRAIN_IMAGE);
    expect(pool.containerSpec.command[0]).toBe("sh");
    expect(pool.containerSpec.command[2]).toMatch(new RegExp(`^cd '/gcs/${BUCKET}/avatar/_trainer/0\\.1\\.0-[0-9a-f]{12}' && exec python -m avatar_trainer "\\$@"$`));
    expect(pool.containerSpec.args).toEqual(expect.arrayContaining(["--dataset", `/gcs/${BUCKET}/avatar/${NAME}/datasets/${sha}.zip`, "--output-dir", `/gcs/${BUCKET}/avatar/${NAME}/runs/${RUN}/model`]));
    expect(pool.containerSpec.args).toEqual(expect.arrayContaining(["--log-file", `/gcs/${BUCKET}/avatar/${NAME}/runs/${RUN}/logs/trainer.log`]));
    expect(request.customJob.jobSpec.baseOutputDirectory.outputUriPrefix).toBe(`gs://${BUCKET}/avatar/${NAME}/runs/${RUN}`);
    expect(request.customJob.jobSpec.scheduling.timeout.seconds).toBe("10800");
    expect(request.customJob.jobSpec.scheduling.strategy).toBe("STRATEGY_UNSPECIFIED");
    expect(request.customJob.labels).toEqual({ avatar: NAME, "avatar-run": RUN, "managed-by": "avatar-cli", "avatar-dataset": sha.slice(0, 32) });

    const phases: string[] = [];
    const steps: number[] = [];
    const lines: string[] = [];
    job = await backend.training.wait(launched.id, { onPhase: (p) => phases.push(p), onProgress: (p) => steps.push(p.step), onLine: (l) => lines.push(l) });
    expect(job.state, world.fake.jobLog(launched.id).join("\n")).toBe("succeeded");
    expect(phases[0]).toMatch(/pending|queued/);
    expect(phases).toContain("vertex job succeeded");
    // The trainer's own phases and lines, read from its log in the bucket while the job ran.
    expect(phases).toEqual(expect.arrayContaining(["data", "load", "train"]));
    expect(lines.filter((l) => l.startsWith("step=")).at(-1)).toMatch(/^step=4\/4 loss=/);
    expect(steps.at(-1)).toBe(4);
    expect(job.endedAt).toBeDefined();

    // The trainer's outputs went back to the bucket through the emulated FUSE mount.
    const run = await objectsUnder(world.gcs, BUCKET, `avatar/${NAME}/runs/${RUN}/`);
    expect([...run.keys()]).toEqual(expect.arrayContaining([`avatar/${NAME}/runs/${RUN}/model/pytorch_lora_weights.safetensors`, `avatar/${NAME}/runs/${RUN}/model/avatar.json`]));
    const manifest = JSON.parse(run.get(`avatar/${NAME}/runs/${RUN}/model/avatar.json`)!.toString());
    expect(manifest).toMatchObject({ name: NAME, run_id: RUN, dataset_sha256: sha, steps: 4 });
    // The trainer package: once, complete, no bytecode written back into the bucket.
    const trainer = await objectsUnder(world.gcs, BUCKET, "avatar/_trainer/");
    expect([...trainer.keys()].some((k) => k.endsWith("/avatar_trainer/__main__.py"))).toBe(true);
    expect([...trainer.keys()].some((k) => k.endsWith("/MANIFEST.json"))).toBe(true);
    expect([...trainer.keys()].some((k) => k.includes("__pycache__"))).toBe(false);
    // The job printed the trainer's parseable lines (Cloud Logging's side of the story), and the
    // same lines are in the run's log object.
    const printed = world.fake.jobLog(launched.id).filter((l) => /^(step|phase)=|^done /.test(l));
    expect(printed.some((l) => l.startsWith("step=4/4"))).toBe(true);
    const logged = run.get(`avatar/${NAME}/runs/${RUN}/logs/trainer.log`)!.toString().trim().split("\n");
    expect(logged.filter((l) => /^(step|phase)=|^done /.test(l))).toEqual(printed);
  }, LONG);

  it("finds the job again by its labels, and re-launching a finished run's spec creates a new job", async () => {
    const listed = await backend.training.list({ name: NAME });
    expect(listed.map((j) => [j.runId, j.state])).toEqual([[RUN, "succeeded"]]);
    expect(world.fake.requests("ListCustomJobs").at(-1).filter).toBe(`labels.avatar="${NAME}"`);
    expect(await backend.training.list({ name: "someone-else" })).toEqual([]);
    expect(await backend.training.get(job.id)).toMatchObject({ id: job.id, state: "succeeded" });
    expect(await backend.training.get("999999")).toBeUndefined();
    const lines: string[] = [];
    await backend.training.logs(job.id, { onLine: (l) => lines.push(l) });
    expect(lines.join("\n")).toContain("(succeeded)");
    expect(lines).toContain(`log       gs://${BUCKET}/avatar/${NAME}/runs/${RUN}/logs/trainer.log`);
    const logged = (await objectsUnder(world.gcs, BUCKET, `avatar/${NAME}/runs/${RUN}/logs/`)).get(`avatar/${NAME}/runs/${RUN}/logs/trainer.log`)!;
    const logLines = logged.toString().trim().split("\n");
    expect(lines.slice(-logLines.length)).toEqual(logLines);
    const tail: string[] = [];
    await backend.training.logs(job.id, { onLine: (l) => tail.push(l), tail: 2 });
    expect(tail).toEqual(logLines.slice(-2));
    expect(tail.at(-1)).toMatch(/^done output=/);
  });

  it("a second launch reuses the uploaded trainer package; --spot becomes scheduling.strategy SPOT; a failing trainer fails the job", async () => {
    const before = await objectsUnder(world.gcs, BUCKET, "avatar/_trainer/");
    const launched = await backend.training.launch(jobSpec("20260101-111111", { base: join(work, "no-such-model") }, true));
    const request = world.fake.requests("CreateCustomJob").at(-1);
    expect(request.customJob.jobSpec.scheduling.strategy).toBe("SPOT");
    const done = await backend.training.wait(launched.id);
    expect(done.state).toBe("failed");
    expect(done.error).toMatch(/exited with a non-zero status of \d+/);
    expect(world.fake.jobLog(launched.id).join("\n")).toMatch(/no-such-model/);
    // `avatar logs` shows why: the trainer's error line is the last line of its log.
    const lines: string[] = [];
    await backend.training.logs(launched.id, { onLine: (l) => lines.push(l) });
    expect(lines.at(-1)).toMatch(/^error: .*no-such-model/);
    // Without a log object (the trainer never started), it says where else to look.
    await backend.store.delete(`${NAME}/runs/20260101-111111/logs/trainer.log`);
    const without: string[] = [];
    await backend.training.logs(launched.id, { onLine: (l) => without.push(l) });
    expect(without.join("\n")).toContain("yet: the job has not started training");
    expect(without.join("\n")).toContain(`gcloud ai custom-jobs stream-logs ${launched.id} --project=${PROJECT} --region=${REGION}`);
    const after = await objectsUnder(world.gcs, BUCKET, "avatar/_trainer/");
    expect([...after.keys()]).toEqual([...before.keys()]);
  }, LONG);

  it("logs --follow delivers the trainer's lines while the job runs and returns when it ends", async () => {
    const launched = await backend.training.launch(jobSpec("20260101-141414", { steps: 12 }));
    const lines: string[] = [];
    let firstAt = 0;
    await backend.training.logs(launched.id, { onLine: (l) => (lines.push(l), (firstAt ||= Date.now())), follow: true });
    const done = (await backend.training.get(launched.id))!;
    expect(done.state).toBe("succeeded");
    const steps = lines.filter((l) => l.startsWith("step="));
    expect(steps.at(-1)).toMatch(/^step=12\/12 /);
    expect(new Set(steps).size).toBe(steps.length); // no line twice
    expect(lines.at(-1)).toMatch(/^done output=/);
    expect(firstAt).toBeLessThan(Date.parse(done.endedAt!)); // followed, not read after the end
  }, LONG);

  it("cancel stops a running job: it ends cancelled", async () => {
    const launched = await backend.training.launch(jobSpec("20260101-121212", { steps: 5000, checkpointEvery: 1000 }));
    // Cancel once the trainer itself is up (it has printed its first line), not while the job is still staging.
    for (let i = 0; i < 600 && world.fake.jobLog(launched.id).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(world.fake.jobLog(launched.id).length).toBeGreaterThan(0);
    await backend.training.cancel(launched.id);
    expect(world.fake.requests("CancelCustomJob").at(-1).name).toBe(`${parent}/customJobs/${launched.id}`);
    const done = await backend.training.wait(launched.id);
    expect(done.state).toBe("cancelled");
  }, LONG);

  it("against real Vertex a --base directory on this machine is refused before anything is sent", async () => {
    // Credentials that exist (no request is sent with them): without any, opening the backend stops first.
    const adc = join(mkdtempSync(join(tmpdir(), "avatar-adc-")), "adc.json");
    writeFileSync(adc, JSON.stringify({ type: "authorized_user" }));
    const real = await world.backend({ AVATAR_VERTEX_ENDPOINT: "", GOOGLE_APPLICATION_CREDENTIALS: adc });
    const before = world.fake.requests("CreateCustomJob").length;
    const error = await real.training.launch(jobSpec("20260101-131313")).catch((e) => e);
    expect(error).toMatchObject({ code: "BAD_INPUT", exitCode: 2 });
    expect(error.message).toContain(base);
    expect(error.hint).toMatch(/Hub id/);
    expect(world.fake.requests("CreateCustomJob")).toHaveLength(before);
  });

  it("an interrupted wait returns at once and leaves the job alone", async () => {
    const controller = new AbortController();
    controller.abort();
    const waited = await backend.training.wait(job.id, { signal: controller.signal });
    expect(waited.id).toBe(job.id);
  });
});

describe("registry: Model Registry versions", () => {
  let first: ModelVersion;
  const run2 = "20260102-101010";

  it("register uploads a model with modelId avatar-<name> and no HF_MODEL_ID/HF_MODEL_DIR, then finds it again", async () => {
    const modelKey = runModelKey(NAME, RUN);
    // What the register workflow does first: the serving handler beside the weights.
    for (const file of ["handler.py", "requirements.txt"]) {
      await backend.store.put(`${modelKey}/${file}`, readFileSync(join(repoRoot, "handlers", file)), { overwrite: true });
    }
    const result = await backend.registry.register({ name: NAME, runId: RUN, modelKey, labels: resourceLabels(NAME, RUN), description: "tiny" });
    expect(result.created).toBe(true);
    first = result.version;
    expect(first).toMatchObject({ modelId: `avatar-${NAME}`, name: NAME, versionId: "1", runId: RUN, artifactUri: `gs://${BUCKET}/avatar/${modelKey}` });
    expect(first.aliases).toEqual(expect.arrayContaining(["default", `run-${RUN}`]));
    const [upload] = world.fake.requests("UploadModel");
    expect(upload).toMatchObject({ parent, modelId: `avatar-${NAME}`, parentModel: "" });
    expect(upload.model.containerSpec).toMatchObject({ imageUri: SERVE_IMAGE, ports: [{ containerPort: 8080 }] });
    const envNames = upload.model.containerSpec.env.map((e: { name: string }) => e.name);
    expect(envNames).not.toContain("HF_MODEL_ID");
    expect(envNames).not.toContain("HF_MODEL_DIR");
    expect(upload.model.labels).toEqual({ avatar: NAME, "avatar-run": RUN, "managed-by": "avatar-cli" });

    const again = await backend.registry.register({ name: NAME, runId: RUN, modelKey, labels: resourceLabels(NAME, RUN) });
    expect(again).toEqual({ version: first, created: false });
    expect(world.fake.requests("UploadModel")).toHaveLength(1);
  }, LONG);

  it("a second run becomes version 2 of the same model (parentModel), takes the default alias, and get finds either", async () => {
    // A second run's model dir: the first run's files with this run's manifest.
    const storage = world.gcs.storage();
    for (const [name, body] of await objectsUnder(world.gcs, BUCKET, `avatar/${NAME}/runs/${RUN}/model/`)) {
      const file = name.split("/").at(-1)!;
      const content = file === "avatar.json" ? Buffer.from(JSON.stringify({ ...JSON.parse(body.toString()), run_id: run2 })) : body;
      await storage.bucket(BUCKET).file(`avatar/${NAME}/runs/${run2}/model/${file}`).save(content);
    }
    const second = await backend.registry.register({ name: NAME, runId: run2, modelKey: runModelKey(NAME, run2), labels: resourceLabels(NAME, run2) });
    expect(second.created).toBe(true);
    expect(second.version).toMatchObject({ modelId: `avatar-${NAME}`, versionId: "2", runId: run2 });
    const upload = world.fake.requests("UploadModel").at(-1);
    expect(upload).toMatchObject({ parentModel: `${parent}/models/avatar-${NAME}`, modelId: "" });

    expect((await backend.registry.get(NAME))!.versionId).toBe("2");
    expect((await backend.registry.get(NAME, "1"))!.runId).toBe(RUN);
    expect((await backend.registry.get(NAME, RUN))!.versionId).toBe("1");
    expect(await backend.registry.get(NAME, "7")).toBeUndefined();
    expect(await backend.registry.get("nobody")).toBeUndefined();
    const all = await backend.registry.list({ name: NAME });
    expect(all.map((v) => [v.name, v.versionId, v.aliases.includes("default")])).toEqual([[NAME, "1", false], [NAME, "2", true]]);
    expect((await backend.registry.list()).map((v) => v.name)).toEqual([NAME, NAME]);
    expect(await backend.registry.list({ name: "nobody" })).toEqual([]);
  }, LONG);

  it("two runs of a new avatar registered at once end up as versions 1 and 2 of one model", async () => {
    const storage = world.gcs.storage();
    const runs = ["20260105-101010", "20260105-111111"];
    for (const run of runs) {
      for (const [name, body] of await objectsUnder(world.gcs, BUCKET, `avatar/${NAME}/runs/${RUN}/model/`)) {
        await storage.bucket(BUCKET).file(`avatar/twin/runs/${run}/model/${name.split("/").at(-1)}`).save(body);
      }
    }
    const results = await Promise.all(runs.map((run) => backend.registry.register({ name: "twin", runId: run, modelKey: runModelKey("twin", run), labels: resourceLabels("twin", run) })));
    expect(results.every((r) => r.created)).toBe(true);
    expect(results.map((r) => r.version.versionId).sort()).toEqual(["1", "2"]);
    expect(new Set(results.map((r) => r.version.modelId))).toEqual(new Set(["avatar-twin"]));
    expect((await backend.registry.list({ name: "twin" })).map((v) => v.runId).sort()).toEqual(runs);
    // Both saw no model and sent modelId; the loser got ALREADY_EXISTS and came back with parentModel.
    const twins = world.fake.requests("UploadModel").filter((r) => r.model.labels.avatar === "twin");
    expect(twins.map((r) => (r.modelId ? "modelId" : "parentModel"))).toEqual(["modelId", "modelId", "parentModel"]);
  }, LONG);

  it("the fake refuses a duplicate modelId and a missing parent, as Vertex does", async () => {
    const { VertexClients } = await import("../../src/backends/vertex/clients.ts");
    const clients = new VertexClients({ region: REGION, env: world.env });
    try {
      const client = await clients.models();
      const model = { displayName: "x", artifactUri: `gs://${BUCKET}/avatar/${NAME}/runs/${RUN}/model`, containerSpec: { imageUri: SERVE_IMAGE } };
      await expect(client.uploadModel({ parent, modelId: `avatar-${NAME}`, model })).rejects.toMatchObject({ code: 6 });
      await expect(client.uploadModel({ parent, parentModel: `${parent}/models/avatar-nobody`, model })).rejects.toMatchObject({ code: 5 });
    } finally {
      await clients.close();
    }
  });
});

describe("serving: endpoint, deploy, predict, down", () => {
  it("deploy creates the endpoint once, deploys with the GPU preset and shows deployment stages", async () => {
    const version = (await backend.registry.get(NAME, "1"))!;
    const stages: string[] = [];
    const { endpoint, reused } = await backend.serving.deploy(
      { name: NAME, version, gpu: "l4", minReplicas: 1, maxReplicas: 1, labels: resourceLabels(NAME, version.runId) },
      { onStage: (s) => stages.push(s) },
    );
    expect(reused).toBe(false);
    expect(endpoint).toMatchObject({ id: `avatar-${NAME}`, name: NAME, state: "ready", modelVersion: "1", runId: RUN, gpu: "l4" });
    expect(stages[0]).toBe("creating the endpoint");
    expect(stages).toContain("starting model server");
    const [create] = world.fake.requests("CreateEndpoint");
    expect(create).toMatchObject({ parent, endpointId: `avatar-${NAME}`, endpoint: { labels: { avatar: NAME, "managed-by": "avatar-cli" } } });
    const [deploy] = world.fake.requests("DeployModel");
    expect(deploy.endpoint).toBe(`${parent}/endpoints/avatar-${NAME}`);
    expect(deploy.trafficSplit).toEqual({ "0": 100 });
    expect(deploy.deployedModel.model).toBe(`${parent}/models/avatar-${NAME}@1`);
    expect(deploy.deployedModel.dedicatedResources).toMatchObject({
      machineSpec: { machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 }, minReplicaCount: 1, maxReplicaCount: 1,
    });
    expect(world.fake.runningServers()).toHaveLength(1);
  }, LONG);

  it("deploying the same version again is a reuse; predict returns an image; a bad request is BAD_INPUT", async () => {
    const version = (await backend.registry.get(NAME, "1"))!;
    const again = await backend.serving.deploy({ name: NAME, version, gpu: "l4", minReplicas: 1, maxReplicas: 1, labels: {} });
    expect(again.reused).toBe(true);
    expect(world.fake.requests("DeployModel")).toHaveLength(1);

    const response = await backend.serving.predict(NAME, { instances: [{ prompt: "sks person smiling" }], parameters: { steps: 2, seed: 9, width: 256, height: 256, num_images: 1 } });
    expect(response.deployedModelId).toMatch(/^\d+$/);
    const [prediction] = response.predictions as { image_b64: string; seed: number; mime_type: string }[];
    expect(prediction!.seed).toBe(9);
    const meta = await sharp(Buffer.from(prediction!.image_b64, "base64")).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["jpeg", 256, 256]);
    // Numbers cross predict as protobuf doubles, as on Vertex.
    const predict = world.fake.requests("Predict").at(-1);
    expect(predict.parameters.structValue.fields.steps).toMatchObject({ numberValue: 2 });

    const bad = await backend.serving.predict(NAME, { instances: [{ prompt: "x" }], parameters: { steps: 1000 } }).catch((e) => e);
    expect(bad).toBeInstanceOf(AvatarError);
    expect(bad).toMatchObject({ code: "BAD_INPUT", exitCode: 2 });
    expect(bad.message).toMatch(/steps/);
  }, LONG);

  it("deploying version 2 moves the traffic and undeploys version 1; list and get show it", async () => {
    const v2 = (await backend.registry.get(NAME))!;
    const stages: string[] = [];
    const { endpoint } = await backend.serving.deploy({ name: NAME, version: v2, gpu: "l4", minReplicas: 1, maxReplicas: 1, labels: {} }, { onStage: (s) => stages.push(s) });
    expect(endpoint).toMatchObject({ state: "ready", modelVersion: "2" });
    expect(stages).toContain("undeploying the previous version");
    expect(world.fake.requests("CreateEndpoint")).toHaveLength(1);
    expect(world.fake.requests("UndeployModel")).toHaveLength(1);
    expect(world.fake.runningServers()).toHaveLength(1);
    expect((await backend.serving.list()).map((e) => [e.name, e.modelVersion])).toEqual([[NAME, "2"]]);
    expect(await backend.serving.get("nobody")).toBeUndefined();
  }, LONG);

  it("the fake refuses to delete an endpoint that still serves (FAILED_PRECONDITION); down undeploys first, then deletes", async () => {
    const { VertexClients } = await import("../../src/backends/vertex/clients.ts");
    const clients = new VertexClients({ region: REGION, env: world.env });
    try {
      const client = await clients.endpoints();
      await expect(client.deleteEndpoint({ name: `${parent}/endpoints/avatar-${NAME}` })).rejects.toMatchObject({ code: 9 });
    } finally {
      await clients.close();
    }
    expect(await backend.serving.down(NAME)).toBe(true);
    expect(world.fake.requests("DeleteEndpoint").at(-1).name).toMatch(new RegExp(`/endpoints/avatar-${NAME}$`));
    expect(world.fake.runningServers()).toEqual([]);
    expect(await backend.serving.get(NAME)).toBeUndefined();
    expect(await backend.serving.down(NAME)).toBe(false);
    const gone = await backend.serving.predict(NAME, { instances: [{ prompt: "x" }] }).catch((e) => e);
    expect(gone).toMatchObject({ code: "NOT_FOUND", exitCode: 6 });
  }, LONG);

  it("a model whose container cannot start fails the deploy with REMOTE_FAILED and leaves no server", async () => {
    // Version 1's artifacts without handler.py: the serving container has nothing to import.
    const storage = world.gcs.storage();
    const runX = "20260103-101010";
    for (const [name, body] of await objectsUnder(world.gcs, BUCKET, `avatar/${NAME}/runs/${RUN}/model/`)) {
      const file = name.split("/").at(-1)!;
      if (file !== "handler.py") await storage.bucket(BUCKET).file(`avatar/${NAME}/runs/${runX}/model/${file}`).save(body);
    }
    const { version } = await backend.registry.register({ name: NAME, runId: runX, modelKey: runModelKey(NAME, runX), labels: resourceLabels(NAME, runX) });
    const failed = await backend.serving
      .deploy({ name: NAME, version, gpu: "l4", minReplicas: 1, maxReplicas: 1, labels: {} })
      .catch((e) => e);
    expect(failed).toBeInstanceOf(AvatarError);
    expect(failed).toMatchObject({ code: "REMOTE_FAILED", exitCode: 3 });
    expect(failed.message).toMatch(/Model server exited/);
    expect(world.fake.runningServers()).toEqual([]);
    expect(await backend.serving.down(NAME)).toBe(true);
  }, LONG);
});
