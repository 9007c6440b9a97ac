// Google errors → AvatarError: the mapping table, the ErrorInfo details the real client decodes from
// the fake's grpc-status-details-bin, failed long-running operations, and an interrupted deploy wait.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend, ModelVersion } from "../../src/backends/backend.ts";
import { VertexClients } from "../../src/backends/vertex/clients.ts";
import { mapOperationError, mapVertexError } from "../../src/backends/vertex/errors.ts";
import { AvatarError } from "../../src/core/errors.ts";
import { resourceLabels } from "../../src/core/names.ts";
import { runModelKey } from "../../src/core/run-keys.ts";
import { repoRoot } from "../support/cli.ts";
import { PROJECT, REGION, startVertexWorld, type VertexWorld } from "./helpers.ts";

const context = { doing: "creating the training job", kind: "training" as const, gpu: "l4" as const, region: "us-central1", project: "my-proj" };

describe("mapVertexError", () => {
  it.each([
    [3, "BAD_INPUT", 2, /--dry-run/],
    [4, "UNAVAILABLE", 3, /Try again/],
    [5, "NOT_FOUND", 6, /avatar list/],
    [6, "ALREADY_EXISTS", 2, /again/],
    [7, "PERMISSION", 4, /roles\/aiplatform\.user/],
    [8, "QUOTA", 5, /custom_model_training_nvidia_l4_gpus.*us-central1.*--region (?!us-central1)[a-z]+-[a-z]+\d/],
    [9, "REMOTE_FAILED", 3, /avatar status/],
    [14, "UNAVAILABLE", 3, /network/],
    [16, "AUTH", 4, /gcloud auth application-default login/],
    [13, "REMOTE_FAILED", 3, /--verbose/],
  ])("gRPC %d → %s (exit %d)", (code, avatarCode, exitCode, hint) => {
    const error = mapVertexError(Object.assign(new Error(`${code} X: boom`), { code, details: "boom" }), context);
    expect(error).toBeInstanceOf(AvatarError);
    expect(error).toMatchObject({ code: avatarCode, exitCode });
    expect(error.message).toContain("boom");
    expect(error.hint).toMatch(hint);
  });

  it("a disabled API gets the command that enables it", () => {
    const error = mapVertexError({ code: 7, details: "Vertex AI API has not been used in project 123 before or it is disabled", reason: "SERVICE_DISABLED" }, context);
    expect(error.hint).toBe("Enable the API: gcloud services enable aiplatform.googleapis.com --project my-proj");
  });

  it("missing Application Default Credentials are AUTH, whatever the code", () => {
    const error = mapVertexError(new Error("Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information."), context);
    expect(error).toMatchObject({ code: "AUTH", exitCode: 4 });
  });

  it("a serving quota names the serving quota; the quota metric from ErrorInfo wins", () => {
    expect(mapVertexError({ code: 8, details: "x" }, { ...context, kind: "serving", gpu: "t4", region: "europe-west4" }).hint).toMatch(/custom_model_serving_nvidia_t4_gpus is exhausted in europe-west4.*--region us-central1/);
    expect(mapVertexError({ code: 8, details: "x", errorInfoMetadata: { quota_metric: "aiplatform.googleapis.com/custom_model_training_cpus" } }, context).hint).toContain(
      "aiplatform.googleapis.com/custom_model_training_cpus",
    );
  });

  it.each([
    [8, "QUOTA", 5],
    [7, "PERMISSION", 4],
    [9, "REMOTE_FAILED", 3],
    [13, "REMOTE_FAILED", 3],
    [undefined, "REMOTE_FAILED", 3],
  ])("a failed operation with code %s → %s (exit %d)", (code, avatarCode, exitCode) => {
    const error = mapOperationError({ code, message: "it broke" }, { ...context, kind: "serving" });
    expect(error).toMatchObject({ code: avatarCode, exitCode });
    expect(error.message).toContain("it broke");
  });
});

