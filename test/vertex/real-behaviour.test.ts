// Where real Vertex differs from a proto-built fake (research/vertex-real-behaviour.md), as pure
// rules: predict errors, quota names for Spot, retries of reads, the offline dry-run stand-ins.
import { describe, expect, it } from "vitest";
import { containerErrorText, mapPredictError, mapVertexError } from "../../src/backends/vertex/errors.ts";
import { findAdc } from "../../src/backends/vertex/credentials.ts";
import { offlineClient, OfflineStore, Unchecked } from "../../src/backends/vertex/offline.ts";
import { READ_ATTEMPTS, retryRead, retryPolicy } from "../../src/backends/vertex/retry.ts";
import { AvatarError } from "../../src/core/errors.ts";
import { gpuQuotaName } from "../../src/core/vertex-names.ts";
import { trainerArgs } from "../../src/core/trainer-args.ts";
import { optionsFingerprint } from "../../src/workflows/train.ts";

const predictContext = { doing: "generating with nova", kind: "serving" as const, region: "us-central1", project: "p", name: "nova", elapsedMs: 1200, limitSeconds: 60 };
const grpc = (code: number, details: string) => Object.assign(new Error(`${code} X: ${details}`), { code, details });

describe("predict errors as real Vertex sends them", () => {
  it("a container's 400 arrives as FAILED_PRECONDITION: exit 2 with the handler's own message, not 'not deployed'", () => {
    const error = mapPredictError(grpc(9, 'Prediction failed: {"error": "steps must be between 1 and 100 (got 1000)"}'), predictContext);
    expect(error).toMatchObject({ code: "BAD_INPUT", exitCode: 2 });
    expect(error.message).toBe("The model rejected the request: steps must be between 1 and 100 (got 1000)");
  });

  it("the shared endpoint's size limit is code 9 too: exit 2 saying to send less", () => {
    const error = mapPredictError(grpc(9, "The request size (1734021 bytes) exceeds 1.500MB limit."), predictContext);
    expect(error).toMatchObject({ code: "BAD_INPUT", exitCode: 2 });
    expect(error.hint).toMatch(/fewer/);
  });

  it("a response over the endpoint's limit (INVALID_ARGUMENT 'Response size too large', python-aiplatform #190): exit 2, JPEG or smaller, or a dedicated endpoint", () => {
    const text = "Failed to handle request. endpoint_id: 3414397020616523776, deployed_model_id: 7183628433748918272 with error: `Response size too large. Received at least 3288694 bytes; max is 1500000 bytes`.";
    const shared = mapPredictError(grpc(3, text), predictContext);
    expect(shared).toMatchObject({ code: "BAD_INPUT", exitCode: 2 });
    expect(shared.message).toBe(`The images are larger than the shared endpoint returns (1.5 MB): ${text}`);
    expect(shared.hint).toMatch(/--format jpeg .*`avatar down nova`, then `avatar deploy nova` without --shared-endpoint/);
    const dedicated = mapPredictError(grpc(3, text), { ...predictContext, endpointType: "dedicated" as const });
    expect(dedicated.message).toMatch(/^The images are larger than the dedicated endpoint returns \(10 MB\)/);
    expect(dedicated.hint).not.toMatch(/shared-endpoint/);
  });

  it("a dedicated endpoint asked through the shared host is not the model refusing the request", () => {
    const text = "This endpoint is a dedicated endpoint via CloudESF and cannot be accessed through the Vertex AI API. Please access the endpoint using its dedicated dns name '1.us-central1-2.prediction.vertexai.goog'";
    const error = mapPredictError(grpc(9, text), predictContext);
    expect(error).toMatchObject({ code: "REMOTE_FAILED", exitCode: 3 });
    expect(error.message).toMatch(/^nova's endpoint is dedicated and answers only at its own DNS name/);
  });

  it.each([
    [9, "Endpoint projects/1/locations/us-central1/endpoints/avatar-nova does not have any deployed model."],
    [9, "Endpoint projects/1/locations/us-central1/endpoints/avatar-nova has no deployed model with traffic."],
    [5, "Endpoint avatar-nova not found."],
  ])("only a message about no deployed model (or NOT_FOUND) means not deployed: code %d → exit 6", (code, text) => {
    const error = mapPredictError(grpc(code, text), predictContext);
    expect(error).toMatchObject({ code: "NOT_FOUND", exitCode: 6 });
    expect(error.hint).toBe("Run `avatar deploy nova` first.");
  });

  it("UNAVAILABLE after the endpoint's 60 s limit is about the image, not the network", () => {
    const slow = mapPredictError(grpc(14, "upstream connect error or disconnect/reset before headers"), { ...predictContext, elapsedMs: 60_100 });
    expect(slow.message).toMatch(/took longer than the endpoint's 60 s limit/);
    expect(slow.hint).toMatch(/fewer steps.*smaller size.*L4/);
    const said = mapPredictError(grpc(14, "The request timed out."), predictContext);
    expect(said.message).toMatch(/60 s limit/);
    const early = mapPredictError(grpc(14, "Connection reset by peer"), predictContext);
    expect(early.message).not.toMatch(/limit/);
    expect(early.hint).toMatch(/network/);
  });

  it("containerErrorText takes the error out of a JSON body anywhere in the message, else leaves it", () => {
    expect(containerErrorText('400 {"error": "prompt is empty"} trailing')).toBe("prompt is empty");
    expect(containerErrorText("plain text")).toBe("plain text");
    expect(containerErrorText('{"detail": "x"}')).toBe('{"detail": "x"}');
  });
});

describe("quota hints", () => {
  it("a Spot job's quota error names the preemptible quota and never suggests --spot", () => {
    const hint = mapVertexError({ code: 8, details: "x" }, { doing: "creating the training job", kind: "training", gpu: "l4", spot: true, region: "us-central1", project: "p" }).hint!;
    expect(hint).toContain("custom_model_training_preemptible_nvidia_l4_gpus");
    expect(hint).not.toMatch(/or --spot \(/);
    expect(hint).toMatch(/train without --spot/);
  });

  it("an on-demand job's quota error offers --spot; a preemptible metric from ErrorInfo never does", () => {
    const context = { doing: "creating the training job", kind: "training" as const, gpu: "t4" as const, region: "europe-west4", project: "p" };
    expect(mapVertexError({ code: 8, details: "x" }, context).hint).toMatch(/custom_model_training_nvidia_t4_gpus.*--spot/);
    const metric = mapVertexError({ code: 8, details: "x", errorInfoMetadata: { quota_metric: "aiplatform.googleapis.com/custom_model_training_preemptible_nvidia_t4_gpus" } }, context).hint!;
    expect(metric).not.toMatch(/or --spot \(/);
  });

  it("gpuQuotaName: Spot only changes training quotas", () => {
    expect(gpuQuotaName("training", "t4", { spot: true })).toBe("custom_model_training_preemptible_nvidia_t4_gpus");
    expect(gpuQuotaName("serving", "l4", { spot: true })).toBe("custom_model_serving_nvidia_l4_gpus");
  });

  it("a storage permission error names a role that holds what the CLI uses", () => {
    const error = mapVertexError({ code: 7, details: "caller does not have storage.objects.create access" }, { doing: "x" });
    expect(error.hint).toMatch(/roles\/storage\.objectAdmin/);
  });
});

describe("retryRead", () => {
  const policy = (lines: string[]) => ({ ...retryPolicy(1, (l) => lines.push(l)), maxDelayMs: 2 });

  it("retries UNAVAILABLE, DEADLINE_EXCEEDED and INTERNAL, one line per retry, and returns the answer", async () => {
    const lines: string[] = [];
    const codes = [14, 4, 13];
    let calls = 0;
    const value = await retryRead("reading training job 1", async () => {
      const code = codes[calls++];
      if (code) throw grpc(code, "flaky");
      return "job";
    }, policy(lines));
    expect(value).toBe("job");
    expect(calls).toBe(4);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^retry 1\/7 reading training job 1 in .* s: flaky$/);
  });

  it(`gives up after ${READ_ATTEMPTS} consecutive failures with the last error`, async () => {
    const lines: string[] = [];
    let calls = 0;
    const error = await retryRead("x", async () => {
      calls++;
      throw grpc(14, `down ${calls}`);
    }, policy(lines)).catch((e) => e);
    expect(calls).toBe(READ_ATTEMPTS);
    expect(error.details).toBe(`down ${READ_ATTEMPTS}`);
    expect(lines).toHaveLength(READ_ATTEMPTS - 1);
  });

  it("does not retry what is not transient (NOT_FOUND, PERMISSION_DENIED, a bad request)", async () => {
    for (const code of [3, 5, 7, 9]) {
      let calls = 0;
      await retryRead("x", async () => {
        calls++;
        throw grpc(code, "no");
      }, policy([])).catch(() => undefined);
      expect(calls).toBe(1);
    }
  });

  it("the real policy waits 2 s doubling to 30 s: about two minutes of outage", () => {
    const real = retryPolicy(15_000);
    const waits = Array.from({ length: real.attempts - 1 }, (_, i) => Math.min(real.maxDelayMs, real.firstDelayMs * 2 ** i));
    expect(waits).toEqual([2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });
});

describe("dry runs without credentials", () => {
  it("findAdc finds nothing in an empty home, and a missing GOOGLE_APPLICATION_CREDENTIALS file is a problem", () => {
    expect(findAdc({ HOME: "/nonexistent-home" })).toEqual({ found: false });
    expect(findAdc({ HOME: "/x", GOOGLE_APPLICATION_CREDENTIALS: "/no/such.json" })).toMatchObject({ found: false, problem: expect.stringContaining("/no/such.json") });
    expect(findAdc({ HOME: "/x", K_SERVICE: "svc" })).toMatchObject({ found: true, source: "metadata" });
  });

  it("the offline store reads nothing, writes nothing, and says what it skipped", async () => {
    const unchecked = new Unchecked();
    const store = new OfflineStore("b", unchecked);
    expect(store.uri("alice/datasets/abc.zip")).toBe("gs://b/avatar/alice/datasets/abc.zip");
    expect(await store.exists("alice/datasets/abc.zip")).toBe(false);
    expect(await store.list("alice/runs/1/checkpoints/")).toEqual([]);
    await expect(store.put("x")).rejects.toMatchObject({ code: "INTERNAL" });
    await expect(store.readUri("gs://o/p")).rejects.toMatchObject({ code: "AUTH" });
    expect(store.unchecked()).toBe(
      "Planned without Google credentials: not checked whether the dataset is already in the bucket, the run's checkpoints; the real run may skip some of these requests.",
    );
  });

  it("the offline client answers gets with NOT_FOUND, lists with nothing, and refuses anything else", async () => {
    const unchecked = new Unchecked();
    const client = offlineClient("JobServiceClient", unchecked) as unknown as Record<string, (r?: unknown) => Promise<unknown>>;
    await expect(client.getCustomJob!({})).rejects.toMatchObject({ code: 5 });
    expect(await client.listCustomJobs!({})).toEqual([[], null, null]);
    await expect(client.createCustomJob!({})).rejects.toBeInstanceOf(AvatarError);
    expect(unchecked.summary()).toContain("earlier training runs");
  });
});

describe("resuming a run", () => {
  const options = { base: "b/x", pipeline: "sd15" as const, resolution: 64, token: "sks", classWord: "person", steps: 4, rank: 4, lr: 1e-4, seed: 42, caption: "none" as const, flip: true };
  it("the options label ignores steps and the caption model without captions, and changes with lr, seed or rank", () => {
    const label = optionsFingerprint(options);
    expect(label).toMatch(/^[0-9a-f]{16}$/);
    expect(optionsFingerprint({ ...options, steps: 800 })).toBe(label);
    expect(optionsFingerprint({ ...options, captionModel: "m" })).toBe(label);
    for (const change of [{ lr: 2e-4 }, { seed: 1 }, { rank: 8 }, { token: "ohwx" }, { baseRevision: "0123abcd" }]) expect(optionsFingerprint({ ...options, ...change })).not.toBe(label);
  });

  it("--base-revision reaches the trainer's command line", () => {
    const common = { dataset: "d", outputDir: "o", checkpointDir: "c", checkpointEvery: 2, logEvery: 1, name: "n", runId: "r", datasetSha256: "s" };
    expect(trainerArgs({ ...options, ...common, baseRevision: "v1.0" }).join(" ")).toContain("--base-revision v1.0");
    expect(trainerArgs({ ...options, ...common })).not.toContain("--base-revision");
  });
});
