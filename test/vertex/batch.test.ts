// generate --no-endpoint through the built CLI: a Vertex BatchPredictionJob over the JSONL of the
// images in the bucket, run by the fake with the real handler (test/support/vertex-fake/batch.ts),
// against what online generation on a deployed endpoint writes for the same seeds.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, cliPath, repoRoot, runCli, spawnEnv, type CliResult } from "../support/cli.ts";
import { fetchObject } from "../support/vertex-fake.ts";
import { PROJECT, REGION, startVertexWorld, tinyBase, type VertexWorld } from "./helpers.ts";

const LONG = 10 * 60_000;
const BUCKET = "avatar-vx-batch";
const NAME = "nova";
const parent = `projects/${PROJECT}/locations/${REGION}`;
/** Small images, one step: quick on a CPU. */
const FAST = ["--steps", "1", "--width", "256", "--height", "256"];

let world: VertexWorld;
let home: string;
let env: Record<string, string | undefined>;

const vertex = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
const cli = (args: string[]) => runCli([...args, ...vertex], { env, cwd: home, timeoutMs: LONG });

function ok(result: CliResult): any {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
  expect(result.json?.ok).toBe(true);
  expect(result.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
  return result.json!.data;
}

function failed(result: CliResult, exit: number) {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(exit);
  expect(result.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
  return result.json!.error!;
}

/** Object names under a prefix of the bucket (names only: the trained weights stay where they are). */
async function keysUnder(prefix: string): Promise<string[]> {
  const [files] = await world.gcs.storage().bucket(BUCKET).getFiles({ prefix });
  return files.map((f) => f.name).sort();
}

/** The files of an output folder, name → bytes. */
const folder = (dir: string) => new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f))]));

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-vx-batch-"));
  const photos = join(home, "photos");
  let base: string;
  [world, base] = await Promise.all([startVertexWorld(BUCKET), tinyBase(), writeSyntheticSelfies(photos, 6, 44)]);
  env = cleanEnv(home, world.env);
  ok(await cli(["train", photos, "--name", NAME, "--base", base, "--steps", "2", "--resolution", "64", "--rank", "4", "--json"]));
}, LONG);

