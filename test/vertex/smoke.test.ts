// avatar doctor --smoke: the pure pieces (the smoke job request, what a run's facts mean, quota
// limits), then the built CLI against fake-gcs-server, the Vertex fake (which runs the smoke job with
// the venv's python, /gcs mapped to a temp dir filled from the bucket) and a tiny Cloud Quotas fake.
import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quotaChecks, quotaLimitIn, quotaNeeds, type QuotaInfoLike } from "../../src/core/quota-checks.ts";
import { bucketAccessHint, smokeChecks, type SmokeOutcome } from "../../src/core/smoke-checks.ts";
import { smokeJobRequest } from "../../src/core/smoke-spec.ts";
import { customJobSpec, TRAIN_IMAGE, trainerCommand } from "../../src/core/vertex-specs.ts";
import { cleanEnv, cliPath, runCli, spawnEnv } from "../support/cli.ts";
import { startGcsEmulator, type GcsEmulator } from "../support/gcs-emulator.ts";
import { startVertexFake, type VertexFake } from "../support/vertex-fake.ts";
import { PROJECT, REGION } from "./helpers.ts";

const LONG = 5 * 60_000;
const BUCKET = "avatar-vx-smoke";
const NUMBER = "314159265358";
const AGENT = `service-${NUMBER}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com`;
const MUTATING = ["CreateCustomJob", "CancelCustomJob", "UploadModel", "CreateEndpoint", "DeployModel", "UndeployModel", "DeleteEndpoint", "Predict"];

describe("smokeJobRequest", () => {
  const request = smokeJobRequest({ project: "my-proj", region: "europe-west4" }, { bucket: "bkt", stamp: "20261201-101500-ab12", imageUri: TRAIN_IMAGE, trainerVersion: "0.1.0-abc", probeSha256: "f".repeat(64) });
  const pool = request.customJob.jobSpec.workerPoolSpecs[0]!;

  it("is a CPU-only job on the training image, labelled so that `avatar list` does not show it", () => {
    expect(request.parent).toBe("projects/my-proj/locations/europe-west4");
    expect(pool.machineSpec).toEqual({ machineType: "e2-standard-4" });
    expect(pool.containerSpec.imageUri).toBe(TRAIN_IMAGE);
    expect(request.customJob.labels).toEqual({ "managed-by": "avatar-cli", "avatar-smoke": "20261201-101500-ab12" });
    expect(request.customJob.displayName).toBe("avatar-smoke-20261201-101500-ab12");
    expect(request.customJob.jobSpec.scheduling).toEqual({ timeout: { seconds: 900 } });
    expect(request.customJob).not.toHaveProperty("serviceAccount"); // the training job's identity
  });

  it("runs the trainer package the way training does, with the training job's environment", () => {
    const training = customJobSpec({
      bucket: "bkt", displayName: "x", labels: {}, gpu: "l4", spot: false, timeoutSeconds: 60, imageUri: TRAIN_IMAGE, trainerVersion: "0.1.0-abc",
      trainer: { base: "sd15", pipeline: "sd15", resolution: 512, token: "sks", classWord: "person", steps: 1, rank: 4, lr: 1e-4, seed: 1, caption: "none", checkpointEvery: 1, logEvery: 1 },
      datasetKey: "a/datasets/x.zip", modelKey: "a/runs/r/model", checkpointKey: "a/runs/r/checkpoints",
    }).jobSpec.workerPoolSpecs[0]!.containerSpec;
    expect(pool.containerSpec.env).toEqual(training.env);
    expect(pool.containerSpec.command).toEqual(trainerCommand("bkt", "0.1.0-abc").map((part) => part.replace("avatar_trainer ", "avatar_trainer.smoke ").replace("avatar-trainer", "avatar-smoke")));
    expect(pool.containerSpec.args).toEqual([
      "--probe-dir", "/gcs/bkt/avatar/_smoke/20261201-101500-ab12/in", "--probe", "datasets/probe.bin", "--probe-sha256", "f".repeat(64),
      "--marker", "/gcs/bkt/avatar/_smoke/20261201-101500-ab12/out/marker.json", "--stamp", "20261201-101500-ab12",
    ]);
  });
});

