// The pure Vertex builders: request shapes, names, state/stage mapping, client options. Table-driven.
import { describe, expect, it } from "vitest";
import { AvatarError } from "../../src/core/errors.ts";
import { resourceLabels } from "../../src/core/names.ts";
import {
  avatarFilter, avatarOfResourceId, deploymentStageText, gpuOfAccelerator, gpuQuotaName, isoTime, jobPhase, jobStateOf, resourceId, versionSuffix,
} from "../../src/core/vertex-names.ts";
import {
  createCustomJobRequest, createEndpointRequest, customJobSpec, deployModelRequest, formatPlannedRequests, labelsProblem, predictRequest,
  runIdOfDeployedModel, runKeyOf, SERVE_IMAGE, serveImage, TRAIN_IMAGE, trainImage, undeployAllRequests, uploadModelRequest, vertexBaseProblem,
  type CustomJobInput,
} from "../../src/core/vertex-specs.ts";
import { dedicatedPredictionOptions, vertexClientOptions } from "../../src/backends/vertex/clients.ts";
import { dedicatedHost, endpointTypeMismatch, endpointTypeOf, estimatedResponseBytes, predictUrl, sharedResponseProblem } from "../../src/core/endpoint-types.ts";
import { pollIntervals } from "../../src/backends/vertex/lro.ts";

const loc = { project: "my-proj", region: "europe-west4" };
const parent = "projects/my-proj/locations/europe-west4";
const RUN = "20261122-101500";
const SHA = "a".repeat(64);

function jobInput(overrides: Partial<CustomJobInput> = {}): CustomJobInput {
  return {
    bucket: "my-bucket",
    displayName: `avatar-alice-${RUN}`,
    labels: { ...resourceLabels("alice", RUN), "avatar-dataset": SHA.slice(0, 32) },
    gpu: "l4",
    spot: false,
    timeoutSeconds: 3 * 3600,
    imageUri: TRAIN_IMAGE,
    trainerVersion: "0.1.0-abcdef012345",
    trainer: {
      base: "stabilityai/stable-diffusion-xl-base-1.0", pipeline: "sdxl", resolution: 1024, token: "sks", classWord: "person", steps: 1000, rank: 16,
      lr: 1e-4, seed: 42, caption: "none", checkpointEvery: 100, logEvery: 10, gradientCheckpointing: true, flip: true, name: "alice", runId: RUN, datasetSha256: SHA,
    },
    datasetKey: `alice/datasets/${SHA}.zip`,
    modelKey: `alice/runs/${RUN}/model`,
    checkpointKey: `alice/runs/${RUN}/checkpoints`,
    ...overrides,
  };
}

