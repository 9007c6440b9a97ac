// The pure side of `generate --no-endpoint`: the request, the JSONL lines, and the output shapes
// Vertex may write (core/batch-spec.ts lists which are documented and which only seen or guessed).
import { describe, expect, it } from "vitest";
import { batchInstance, batchPredictionJobRequest, instanceSeed, instancesJsonl, parseOutputLine } from "../../src/core/batch-spec.ts";

const loc = { project: "p", region: "us-central1" };
const input = {
  name: "alice",
  stamp: "20261201-120000",
  versionId: "3",
  gpu: "t4" as const,
  spot: false,
  labels: { avatar: "alice", "managed-by": "avatar-cli", "avatar-batch": "20261201-120000" },
  inputUri: "gs://b/avatar/alice/outputs/20261201-120000/input.jsonl",
  outputUriPrefix: "gs://b/avatar/alice/outputs/20261201-120000/",
  modelParameters: { steps: 20, format: "png" },
};

describe("batchPredictionJobRequest", () => {
  it("names the model version, JSONL in and out, the preset's machine on one node, one line per request", () => {
    expect(batchPredictionJobRequest(loc, input)).toEqual({
      parent: "projects/p/locations/us-central1",
      batchPredictionJob: {
        displayName: "avatar-alice-batch-20261201-120000",
        model: "projects/p/locations/us-central1/models/avatar-alice@3",
        inputConfig: { instancesFormat: "jsonl", gcsSource: { uris: [input.inputUri] } },
        modelParameters: { steps: 20, format: "png" },
        outputConfig: { predictionsFormat: "jsonl", gcsDestination: { outputUriPrefix: input.outputUriPrefix } },
        dedicatedResources: { machineSpec: { machineType: "n1-standard-8", acceleratorType: "NVIDIA_TESLA_T4", acceleratorCount: 1 }, startingReplicaCount: 1, maxReplicaCount: 1 },
        manualBatchTuningParameters: { batchSize: 1 },
        labels: input.labels,
      },
    });
  });

  it("asks for Spot VMs only when told; refuses bad labels and non-gs:// locations", () => {
    expect(batchPredictionJobRequest(loc, { ...input, spot: true }).batchPredictionJob.dedicatedResources.spot).toBe(true);
    expect(() => batchPredictionJobRequest(loc, { ...input, labels: { Avatar: "x" } })).toThrow(/label key "Avatar"/);
    expect(() => batchPredictionJobRequest(loc, { ...input, inputUri: "/tmp/input.jsonl" })).toThrow(/Cloud Storage/);
  });
});

describe("JSONL lines", () => {
  it("one instance per image with all its parameters, one image each, its own seed", () => {
    const line = batchInstance({ index: 0, raw: "x", prompt: "a photo of {avatar}, x", seed: 9 }, { steps: 2, format: "jpeg" }, "blurry");
    expect(line).toEqual({ prompt: "a photo of {avatar}, x", negative_prompt: "blurry", parameters: { steps: 2, format: "jpeg", num_images: 1, seed: 9 } });
    expect(instancesJsonl([line, { prompt: "y" }])).toBe(`${JSON.stringify(line)}\n{"prompt":"y"}\n`);
  });
});

describe("output lines", () => {
  // prettier-ignore
  const cases: [string, unknown][] = [
    ['{"instance": {"prompt": "x", "parameters": {"seed": 4.0}}, "prediction": {"image_b64": "AA=="}}', { kind: "prediction", instance: { prompt: "x", parameters: { seed: 4 } }, prediction: { image_b64: "AA==" } }],
    ['{"instance": {"prompt": "x"}, "error": {"status": "FAILED_PRECONDITION", "message": "too long"}}', { kind: "error", instance: { prompt: "x" }, message: "too long (FAILED_PRECONDITION)" }],
    ['{"instance": {"prompt": "x"}, "error": {"code": 3, "message": "bad"}}', { kind: "error", instance: { prompt: "x" }, message: "bad (code 3)" }],
    ["('Post request fails. Cannot get predictions. Error: it\\'s 400', 2)", { kind: "stats", message: "Post request fails. Cannot get predictions. Error: it's 400", count: 2 }],
    ['("Non-OK result 500 (\'boom\')", 1)', { kind: "stats", message: "Non-OK result 500 ('boom')", count: 1 }],
    ["", undefined],
    ["not json", undefined],
    ['{"instance": {"prompt": "x"}}', undefined],
  ];
  it.each(cases)("%s", (line, expected) => {
    expect(parseOutputLine(line)).toEqual(expected);
  });

  it("the seed of a line's instance, also when it comes back as a double", () => {
    expect(instanceSeed({ parameters: { seed: 41.0 } })).toBe(41);
    expect(instanceSeed({ parameters: {} })).toBeUndefined();
    expect(instanceSeed("x")).toBeUndefined();
  });
});