describe("smokeChecks", () => {
  const base: SmokeOutcome = { project: "my-proj", region: "us-central1", bucket: "bkt", imageUri: TRAIN_IMAGE, seconds: 95 };
  const job = (state: string, error?: string) => ({ name: `projects/${NUMBER}/locations/us-central1/customJobs/77`, state, ...(error ? { error } : {}) });
  const marker = (list: string, read: string, imported = "ok") => ({
    ok: list === "ok" && read === "ok" && imported === "ok",
    python: "3.11.9",
    checks: [
      { name: "mount-list", status: list, detail: `list ${list}` },
      { name: "mount-read", status: read, detail: `read ${read}` },
      { name: "trainer-import", status: imported, detail: `import ${imported}` },
    ],
  });
  const statuses = (o: SmokeOutcome) => Object.fromEntries(smokeChecks(o).map((c) => [c.name, c.status]));

  it.each([
    { case: "all good", o: { job: job("succeeded"), marker: marker("ok", "ok") }, want: { "smoke-job": "ok", image: "ok", "bucket-mount": "ok", "trainer-import": "ok" } },
    { case: "reads but no listings", o: { job: job("failed"), marker: marker("fail", "ok") }, want: { "smoke-job": "ok", image: "ok", "bucket-mount": "fail", "trainer-import": "ok" } },
    { case: "probe not seen", o: { job: job("failed"), marker: marker("fail", "fail") }, want: { "smoke-job": "ok", image: "ok", "bucket-mount": "fail", "trainer-import": "ok" } },
    { case: "import fails", o: { job: job("failed"), marker: marker("ok", "ok", "fail") }, want: { "smoke-job": "ok", image: "ok", "bucket-mount": "ok", "trainer-import": "fail" } },
    { case: "image pull", o: { job: job("failed", "Vertex AI Service Agent 'x' should be granted access to the image us-docker.pkg.dev/p/r/i") }, want: { "smoke-job": "ok", image: "fail", "bucket-mount": "fail", "trainer-import": "warn" } },
    { case: "no marker, other failure", o: { job: job("failed", "The replica workerpool0-0 exited with a non-zero status of 2.") }, want: { "smoke-job": "ok", image: "warn", "bucket-mount": "fail", "trainer-import": "warn" } },
    { case: "stuck queued", o: { job: job("pending"), gaveUp: true }, want: { "smoke-job": "fail", image: "warn", "bucket-mount": "fail", "trainer-import": "warn" } },
    { case: "not created", o: { createError: { code: "PERMISSION", message: "denied", hint: "roles/aiplatform.user" } }, want: { "smoke-job": "fail", image: "warn", "bucket-mount": "warn", "trainer-import": "warn" } },
  ])("$case", ({ o, want }) => {
    expect(statuses({ ...base, ...o } as SmokeOutcome)).toEqual(want);
  });

  it("names the Custom Code Service Agent by the project number in the job name, else says how to find it", () => {
    expect(bucketAccessHint({ ...base, job: job("failed") })).toContain(`gcloud storage buckets add-iam-policy-binding gs://bkt --member=serviceAccount:${AGENT} --role=roles/storage.objectAdmin`);
    expect(bucketAccessHint(base)).toContain("service-PROJECT_NUMBER@gcp-sa-aiplatform-cc.iam.gserviceaccount.com");
    expect(bucketAccessHint(base)).toContain("gcloud projects describe my-proj --format='value(projectNumber)'");
  });

  it("a CPU quota refusal points at custom_model_training_cpus", () => {
    const [created] = smokeChecks({ ...base, createError: { code: "QUOTA", message: "quota exceeded" } });
    expect(created!.hint).toContain("aiplatform.googleapis.com%2Fcustom_model_training_cpus");
  });
});