afterAll(async () => {
  await world?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("generate --no-endpoint", () => {
  it("--dry-run --json: a CreateBatchPredictionJob of the model version, JSONL input, the GPU machine, and the estimate; nothing sent", async () => {
    const result = await cli(["generate", NAME, "--pack", "headshots", "--no-endpoint", "--dry-run", "--json"]);
    const data = ok(result);
    expect(result.stderr).toMatch(new RegExp(`Batch job for ${NAME} on .*: \\d+ images in ≈ .*, ≈ \\$[\\d.]+–[\\d.]+, no endpoint left running \\(estimate`));
    const [upload, create] = data.requests;
    const stamp = data.stamp;
    expect(upload).toMatchObject({ service: "Cloud Storage", method: "upload", request: { objects: [`gs://${BUCKET}/avatar/${NAME}/outputs/${stamp}/input.jsonl`, `gs://${BUCKET}/avatar/${NAME}/outputs/${stamp}/request.json`] } });
    expect(create).toMatchObject({ service: "JobService", method: "CreateBatchPredictionJob", request: { parent } });
    const job = create.request.batchPredictionJob;
    expect(job.model).toBe(`${parent}/models/avatar-${NAME}@1`);
    expect(job.inputConfig).toEqual({ instancesFormat: "jsonl", gcsSource: { uris: [`gs://${BUCKET}/avatar/${NAME}/outputs/${stamp}/input.jsonl`] } });
    expect(job.outputConfig).toEqual({ predictionsFormat: "jsonl", gcsDestination: { outputUriPrefix: `gs://${BUCKET}/avatar/${NAME}/outputs/${stamp}/` } });
    expect(job.dedicatedResources).toEqual({ machineSpec: { machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 }, startingReplicaCount: 1, maxReplicaCount: 1 });
    expect(job.manualBatchTuningParameters).toEqual({ batchSize: 1 });
    expect(job.modelParameters).toEqual({ format: "jpeg" });
    expect(job.labels).toMatchObject({ avatar: NAME, "avatar-batch": stamp, "managed-by": "avatar-cli" });
    const pack = JSON.parse(readFileSync(join(repoRoot, "templates", "packs", "headshots.json"), "utf8"));
    expect(data.planned).toBe(pack.prompts.length);
    expect(data.estimate).toMatchObject({ kind: "batch", images: pack.prompts.length, gpu: "l4", spot: false, machineType: "g2-standard-8", estimate: true });
    expect(data.estimate.usd.low).toBeGreaterThan(0);
    expect(data.estimate.usd.high).toBeGreaterThan(data.estimate.usd.low);
    expect(world.fake.requests("CreateBatchPredictionJob")).toEqual([]);
    expect(await keysUnder(`avatar/${NAME}/outputs/`)).toEqual([]);

    const human = await cli(["generate", NAME, "x", "--no-endpoint", "--dry-run", "--gpu", "t4", "--spot"]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain("JobService (v1beta1).CreateBatchPredictionJob");
    expect(human.stdout).toContain('"machineType": "n1-standard-8"');
    expect(human.stdout).toContain('"spot": true');
    expect(human.stderr).toMatch(/Batch job for nova on n1-standard-8 \+ 1× NVIDIA T4, Spot: 1 image in ≈ /);
    expect(human.stdout).not.toMatch(/Batch job for/);
  }, LONG);

  it("--dry-run without Google credentials plans the same request (model @default) and says what it could not check", async () => {
    const bare = cleanEnv(mkdtempSync(join(tmpdir(), "avatar-noadc-")));
    const result = await runCli(["generate", "alice", "--pack", "headshots", "--no-endpoint", "--dry-run", "--json", "--backend", "vertex", "--project", "my-proj", "--bucket", "my-bucket"], { env: bare, cwd: home, timeoutMs: LONG });
    const data = ok(result);
    const job = data.requests[1].request.batchPredictionJob;
    expect(job).toMatchObject({ model: "projects/my-proj/locations/us-central1/models/avatar-alice@default", inputConfig: { instancesFormat: "jsonl" } });
    expect(job.dedicatedResources.machineSpec).toEqual({ machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 });
    expect(result.stderr).toMatch(/warning: Planned without Google credentials: not checked registered models, earlier generations in the bucket;/);
    expect(result.stderr).not.toMatch(/MetadataLookupWarning|Could not load the default credentials/);
  }, LONG);

  it("an avatar without an endpoint: generate suggests --no-endpoint with its estimate next to deploying's", async () => {
    const error = failed(await cli(["generate", NAME, "x", "y", "--json"]), 6);
    expect(error.message).toBe(`${NAME} is not deployed.`);
    expect(error.hint).toMatch(/^Run `avatar deploy nova` \(ready in ≈ 15–25 min, then ≈ \$\d+\.\d\d\/h until `avatar down nova`\) first, or add --no-endpoint: a batch job makes these 2 images with nothing left running \(≈ \d+–\d+ min, ≈ \$\d+\.\d+–\d+\.\d+; estimates/);
  }, LONG);

  it("a batch job writes the same files as online generation with the same seeds (names, seeds, image bytes) and keeps them in the bucket", async () => {
    const args = ["generate", NAME, "{avatar} smiling", "{avatar} at the beach", "--seed", "40", ...FAST, "--json"];
    const started = Date.now();
    const batch = ok(await cli([...args, "--no-endpoint", "--out", "batch"]));
    const seconds = (Date.now() - started) / 1000;
    console.log(`batch generation of 2 images against the fake: ${seconds.toFixed(1)} s`);
    expect(batch.job).toMatchObject({ name: NAME, stamp: batch.stamp, state: "succeeded", counts: { succeeded: 2, failed: 0 } });
    expect(batch.estimate).toMatchObject({ kind: "batch", images: 2 });
    expect(batch.failed).toEqual([]);

    // What the fake's container got: one line per request, with its own parameters (and the job's).
    const [create] = world.fake.requests("CreateBatchPredictionJob");
    expect(create.batchPredictionJob.manualBatchTuningParameters.batchSize).toBe(1);
    const prefix = `avatar/${NAME}/outputs/${batch.stamp}/`;
    const kept = (await keysUnder(prefix)).map((k) => k.slice(prefix.length));
    expect(kept).toEqual([
      "01-smiling-40.jpg",
      "02-at-the-beach-41.jpg",
      "contact-sheet.jpg",
      "images.json",
      "input.jsonl",
      expect.stringMatching(/^prediction-avatar-nova-\d{4}_\d\d_\d\dT\d\d_\d\d_\d\d_\d{3}Z\/prediction\.results-00000-of-00001$/),
      "request.json",
    ]);
    const input = (await fetchObject(world.gcs.endpoint, BUCKET, `${prefix}input.jsonl`)).toString().trim().split("\n").map((l) => JSON.parse(l));
    expect(input).toEqual([
      { prompt: "{avatar} smiling", parameters: { steps: 1, width: 256, height: 256, format: "jpeg", num_images: 1, seed: 40 } },
      { prompt: "{avatar} at the beach", parameters: { steps: 1, width: 256, height: 256, format: "jpeg", num_images: 1, seed: 41 } },
    ]);

    // The same request online, on a deployed endpoint.
    ok(await cli(["deploy", NAME, "--json"]));
    const online = ok(await cli([...args, "--out", "online"]));
    ok(await cli(["down", NAME, "--json"]));

    const [a, b] = [folder(batch.dir), folder(online.dir)];
    expect([...a.keys()]).toEqual(["01-smiling-40.jpg", "02-at-the-beach-41.jpg", "contact-sheet.jpg", "images.json"]);
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [name, bytes] of a) expect(bytes.equals(b.get(name)!), name).toBe(true);
    expect(JSON.parse(a.get("images.json")!.toString()).images.map((i: { seed: number }) => i.seed)).toEqual([40, 41]);
    expect(batch.images.map((i: { file: string }) => basename(i.file))).toEqual(online.images.map((i: { file: string }) => basename(i.file)));
    const meta = await sharp(join(batch.dir, "01-smiling-40.jpg")).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["jpeg", 256, 256]);
  }, LONG);

  it("an image the handler refuses is reported with its error; the others are written; all refused exits 3", async () => {
    const long = `{avatar} ${"very ".repeat(200)}long`;
    const result = await cli(["generate", NAME, "{avatar} smiling", long, "--seed", "7", ...FAST, "--no-endpoint", "--json"]);
    const data = ok(result);
    expect(data.images.map((i: { file: string }) => basename(i.file))).toEqual(["01-smiling-7.jpg"]);
    expect(data.failed).toEqual([{ position: 2, prompt: long, seed: 8, error: expect.stringMatching(/Non-OK result 400 .*instances\[0\]\.prompt is too long: 1013 characters/) }]);
    expect(data.job.phase).toBe("partially_succeeded");
    expect(result.stderr).toMatch(/warning: image 2 \(\{avatar\} very .*, seed 8\) failed: Post request fails\. .*too long/);
    expect(JSON.parse(readFileSync(join(data.dir, "images.json"), "utf8")).images).toHaveLength(1);

    const all = failed(await cli(["generate", NAME, long, ...FAST, "--no-endpoint", "--json"]), 3);
    expect(all.code).toBe("REMOTE_FAILED");
    expect(all.message).toMatch(/^Batch job \d+ failed: no image came back \(.*too long/);
  }, LONG);

  it("Ctrl-C detaches (the Spot job goes on through v1beta1); status shows it; --collect writes its images", async () => {
    const child = spawn(process.execPath, [cliPath, "generate", NAME, "{avatar} in the snow", "--seed", "3", ...FAST, "--no-endpoint", "--spot", ...vertex], { cwd: home, env: spawnEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await new Promise<void>((resolve) => child.stderr.on("data", (d) => ((stderr += d), /Launched batch job/.test(stderr) && resolve())));
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/Interrupted; batch job \d+ keeps running on Vertex AI/);
    const stamp = /--collect (\S+)`/.exec(stderr)![1]!;
    const spot = world.fake.calls.filter((c) => c.method === "CreateBatchPredictionJob").at(-1)!.request;
    expect(spot.batchPredictionJob.dedicatedResources.spot).toBe(true);

    const status = ok(await cli(["status", NAME, "--json"]));
    const job = status.batches.find((b: { stamp: string }) => b.stamp === stamp);
    expect(job).toMatchObject({ name: NAME, stamp, counts: expect.any(Object) });
    expect(["queued", "running", "succeeded"]).toContain(job.state);
    const human = await cli(["status", NAME]);
    expect(human.stdout).toMatch(new RegExp(`${stamp} +(pending|running|succeeded) +\\d done, 0 failed`));

    const collected = ok(await cli(["generate", NAME, "--collect", stamp, "--json"]));
    expect(collected.images.map((i: { file: string }) => basename(i.file))).toEqual(["01-in-the-snow-3.jpg"]);
    expect(collected.job.state).toBe("succeeded");
    expect(collected.stored.uri).toBe(`gs://${BUCKET}/avatar/${NAME}/outputs/${stamp}/`);
  }, LONG);

  it("flags that only make sense with --no-endpoint, --collect with prompts, and the local backend: exit 2 with a hint", async () => {
    expect(failed(await cli(["generate", NAME, "x", "--spot", "--json"]), 2).message).toBe("--spot is for --no-endpoint.");
    expect(failed(await cli(["generate", NAME, "x", "--collect", "20260101-000000", "--json"]), 2).message).toMatch(/--collect takes no prompts/);
    const local = await runCli(["generate", NAME, "x", "--no-endpoint", "--json", "--backend", "local"], { env, cwd: home, timeoutMs: LONG });
    const error = failed(local, 2);
    expect(error.message).toMatch(/`--no-endpoint` is for the vertex backend: the local backend serves on this machine without cost/);
    expect(error.hint).toMatch(/avatar deploy nova/);
  }, LONG);
});