describe("errors from the fake through the real clients", () => {
  const BUCKET = "avatar-vx-errors";
  const NAME = "erin";
  const RUN = "20260201-101010";
  let world: VertexWorld;
  let backend: Backend;
  let version: ModelVersion;

  beforeAll(async () => {
    world = await startVertexWorld(BUCKET);
    backend = await world.backend();
    // A registered model: files only (the upload snapshots them; nothing has to load them here).
    const modelKey = runModelKey(NAME, RUN);
    await backend.store.put(`${modelKey}/avatar.json`, Buffer.from(JSON.stringify({ schema: 1, name: NAME, run_id: RUN })));
    await backend.store.put(`${modelKey}/pytorch_lora_weights.safetensors`, Buffer.from("not really weights"));
    await backend.store.put(`${modelKey}/handler.py`, readFileSync(join(repoRoot, "handlers", "handler.py")));
    ({ version } = await backend.registry.register({ name: NAME, runId: RUN, modelKey, labels: resourceLabels(NAME, RUN) }));
  }, 120_000);

  afterAll(async () => {
    await world?.stop();
  });

  it("the client decodes ErrorInfo (reason, quota metric) from the fake's status details; the hint names the quota", async () => {
    world.fake.failNext("ListCustomJobs", {
      code: 8,
      message: "Quota exceeded for quota metric 'Custom model training Nvidia L4 GPUs'",
      reason: "RATE_LIMIT_EXCEEDED",
      metadata: { quota_metric: "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus", quota_location: REGION },
    });
    const clients = new VertexClients({ region: REGION, env: world.env });
    try {
      const jobs = await clients.jobs();
      const raw = await jobs.listCustomJobs({ parent: `projects/${PROJECT}/locations/${REGION}` }).catch((e) => e);
      expect(raw).toMatchObject({ code: 8, reason: "RATE_LIMIT_EXCEEDED", errorInfoMetadata: { quota_metric: "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus" } });
    } finally {
      await clients.close();
    }
    world.fake.failNext("ListCustomJobs", { code: 8, message: "Quota exceeded", reason: "RATE_LIMIT_EXCEEDED", metadata: { quota_metric: "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus" } });
    const mapped = await backend.training.list().catch((e) => e);
    expect(mapped).toMatchObject({ code: "QUOTA", exitCode: 5 });
    expect(mapped.hint).toContain("aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus");
  });

  it("a deployModel operation that fails with RESOURCE_EXHAUSTED is QUOTA (exit 5) with the serving quota, and nothing serves", async () => {
    world.fake.failOperation("DeployModel", { code: 8, message: "The following quota metrics exceed quota limits: aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus" });
    const error = await backend.serving.deploy({ name: NAME, version, gpu: "l4", minReplicas: 1, maxReplicas: 1, labels: {} }).catch((e) => e);
    expect(error).toBeInstanceOf(AvatarError);
    expect(error).toMatchObject({ code: "QUOTA", exitCode: 5 });
    expect(error.hint).toContain("custom_model_serving_nvidia_l4_gpus");
    expect(world.fake.runningServers()).toEqual([]);
    expect(await backend.serving.get(NAME)).toMatchObject({ state: "stopped" });
  });

  it("a bad machine for a GPU is refused by the fake as INVALID_ARGUMENT → BAD_INPUT (exit 2)", async () => {
    const clients = new VertexClients({ region: REGION, env: world.env });
    try {
      const endpoints = await clients.endpoints();
      const error = await endpoints
        .deployModel({
          endpoint: `projects/${PROJECT}/locations/${REGION}/endpoints/avatar-${NAME}`,
          deployedModel: { model: `projects/${PROJECT}/locations/${REGION}/models/avatar-${NAME}@1`, dedicatedResources: { machineSpec: { machineType: "n1-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 }, minReplicaCount: 1 } },
          trafficSplit: { "0": 100 },
        })
        .catch((e) => e);
      expect(error.code).toBe(3);
      expect(mapVertexError(error, { doing: "deploying" })).toMatchObject({ code: "BAD_INPUT", exitCode: 2 });
    } finally {
      await clients.close();
    }
  });

  it("AIP_* in a model's env is refused at upload; HF_MODEL_ID next to the artifacts makes the 4.48 image exit, so the deploy fails", async () => {
    const clients = new VertexClients({ region: REGION, env: world.env });
    const parent = `projects/${PROJECT}/locations/${REGION}`;
    try {
      const models = await clients.models();
      const model = (env: { name: string; value: string }[]) => ({
        displayName: "avatar-hf",
        labels: { avatar: "hf" },
        artifactUri: `gs://${BUCKET}/avatar/${runModelKey(NAME, RUN)}`,
        containerSpec: { imageUri: "us-docker.pkg.dev/x/serve:1", env, ports: [{ containerPort: 8080 }] },
      });
      await expect(models.uploadModel({ parent, modelId: "avatar-aip", model: model([{ name: "AIP_HTTP_PORT", value: "1" }]) })).rejects.toMatchObject({ code: 3 });
      const [upload] = await models.uploadModel({ parent, modelId: "avatar-hf", model: model([{ name: "HF_MODEL_ID", value: "stabilityai/stable-diffusion-xl-base-1.0" }]) });
      await upload.promise();
      const endpoints = await clients.endpoints();
      const [created] = await endpoints.createEndpoint({ parent, endpointId: "avatar-hf", endpoint: { displayName: "avatar-hf", labels: { avatar: "hf" } } });
      await created.promise();
      const [deploy] = await endpoints.deployModel({
        endpoint: `${parent}/endpoints/avatar-hf`,
        deployedModel: { model: `${parent}/models/avatar-hf@1`, dedicatedResources: { machineSpec: { machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 }, minReplicaCount: 1, maxReplicaCount: 1 } },
        trafficSplit: { "0": 100 },
      });
      const failed = await deploy.promise().catch((e) => e);
      expect(failed.code).toBe(9);
      expect(failed.message).toMatch(/Model server exited/);
      expect(mapOperationError(failed, { doing: "deploying", kind: "serving" })).toMatchObject({ code: "REMOTE_FAILED", exitCode: 3 });
    } finally {
      await clients.close();
    }
  });

  it("an interrupted deploy wait says the deployment continues on Vertex, and it does", async () => {
    const controller = new AbortController();
    const pending = backend.serving.deploy(
      { name: NAME, version, gpu: "l4", minReplicas: 1, maxReplicas: 1, labels: {} },
      { signal: controller.signal, onStage: (stage) => stage === "preparing model" && controller.abort() },
    );
    const error = await pending.catch((e) => e);
    expect(error).toMatchObject({ code: "INTERRUPTED", exitCode: 130 });
    expect(error.message).toMatch(/continues on Vertex AI/);
    expect(error.hint).toContain(`avatar down ${NAME}`);
    // The operation went on without us (and fails later: these weights are not real).
    expect(world.fake.requests("DeployModel").length).toBeGreaterThanOrEqual(2);
  });
});