describe("quota limits", () => {
  const info = (metric: string, infos: QuotaInfoLike["dimensionsInfos"]): QuotaInfoLike => ({ metric: `aiplatform.googleapis.com/${metric}`, dimensions: ["region"], dimensionsInfos: infos });

  it.each([
    { case: "the region's own value", infos: [{ dimensions: { region: "us-central1" }, details: { value: "2" }, applicableLocations: ["us-central1"] }, { dimensions: {}, details: { value: "0" }, applicableLocations: ["us-central1", "europe-west4"] }], want: 2 },
    { case: "the default for listed regions", infos: [{ dimensions: { region: "us-east4" }, details: { value: "8" } }, { dimensions: {}, details: { value: 1 }, applicableLocations: ["us-central1"] }], want: 1 },
    { case: "value left out (proto3 JSON zero)", infos: [{ dimensions: { region: "us-central1" }, details: {}, applicableLocations: ["us-central1"] }], want: 0 },
    { case: "unlimited", infos: [{ dimensions: {}, details: { value: "-1" } }], want: Number.POSITIVE_INFINITY },
    { case: "another region only", infos: [{ dimensions: { region: "us-east4" }, details: { value: "8" }, applicableLocations: ["us-east4"] }], want: undefined },
  ])("$case", ({ infos, want }) => {
    expect(quotaLimitIn([info("m", infos)], "us-central1")).toBe(want);
  });

  it("limit 0 fails with the console link, 1 passes, a missing Spot quota only warns, an unlisted metric warns", () => {
    const needs = quotaNeeds("l4");
    const zero = [{ dimensions: {}, details: {}, applicableLocations: ["us-central1"] }];
    const one = [{ dimensions: {}, details: { value: "1" }, applicableLocations: ["us-central1"] }];
    const found = new Map([
      ["custom_model_training_nvidia_l4_gpus", [info("custom_model_training_nvidia_l4_gpus", zero)]],
      ["custom_model_training_preemptible_nvidia_l4_gpus", [info("custom_model_training_preemptible_nvidia_l4_gpus", zero)]],
      ["custom_model_serving_nvidia_l4_gpus", [info("custom_model_serving_nvidia_l4_gpus", one)]],
    ]);
    const checks = quotaChecks(needs, found, "my-proj", "us-central1");
    expect(checks.map((c) => [c.name, c.status])).toEqual([
      ["quota-training-l4", "fail"], ["quota-training-spot-l4", "warn"], ["quota-serving-l4", "ok"], ["quota-training-cpus", "warn"],
    ]);
    expect(checks[0]!.hint).toContain("https://console.cloud.google.com/iam-admin/quotas?project=my-proj&service=aiplatform.googleapis.com&metric=aiplatform.googleapis.com%2Fcustom_model_training_nvidia_l4_gpus");
    expect(checks[2]!.message).toBe("custom_model_serving_nvidia_l4_gpus = 1 in us-central1 (serving on one L4 (avatar deploy) needs 1)");
    expect(checks[3]!.message).toContain("not listed");
  });
});

// ------------------------------------------------------------------------------------------------
// Through the built CLI

interface QuotaFake {
  url: string;
  /** Metric (without the service) → limit in REGION; absent metrics are not listed. */
  limits: Record<string, number>;
  /** The next answers are this status and body instead. */
  failWith?: { status: number; body: unknown };
  requests: { url: string; authorization?: string }[];
  close(): Promise<void>;
}