describe("customJobSpec", () => {
  it.each([
    { gpu: "l4" as const, spot: false, machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", strategy: undefined },
    { gpu: "l4" as const, spot: true, machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", strategy: "SPOT" },
    { gpu: "t4" as const, spot: false, machineType: "n1-standard-8", acceleratorType: "NVIDIA_TESLA_T4", strategy: undefined },
    { gpu: "t4" as const, spot: true, machineType: "n1-standard-8", acceleratorType: "NVIDIA_TESLA_T4", strategy: "SPOT" },
  ])("$gpu spot=$spot → $machineType + $acceleratorType, strategy $strategy", ({ gpu, spot, machineType, acceleratorType, strategy }) => {
    const job = customJobSpec(jobInput({ gpu, spot }));
    const pool = job.jobSpec.workerPoolSpecs[0]!;
    expect(pool.machineSpec).toEqual({ machineType, acceleratorType, acceleratorCount: 1 });
    expect(pool.replicaCount).toBe(1);
    expect(job.jobSpec.scheduling).toEqual({ timeout: { seconds: 10800 }, ...(strategy ? { strategy } : {}) });
  });

  it("runs the trainer package from the FUSE path with /gcs arguments, writes to the run directory, carries the labels", () => {
    const job = customJobSpec(jobInput());
    const container = job.jobSpec.workerPoolSpecs[0]!.containerSpec;
    expect(job.displayName).toBe(`avatar-alice-${RUN}`);
    expect(job.labels).toEqual({ avatar: "alice", "avatar-run": RUN, "managed-by": "avatar-cli", "avatar-dataset": SHA.slice(0, 32) });
    expect(container.imageUri).toBe(TRAIN_IMAGE);
    expect(container.command).toEqual(["sh", "-c", `cd '/gcs/my-bucket/avatar/_trainer/0.1.0-abcdef012345' && exec python -m avatar_trainer "$@"`, "avatar-trainer"]);
    const args = container.args;
    const value = (flag: string) => args[args.indexOf(flag) + 1];
    expect(value("--dataset")).toBe(`/gcs/my-bucket/avatar/alice/datasets/${SHA}.zip`);
    expect(value("--output-dir")).toBe(`/gcs/my-bucket/avatar/alice/runs/${RUN}/model`);
    expect(value("--checkpoint-dir")).toBe(`/gcs/my-bucket/avatar/alice/runs/${RUN}/checkpoints`);
    expect(value("--base")).toBe("stabilityai/stable-diffusion-xl-base-1.0");
    expect(value("--steps")).toBe("1000");
    expect(args).toContain("--gradient-checkpointing");
    expect(job.jobSpec.baseOutputDirectory).toEqual({ outputUriPrefix: `gs://my-bucket/avatar/alice/runs/${RUN}` });
    expect(container.env).toEqual(expect.arrayContaining([{ name: "PYTHONDONTWRITEBYTECODE", value: "1" }]));
    expect(createCustomJobRequest(loc, jobInput())).toEqual({ parent, customJob: job });
  });

  it.each([
    [{ modelKey: "alice/runs/x/model", checkpointKey: "alice/runs/y/checkpoints" }, /not <run>\/model/],
    [{ modelKey: "alice/runs/x/weights", checkpointKey: "alice/runs/x/checkpoints" }, /not <run>\/model/],
    [{ labels: { Avatar: "alice" } }, /label key "Avatar"/],
    [{ labels: { avatar: "Alice" } }, /label value "Alice"/],
  ])("refuses inconsistent input %j", (overrides, message) => {
    expect(() => customJobSpec(jobInput(overrides))).toThrow(message);
  });

  it.each([
    [{}, TRAIN_IMAGE, SERVE_IMAGE],
    [{ AVATAR_TRAIN_IMAGE: "eu.gcr.io/x/train:1", AVATAR_SERVE_IMAGE: "eu.gcr.io/x/serve:1" }, "eu.gcr.io/x/train:1", "eu.gcr.io/x/serve:1"],
    [{ AVATAR_TRAIN_IMAGE: "" }, TRAIN_IMAGE, SERVE_IMAGE],
  ])("images from env %j", (env, train, serve) => {
    expect(trainImage(env)).toBe(train);
    expect(serveImage(env)).toBe(serve);
  });

  it("default images are the Hugging Face PyTorch DLCs of design.md", () => {
    expect(TRAIN_IMAGE).toBe("us-docker.pkg.dev/deeplearning-platform-release/gcr.io/huggingface-pytorch-training-cu121.2-3.transformers.4-48.ubuntu2204.py311");
    expect(SERVE_IMAGE).toBe("us-docker.pkg.dev/deeplearning-platform-release/gcr.io/huggingface-pytorch-inference-cu121.2-3.transformers.4-48.ubuntu2204.py311");
  });
});

describe("small rules", () => {
  it.each([
    ["stabilityai/stable-diffusion-xl-base-1.0", false, undefined],
    ["stable-diffusion-v1-5/stable-diffusion-v1-5", false, undefined],
    ["/gcs/bucket/models/sdxl", false, "a bucket path, not a Hugging Face Hub id"],
    ["gs://bucket/models/sdxl", false, "a bucket path"],
    ["/home/me/models/tiny", false, "a directory on this machine, not a Hugging Face Hub id"],
    ["./models/tiny", false, "a directory on this machine"],
    ["../org/name", false, "not a Hugging Face Hub id"],
    ["/home/me/models/tiny", true, undefined],
  ])("vertexBaseProblem(%s, emulated=%s)", (base, emulated, problem) => {
    const result = vertexBaseProblem(base, emulated);
    if (problem) expect(result).toContain(problem);
    else expect(result).toBeUndefined();
  });

  it.each([
    [{ avatar: "alice", "managed-by": "avatar-cli", "avatar-run": RUN }, undefined],
    [{ "9lives": "x" }, "label key"],
    [{ avatar: "x".repeat(64) }, "label value"],
    [{ avatar: "has space" }, "label value"],
  ])("labelsProblem(%j)", (labels, problem) => {
    const result = labelsProblem(labels);
    if (problem) expect(result).toContain(problem);
    else expect(result).toBeUndefined();
  });

  it("runKeyOf", () => {
    expect(runKeyOf(`a/runs/${RUN}/model`, `a/runs/${RUN}/checkpoints`)).toBe(`a/runs/${RUN}`);
  });
});

describe("uploadModelRequest", () => {
  const input = { name: "alice", runId: RUN, artifactUri: `gs://b/avatar/alice/runs/${RUN}/model`, labels: resourceLabels("alice", RUN), description: "d", imageUri: SERVE_IMAGE };

  it.each([
    [false, { modelId: "avatar-alice" }, "parentModel"],
    [true, { parentModel: "projects/my-proj/locations/europe-west4/models/avatar-alice" }, "modelId"],
  ])("modelExists=%s → %j, never %s", (modelExists, expected, absent) => {
    const request = uploadModelRequest(loc, { ...input, modelExists });
    expect(request).toMatchObject({ parent, ...expected });
    expect(request).not.toHaveProperty(absent);
  });

  it("has the serving image, port 8080, artifact URI, labels, aliases, and no HF_MODEL_ID / HF_MODEL_DIR", () => {
    const { model } = uploadModelRequest(loc, { ...input, modelExists: false });
    expect(model).toMatchObject({ displayName: "avatar-alice", artifactUri: input.artifactUri, labels: input.labels, versionAliases: ["default", `run-${RUN}`] });
    expect(model.containerSpec).toMatchObject({ imageUri: SERVE_IMAGE, ports: [{ containerPort: 8080 }] });
    const names = model.containerSpec.env.map((e) => e.name);
    expect(names).not.toContain("HF_MODEL_ID");
    expect(names).not.toContain("HF_MODEL_DIR");
    expect(names.some((n) => n.startsWith("AIP_"))).toBe(false);
  });

  it("gives handler.py a dedicated endpoint's limits: 10 MB responses, 300 s", () => {
    const { model } = uploadModelRequest(loc, { ...input, modelExists: false });
    expect(model.containerSpec.env).toEqual(expect.arrayContaining([{ name: "AVATAR_MAX_RESPONSE_BYTES", value: "10000000" }, { name: "AVATAR_PREDICT_TIMEOUT_S", value: "300" }]));
  });
});

describe("serving requests", () => {
  it.each([
    ["l4" as const, "g2-standard-8", "NVIDIA_L4"],
    ["t4" as const, "n1-standard-8", "NVIDIA_TESLA_T4"],
  ])("deployModelRequest on %s", (gpu, machineType, acceleratorType) => {
    expect(deployModelRequest(loc, { name: "alice", versionId: "3", runId: RUN, gpu, minReplicas: 1, maxReplicas: 1 })).toEqual({
      endpoint: `${parent}/endpoints/avatar-alice`,
      deployedModel: {
        model: `${parent}/models/avatar-alice@3`,
        displayName: `avatar-alice-${RUN}`,
        dedicatedResources: { machineSpec: { machineType, acceleratorType, acceleratorCount: 1 }, minReplicaCount: 1, maxReplicaCount: 1 },
      },
      trafficSplit: { "0": 100 },
    });
  });

  it.each([[0, 1], [2, 1], [1.5, 2]])("deployModelRequest refuses replicas %d-%d", (minReplicas, maxReplicas) => {
    expect(() => deployModelRequest(loc, { name: "a", versionId: "1", runId: RUN, gpu: "l4", minReplicas, maxReplicas })).toThrow(AvatarError);
  });

  it("createEndpointRequest: one endpoint per avatar, labelled; dedicated with an inference timeout, or shared", () => {
    const labels = { avatar: "alice", "managed-by": "avatar-cli" };
    expect(createEndpointRequest(loc, "alice", "dedicated")).toEqual({
      parent,
      endpointId: "avatar-alice",
      endpoint: { displayName: "avatar-alice", labels, dedicatedEndpointEnabled: true, clientConnectionConfig: { inferenceTimeout: { seconds: 300 } } },
    });
    expect(createEndpointRequest(loc, "alice", "shared")).toEqual({ parent, endpointId: "avatar-alice", endpoint: { displayName: "avatar-alice", labels } });
  });

  it.each([
    [[], []],
    [[{ id: "1", traffic: 100 }], [{ endpoint: "e", deployedModelId: "1" }]],
    [[{ id: "2", traffic: 100 }, { id: "1", traffic: 0 }], [{ endpoint: "e", deployedModelId: "1" }, { endpoint: "e", deployedModelId: "2" }]],
    [
      [{ id: "1", traffic: 50 }, { id: "2", traffic: 50 }],
      [{ endpoint: "e", deployedModelId: "1", trafficSplit: { "2": 100 } }, { endpoint: "e", deployedModelId: "2" }],
    ],
  ])("undeployAllRequests(%j)", (deployed, expected) => {
    expect(undeployAllRequests("e", deployed)).toEqual(expected);
  });

  it.each([
    [{ instances: [{ prompt: "p" }], parameters: { steps: 2 } }, { endpoint: "e", instances: [{ prompt: "p" }], parameters: { steps: 2 } }],
    [{ instances: [{ prompt: "p" }] }, { endpoint: "e", instances: [{ prompt: "p" }] }],
  ])("predictRequest(%j)", (body, expected) => {
    expect(predictRequest("e", body)).toEqual(expected);
  });

  it.each([null, {}, { instances: [] }, { instances: "p" }])("predictRequest refuses %j with BAD_INPUT", (body) => {
    expect(() => predictRequest("e", body)).toThrow(expect.objectContaining({ code: "BAD_INPUT", exitCode: 2 }));
  });

  it.each([
    [`avatar-alice-${RUN}`, RUN],
    ["something-else", undefined],
    [null, undefined],
  ])("runIdOfDeployedModel(%s)", (name, run) => {
    expect(runIdOfDeployedModel(name)).toBe(run);
  });
});

describe("names and states", () => {
  it.each([
    ["JOB_STATE_QUEUED", "queued", "queued"],
    ["JOB_STATE_PENDING", "queued", "pending"],
    ["JOB_STATE_RUNNING", "running", "running"],
    ["JOB_STATE_CANCELLING", "running", "cancelling"],
    ["JOB_STATE_SUCCEEDED", "succeeded", "succeeded"],
    ["JOB_STATE_FAILED", "failed", "failed"],
    ["JOB_STATE_EXPIRED", "failed", "expired"],
    ["JOB_STATE_CANCELLED", "cancelled", "cancelled"],
    ["JOB_STATE_PAUSED", "running", "paused"],
    [3, "running", "running"],
    [4, "succeeded", "succeeded"],
    [7, "cancelled", "cancelled"],
    [undefined, "queued", ""],
  ])("jobStateOf(%s) = %s, phase %s", (state, mapped, phase) => {
    expect(jobStateOf(state)).toBe(mapped);
    expect(jobPhase(state)).toBe(phase);
  });

  it.each([
    ["PREPARING_MODEL", "preparing model"],
    [6, "preparing model"],
    [3, "starting model server"],
    [11, "successfully deployed"],
    [0, undefined],
    ["DEPLOYMENT_STAGE_UNSPECIFIED", undefined],
    [null, undefined],
  ])("deploymentStageText(%s)", (stage, text) => {
    expect(deploymentStageText(stage)).toBe(text);
  });

  it.each([
    [undefined, "@default"],
    ["default", "@default"],
    ["3", "@3"],
    [RUN, `@run-${RUN}`],
    ["prod", "@prod"],
  ])("versionSuffix(%s)", (version, suffix) => {
    expect(versionSuffix(version)).toBe(suffix);
  });

  it("resource ids, filters, GPUs, quotas, timestamps", () => {
    expect(resourceId("projects/1/locations/r/models/avatar-alice@2")).toBe("avatar-alice");
    expect(resourceId("projects/1/locations/r/customJobs/123")).toBe("123");
    expect(avatarOfResourceId("avatar-alice")).toBe("alice");
    expect(avatarOfResourceId("123")).toBeUndefined();
    expect(avatarFilter("alice")).toBe('labels.avatar="alice"');
    expect(avatarFilter()).toBe("labels.avatar:*");
    expect([gpuOfAccelerator("NVIDIA_L4"), gpuOfAccelerator(5), gpuOfAccelerator("NVIDIA_A100_80GB")]).toEqual(["l4", "t4", undefined]);
    expect(gpuQuotaName("training", "l4")).toBe("custom_model_training_nvidia_l4_gpus");
    expect(gpuQuotaName("serving", "t4")).toBe("custom_model_serving_nvidia_t4_gpus");
    expect(isoTime({ seconds: "1700000000", nanos: 5e8 })).toBe("2023-11-14T22:13:20.500Z");
    expect(isoTime({ seconds: "0" })).toBeUndefined();
    expect(isoTime(null)).toBeUndefined();
  });

  it("formatPlannedRequests: a header, each method, indented JSON", () => {
    expect(formatPlannedRequests(undefined)).toEqual([]);
    expect(formatPlannedRequests([{ service: "JobService", method: "CreateCustomJob", request: { parent: "p" }, note: "why" }])).toEqual([
      "",
      "Requests (1, not sent: --dry-run):",
      "JobService.CreateCustomJob  # why",
      "  {",
      '    "parent": "p"',
      "  }",
    ]);
  });
});

describe("endpoint types", () => {
  const name = `${parent}/endpoints/avatar-alice`;

  it.each([
    ["avatar-alice.europe-west4-123.prediction.vertexai.goog", "avatar-alice.europe-west4-123.prediction.vertexai.goog"],
    ["https://1.us-central1-9.prediction.vertexai.goog/", "1.us-central1-9.prediction.vertexai.goog"],
    ["", undefined],
    [null, undefined],
    ["https://x/y", undefined],
  ])("dedicatedHost(%j) = %j (the field as a bare host, or in the proto comment's https:// form)", (dns, host) => {
    expect(dedicatedHost(dns)).toBe(host);
  });

  it("the type of an Endpoint resource, and its predict URL: the dedicated DNS name, or the regional host", () => {
    expect(endpointTypeOf({ dedicatedEndpointEnabled: true })).toBe("dedicated");
    expect(endpointTypeOf({ dedicatedEndpointEnabled: false })).toBe("shared");
    expect(endpointTypeOf({})).toBe("shared");
    expect(predictUrl(name, "dedicated", "europe-west4", "d.europe-west4-1.prediction.vertexai.goog")).toBe(`https://d.europe-west4-1.prediction.vertexai.goog/v1/${name}:predict`);
    expect(predictUrl(name, "shared", "europe-west4", "ignored")).toBe(`https://europe-west4-aiplatform.googleapis.com/v1/${name}:predict`);
  });

  // prettier-ignore
  it.each([
    [{ instances: [{}], parameters: { width: 1024, height: 1024, format: "png" } }, /an image of 1024x1024 as PNG comes to about 2\.8 MB, over the 1\.5 MB/],
    [{ instances: [{}], parameters: { width: 1024, height: 1024, format: "jpeg" } }, undefined],
    [{ instances: [{}], parameters: { width: 1024, height: 1024 } }, undefined],
    [{ instances: [{}, {}], parameters: { width: 1024, height: 1024, num_images: 2 } }, /4 images of 1024x1024 as JPEG come to about 2\.5 MB/],
    [{ instances: [{}], parameters: { width: 704, height: 704, format: "png" } }, undefined],
    [{ instances: [{}], parameters: { format: "png" } }, undefined],
  ])("sharedResponseProblem(%j)", (body, problem) => {
    const found = sharedResponseProblem(body);
    if (problem) expect(found).toMatch(problem);
    else expect(found).toBeUndefined();
  });

  it("estimatedResponseBytes follows handler.py: bytes per pixel (JPEG 0.45, PNG 2.0), base64, 300 bytes around each image", () => {
    expect(estimatedResponseBytes(1, 1000, 1000, "png")).toBeCloseTo(2_000_000 * (4 / 3) + 300);
    expect(estimatedResponseBytes(2, 1000, 1000, "jpeg")).toBeCloseTo(2 * (450_000 * (4 / 3) + 300));
  });

  it("an endpoint keeps its type: the mismatch is exit 2 and says how to keep it or start over", () => {
    const toShared = endpointTypeMismatch("alice", "dedicated", "shared");
    expect(toShared).toMatchObject({ code: "BAD_INPUT", exitCode: 2 });
    expect(toShared.hint).toBe("Deploy without --shared-endpoint to keep using it, or run `avatar down alice` first, then `avatar deploy alice --shared-endpoint`.");
    expect(endpointTypeMismatch("alice", "shared", "dedicated").hint).toMatch(/^Pass --shared-endpoint to keep using it/);
  });
});

describe("client construction", () => {
  it("regional endpoint with the googleapis.com universe", async () => {
    expect(await vertexClientOptions({ region: "europe-west4", env: {} })).toEqual({ apiEndpoint: "europe-west4-aiplatform.googleapis.com", universeDomain: "googleapis.com" });
  });

  it("AVATAR_VERTEX_ENDPOINT: that host and port over an insecure channel of gax's own grpc", async () => {
    const { grpc } = await import("google-gax");
    const options = await vertexClientOptions({ region: "us-central1", env: { AVATAR_VERTEX_ENDPOINT: "127.0.0.1:8085" } });
    expect(options).toMatchObject({ apiEndpoint: "127.0.0.1", port: 8085, universeDomain: "googleapis.com" });
    expect(options.sslCreds).toBeInstanceOf(grpc.ChannelCredentials);
    expect(await vertexClientOptions({ region: "us-central1", env: { AVATAR_VERTEX_ENDPOINT: "[::1]:9000" } })).toMatchObject({ apiEndpoint: "::1", port: 9000 });
  });

  it("a dedicated endpoint's predictions: its DNS name on port 443; with AVATAR_VERTEX_DEDICATED_ENDPOINT that address, the DNS name kept as authority", async () => {
    const dns = "avatar-alice.us-central1-1.prediction.vertexai.goog";
    expect(await dedicatedPredictionOptions(dns, { region: "us-central1", env: {} })).toEqual({ apiEndpoint: dns, universeDomain: "googleapis.com" });
    const fake = await dedicatedPredictionOptions(dns, { region: "us-central1", env: { AVATAR_VERTEX_ENDPOINT: "127.0.0.1:8085", AVATAR_VERTEX_DEDICATED_ENDPOINT: "127.0.0.1:8086" } });
    expect(fake).toMatchObject({ apiEndpoint: "127.0.0.1", port: 8086, "grpc.default_authority": dns });
    // A fake for the API but none for the DNS names: a clear CONFIG error, not a connection to the real host.
    await expect(dedicatedPredictionOptions(dns, { region: "us-central1", env: { AVATAR_VERTEX_ENDPOINT: "127.0.0.1:8085" } })).rejects.toMatchObject({ code: "CONFIG", exitCode: 2, message: expect.stringMatching(/its predictions go to avatar-alice\./) });
  });

  it.each(["localhost", "http://127.0.0.1:8085", "127.0.0.1:port", "127.0.0.1:70000"])("a malformed AVATAR_VERTEX_ENDPOINT %s is a CONFIG error", async (value) => {
    await expect(vertexClientOptions({ region: "us-central1", env: { AVATAR_VERTEX_ENDPOINT: value } })).rejects.toMatchObject({ code: "CONFIG", exitCode: 2 });
  });

  it.each([
    [{}, { jobMs: 15_000, operationMs: 5_000 }],
    [{ AVATAR_VERTEX_POLL_MS: "200" }, { jobMs: 200, operationMs: 200 }],
    [{ AVATAR_VERTEX_POLL_MS: "fast" }, { jobMs: 15_000, operationMs: 5_000 }],
  ])("poll intervals from %j", (env, expected) => {
    expect(pollIntervals(env)).toEqual(expected);
  });
});