/** A Cloud Quotas API with two pages: whatever metric, plus one QuotaInfo per limit. */
async function startQuotaFake(): Promise<QuotaFake> {
  const fake: QuotaFake = { url: "", limits: {}, requests: [], close: async () => {} };
  const server: Server = createServer((req: IncomingMessage, res) => {
    fake.requests.push({ url: req.url ?? "", authorization: req.headers.authorization });
    const url = new URL(req.url ?? "/", "http://x");
    res.setHeader("content-type", "application/json");
    if (fake.failWith) {
      res.statusCode = fake.failWith.status;
      return res.end(JSON.stringify(fake.failWith.body));
    }
    if (url.pathname !== `/v1/projects/${PROJECT}/locations/global/services/aiplatform.googleapis.com/quotaInfos`) {
      res.statusCode = 404;
      return res.end(JSON.stringify({ error: { code: 404, message: `no such path ${url.pathname}`, status: "NOT_FOUND" } }));
    }
    const infos = Object.entries(fake.limits).map(([metric, limit]) => ({
      name: `projects/${NUMBER}/locations/global/services/aiplatform.googleapis.com/quotaInfos/${metric}`,
      metric: `aiplatform.googleapis.com/${metric}`,
      dimensions: ["region"],
      dimensionsInfos: [{ dimensions: { region: REGION }, details: limit ? { value: String(limit) } : {}, applicableLocations: [REGION] }],
    }));
    const other = { metric: "aiplatform.googleapis.com/online_prediction_requests_per_base_model", dimensionsInfos: [{ details: { value: "600" } }] };
    const second = url.searchParams.get("pageToken") === "p2";
    res.end(JSON.stringify(second ? { quotaInfos: infos } : { quotaInfos: [other], nextPageToken: "p2" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  fake.url = `http://127.0.0.1:${address.port}`;
  fake.close = () => new Promise((resolve) => server.close(() => resolve()));
  return fake;
}

let gcs: GcsEmulator;
let vertex: VertexFake;
let quotas: QuotaFake;
let home: string;
let env: Record<string, string | undefined>;
const flags = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
const smoke = (...extra: string[]) => runCli(["doctor", "--smoke", "--json", ...flags, ...extra], { env, cwd: home, timeoutMs: LONG });
const check = (data: { checks: { name: string }[] }, name: string) => data.checks.find((c) => c.name === name) as { status: string; message: string; hint?: string } | undefined;
const mutating = () => vertex.calls.filter((c) => MUTATING.includes(c.method)).map((c) => c.method);
/** Object names only: downloading every object through the client floods stderr with listener warnings. */
const objectNames = async () => (await gcs.storage().bucket(BUCKET).getFiles())[0].map((f) => f.name);
const smokeObjects = async () => (await objectNames()).filter((k) => k.startsWith("avatar/_smoke/"));

/** Resolves once the next CreateCustomJob has been received (the fake starts jobs after a delay). */
async function nextJobCreated(cli: Promise<unknown>): Promise<void> {
  const before = vertex.requests("CreateCustomJob").length;
  let ended = false;
  void cli.finally(() => (ended = true));
  while (vertex.requests("CreateCustomJob").length === before) {
    if (ended) throw new Error("the CLI ended before creating the smoke job");
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-vx-smoke-"));
  gcs = await startGcsEmulator();
  await gcs.createBucket(BUCKET);
  // Jobs start 2 s after they are created: time for a test to take the probe away or press Ctrl-C.
  vertex = await startVertexFake({ gcsEndpoint: gcs.endpoint, project: PROJECT, projectNumber: NUMBER, jobStartDelayMs: 2000, env: { HF_HUB_OFFLINE: "1", OMP_NUM_THREADS: "1" } });
  quotas = await startQuotaFake();
  env = cleanEnv(home, { AVATAR_GCS_ENDPOINT: gcs.endpoint, AVATAR_VERTEX_ENDPOINT: vertex.address, AVATAR_VERTEX_POLL_MS: "150", AVATAR_QUOTA_ENDPOINT: quotas.url });
}, LONG);

afterAll(async () => {
  await quotas?.close();
  await vertex?.close();
  await gcs?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("avatar doctor --smoke", () => {
  it("--dry-run --json prints a CustomJob with no accelerator on the training image, with no credentials and nothing sent", async () => {
    // Nothing to talk to and no credentials: the plan alone.
    const bare = await runCli(["doctor", "--smoke", "--dry-run", "--json", ...flags], { env: cleanEnv(home), cwd: home });
    expect(bare.code, bare.stderr).toBe(0);
    const data = bare.json!.data;
    expect(data.dryRun).toBe(true);
    const create = data.requests.find((r: { method: string }) => r.method === "CreateCustomJob");
    const pool = create.request.customJob.jobSpec.workerPoolSpecs[0];
    expect(pool.machineSpec).toEqual({ machineType: "e2-standard-4" });
    expect(pool.containerSpec.imageUri).toBe(TRAIN_IMAGE);
    expect(create.request.parent).toBe(`projects/${PROJECT}/locations/${REGION}`);
    const probe = data.requests.find((r: { request: { object?: string } }) => r.request.object?.endsWith("/in/datasets/probe.bin"));
    expect(probe).toMatchObject({ service: "Cloud Storage", method: "upload" });
    expect(pool.containerSpec.args).toContain(probe.request.sha256);
    expect(data.notChecked.join(" ")).toMatch(/already in gs:\/\/avatar-vx-smoke/);

    // Pointed at the fakes: still nothing sent, nothing written.
    const calls = vertex.calls.length;
    const human = await runCli(["doctor", "--smoke", "--dry-run", ...flags], { env, cwd: home });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain("JobService.CreateCustomJob");
    expect(human.stdout).toMatch(/^Not checked: /m);
    expect(vertex.calls.length).toBe(calls); // not even a read
    expect(mutating()).toEqual([]);
    expect(await objectNames()).toEqual([]);
    expect(quotas.requests).toEqual([]);
  });

  it("passes end to end: quotas read, the job sees the probe through the mount, imports the trainer, writes its marker; nothing left behind", async () => {
    quotas.limits = { custom_model_training_nvidia_l4_gpus: 1, custom_model_training_preemptible_nvidia_l4_gpus: 1, custom_model_serving_nvidia_l4_gpus: 1, custom_model_training_cpus: 8 };
    const started = Date.now();
    const result = await smoke();
    const took = (Date.now() - started) / 1000;
    expect(result.code, result.stderr).toBe(0);
    const data = result.json!.data;
    for (const name of ["smoke-job", "image", "bucket-mount", "trainer-import", "quota-training-l4", "quota-training-spot-l4", "quota-serving-l4", "quota-training-cpus"]) {
      expect(check(data, name), `${name}: ${JSON.stringify(check(data, name))}\n${result.stderr}`).toMatchObject({ status: "ok" });
    }
    expect(data.healthy).toBe(true);
    expect(check(data, "bucket-mount")!.message).toContain("without folder objects");
    expect(check(data, "trainer-import")!.message).toMatch(/torch=2\.3\.1/);
    expect(data.smoke).toMatchObject({ machineType: "e2-standard-4", state: "succeeded", job: expect.stringMatching(new RegExp(`^projects/${NUMBER}/locations/${REGION}/customJobs/\\d+$`)) });
    expect(data.smoke.approxUsd).toBeGreaterThan(0);
    expect(data.smoke.marker.versions.diffusers).toBe("0.32.1");
    expect(result.stderr).toMatch(/Smoke test passed/);
    console.info(`smoke run against the fakes: ${took.toFixed(1)} s (job ${data.smoke.seconds} s)`);

    const [sent] = vertex.requests("CreateCustomJob");
    const pool = sent.customJob.jobSpec.workerPoolSpecs[0];
    expect(pool.machineSpec).toMatchObject({ machineType: "e2-standard-4", acceleratorCount: 0 });
    expect(["", "ACCELERATOR_TYPE_UNSPECIFIED"]).toContain(pool.machineSpec.acceleratorType);
    expect(sent.customJob.labels).toEqual({ "managed-by": "avatar-cli", "avatar-smoke": data.smoke.stamp });
    // The objects the job needed were written without folder placeholders, and are gone again.
    const objects = await objectNames();
    expect(objects.filter((k) => k.endsWith("/"))).toEqual([]);
    expect(objects.some((k) => /^avatar\/_trainer\/[^/]+\/avatar_trainer\/smoke\.py$/.test(k))).toBe(true);
    expect(await smokeObjects()).toEqual([]);
    // Not an avatar's training run.
    const listed = await runCli(["list", "--json", ...flags], { env, cwd: home });
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.stringify(listed.json!.data)).not.toContain(data.smoke.stamp);

    const human = await runCli(["doctor", "--smoke", ...flags], { env, cwd: home, timeoutMs: LONG });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^ok\s+bucket-mount\s+/m);
    expect(human.stdout).toMatch(/Smoke job \d+: succeeded after \d+ s, ≈ \$\d\.\d{3} \(e2-standard-4 at ≈ \$0\.154\/h, an estimate\)\./);
  }, LONG);

  it("a probe the job does not see fails bucket-mount with the service agent's IAM fix", async () => {
    const running = smoke();
    await nextJobCreated(running);
    const probe = (await smokeObjects()).find((k) => k.endsWith("/in/datasets/probe.bin"))!;
    await gcs.storage().bucket(BUCKET).file(probe).delete();
    const result = await running;
    expect(result.code, result.stderr).toBe(0);
    const data = result.json!.data;
    expect(check(data, "bucket-mount")).toMatchObject({ status: "fail" });
    expect(check(data, "bucket-mount")!.message).toMatch(/did not see the probe/);
    expect(check(data, "bucket-mount")!.hint).toContain(`gcloud storage buckets add-iam-policy-binding gs://${BUCKET} --member=serviceAccount:${AGENT} --role=roles/storage.objectAdmin`);
    expect(check(data, "trainer-import")).toMatchObject({ status: "ok" });
    expect(check(data, "smoke-job")).toMatchObject({ status: "ok" });
    expect(data.smoke.state).toBe("failed");
    expect(data.healthy).toBe(false);
    expect(await smokeObjects()).toEqual([]);
  }, LONG);

  it("a refused CreateCustomJob fails smoke-job with the role to grant; the rest is not checked and the probe is removed", async () => {
    vertex.failNext("CreateCustomJob", { code: 7, message: "Permission 'aiplatform.customJobs.create' denied on resource", reason: "IAM_PERMISSION_DENIED" });
    const result = await smoke();
    expect(result.code, result.stderr).toBe(0);
    const data = result.json!.data;
    expect(check(data, "smoke-job")).toMatchObject({ status: "fail" });
    expect(check(data, "smoke-job")!.hint).toContain("roles/aiplatform.user");
    expect(check(data, "bucket-mount")).toMatchObject({ status: "warn", message: "not checked: the smoke job was not created" });
    expect(data.smoke).not.toHaveProperty("approxUsd");
    expect(await smokeObjects()).toEqual([]);
  }, LONG);

  it("quota 0 in the region fails with the console link; a disabled Cloud Quotas API is a warning with the command to enable it", async () => {
    vertex.failNext("CreateCustomJob", { code: 7, message: "denied" }); // keep this test to the quota read
    quotas.limits = { custom_model_training_nvidia_l4_gpus: 0, custom_model_training_preemptible_nvidia_l4_gpus: 1, custom_model_serving_nvidia_l4_gpus: 1, custom_model_training_cpus: 8 };
    const zero = (await smoke()).json!.data;
    expect(check(zero, "quota-training-l4")).toMatchObject({ status: "fail", message: `custom_model_training_nvidia_l4_gpus = 0 in ${REGION}: training on one L4 needs 1` });
    expect(check(zero, "quota-training-l4")!.hint).toContain(`https://console.cloud.google.com/iam-admin/quotas?project=${PROJECT}&service=aiplatform.googleapis.com&metric=aiplatform.googleapis.com%2Fcustom_model_training_nvidia_l4_gpus`);
    expect(check(zero, "quota-serving-l4")).toMatchObject({ status: "ok" });
    // Two pages, read without credentials (the fake's endpoint variable), the second by its token.
    const reads = quotas.requests.slice(-2);
    expect(reads.map((r) => new URL(r.url, "http://x").searchParams.get("pageToken"))).toEqual([null, "p2"]);
    expect(reads.every((r) => r.authorization === undefined)).toBe(true);

    vertex.failNext("CreateCustomJob", { code: 7, message: "denied" });
    quotas.failWith = { status: 403, body: { error: { code: 403, status: "PERMISSION_DENIED", message: "Cloud Quotas API has not been used in project avatar-test before or it is disabled.", details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "SERVICE_DISABLED" }] } } };
    try {
      const disabled = (await smoke()).json!.data;
      expect(check(disabled, "quotas")).toMatchObject({ status: "warn", hint: `gcloud services enable cloudquotas.googleapis.com --project ${PROJECT}` });
      expect(check(disabled, "quota-training-l4")).toBeUndefined();
    } finally {
      quotas.failWith = undefined;
    }
  }, LONG);

  it("Ctrl-C cancels the smoke job (ours, CPU only), removes the probe and exits 130", async () => {
    const child = spawn(process.execPath, [cliPath, "doctor", "--smoke", ...flags], { cwd: home, env: spawnEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const cancels = vertex.requests("CancelCustomJob").length;
    await nextJobCreated(exited).catch((error) => {
      throw new Error(`${(error as Error).message}:\n${stderr}`);
    });
    await new Promise((r) => setTimeout(r, 300)); // the CLI has the job's name and is waiting
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/Still running: smoke job \d+ \(CPU only\); cancelling it/);
    expect(stderr).toMatch(/cancelled smoke job \d+/);
    expect(vertex.requests("CancelCustomJob")).toHaveLength(cancels + 1);
    expect(await smokeObjects()).toEqual([]);
  }, LONG);

  it("the local backend has no smoke test: exit 2 with a hint", async () => {
    const result = await runCli(["doctor", "--smoke", "--json", "--backend", "local"], { env, cwd: home });
    expect(result.code).toBe(2);
    expect(result.json!.error).toMatchObject({ code: "USAGE" });
    expect(result.json!.error!.hint).toContain("--backend vertex");
  });
});
