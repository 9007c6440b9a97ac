// The vertex backend through the built CLI, against a fake that behaves like real Vertex where the
// two differ (research/vertex-real-behaviour.md): transient faults in long waits, handler errors as
// FAILED_PRECONDITION, the 60 s limit, Spot preemption, deployments in flight, serving quota, and
// no credentials at all.
import { spawn } from "node:child_process";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, cliPath, runCli, type CliResult } from "../support/cli.ts";
import { venvPython } from "../support/vertex-fake.ts";
import { objectsUnder, PROJECT, REGION, startVertexWorld, tinyBase, type VertexWorld } from "./helpers.ts";

const LONG = 10 * 60_000;
const BUCKET = "avatar-vx-real";
let world: VertexWorld;
let home: string;
let photos: string;
let base: string;
let env: Record<string, string | undefined>;

const vertex = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
const cli = (args: string[], extraEnv: Record<string, string> = {}) => runCli([...args, ...vertex], { env: { ...env, ...extraEnv }, cwd: home, timeoutMs: LONG });
const trainArgs = (name: string) => ["train", photos, "--name", name, "--base", base, "--steps", "4", "--resolution", "64", "--rank", "4", "--checkpoint-every", "2"];

function ok(result: CliResult): any {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
  expect(result.json?.ok).toBe(true);
  return result.json!.data;
}

function failed(result: CliResult, exit: number): NonNullable<NonNullable<CliResult["json"]>["error"]> {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(exit);
  expect(result.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
  return result.json!.error!;
}

/** Runs the CLI in the background; resolves once stderr shows `ready`, then Ctrl-C ends it. */
async function interruptWhen(args: string[], ready: (stderr: string) => boolean): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [cliPath, ...args, ...vertex], { cwd: home, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`never ready:\n${stderr}`)), LONG);
    child.stderr.on("data", (d) => {
      stderr += d;
      if (ready(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.kill("SIGINT");
  return { code: await exited, stderr };
}

/** Max |a - b| over the tensors of two safetensors files, computed by torch in the venv. */
function maxDifference(a: string, b: string): number {
  const script = "import sys, torch; from safetensors.torch import load_file as l; x, y = l(sys.argv[1]), l(sys.argv[2]); assert x.keys() == y.keys(), 'keys differ'; print(max(float((x[k] - y[k]).abs().max()) for k in x))";
  const run = spawnSync(venvPython(), ["-c", script, a, b], { encoding: "utf8" });
  expect(run.status, run.stderr).toBe(0);
  return Number(run.stdout.trim());
}

async function weightsOf(name: string, runId: string): Promise<string> {
  const objects = await objectsUnder(world.gcs, BUCKET, `avatar/${name}/runs/${runId}/model/pytorch_lora_weights.safetensors`);
  const file = join(home, `${name}-${runId}.safetensors`);
  writeFileSync(file, [...objects.values()][0]!);
  return file;
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-vx-real-"));
  photos = join(home, "photos");
  [world, base] = await Promise.all([startVertexWorld(BUCKET), tinyBase(), writeSyntheticSelfies(photos, 6, 33)]);
  env = cleanEnv(home, world.env);
}, LONG);

afterAll(async () => {
  await world?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("long waits survive transient faults", () => {
  it("3 × UNAVAILABLE on GetCustomJob and 2 × INTERNAL on GetOperation: train finishes and registers; -v shows one line per retry", async () => {
    world.fake.failNext("GetCustomJob", { code: 14, message: "The service is currently unavailable.", times: 3 });
    // gax itself retries GetOperation on UNAVAILABLE and DEADLINE_EXCEEDED (operations_client_config.json); not on INTERNAL.
    world.fake.failNext("GetOperation", { code: 13, message: "Internal error encountered.", times: 2 });
    const result = await cli([...trainArgs("alice"), "--json", "-v"]);
    const data = ok(result);
    expect(data.job.state).toBe("succeeded");
    expect(data.registered).toMatchObject({ created: true, version: { versionId: "1" } });
    const retries = result.stderr.split("\n").filter((l) => /^retry \d\/7 /.test(l));
    expect(retries.filter((l) => /reading training job .*: The service is currently unavailable\./.test(l))).toHaveLength(3);
    expect(retries.filter((l) => /reading operation .*: Internal error encountered\./.test(l))).toHaveLength(2);
  }, LONG);

  it("a fault that does not pass ends the command after 8 tries with exit 3", async () => {
    const [run] = ok(await cli(["status", "alice", "--json"])).runs;
    world.fake.failNext("GetCustomJob", { code: 14, message: "still down", times: 8 });
    const before = world.fake.requests("GetCustomJob").length;
    const result = await cli(["logs", "alice", "--run", run.runId, "--json"]);
    const error = failed(result, 3);
    expect(error).toMatchObject({ code: "UNAVAILABLE" });
    expect(error.message).toMatch(/still down/);
    expect(world.fake.requests("GetCustomJob").length - before).toBe(8);
  }, LONG);
});

describe("serving errors as real Vertex sends them", () => {
  it("deploy; a request the handler refuses (code 9 with the container's message) exits 2 with that message, not 'not deployed'", async () => {
    ok(await cli(["deploy", "alice", "--json"]));
    const bad = await cli(["generate", "alice", "x", "--steps", "1000", "--json"]);
    const error = failed(bad, 2);
    expect(error.code).toBe("BAD_INPUT");
    expect(error.message).toMatch(/^The model rejected the request: .*steps/);
    expect(error.message).not.toMatch(/not deployed|\{"error"/);
  }, LONG);

  it("an image that takes longer than the endpoint's limit answers UNAVAILABLE: exit 3 with its own message", async () => {
    // The endpoint is dedicated (the default): its limit is the inference timeout deploy set, 300 s.
    world.fake.setPredictTimeout(300, "dedicated");
    try {
      const slow = await cli(["generate", "alice", "x", "--steps", "40", "--width", "512", "--height", "512", "--json"]);
      const error = failed(slow, 3);
      expect(error.message).toMatch(/took longer than the endpoint's 300 s limit/);
      expect(error.hint).toMatch(/fewer steps/);
    } finally {
      world.fake.setPredictTimeout(undefined, "dedicated");
    }
    // The server behind it is free again: a small request still gets its image.
    const data = ok(await cli(["generate", "alice", "x", "--steps", "1", "--width", "256", "--height", "256", "--json"]));
    expect(data.images).toHaveLength(1);
  }, LONG);
});

describe("deployments in flight and serving quota", () => {
  it("Ctrl-C during a deploy leaves a recorded operation: status shows it, deploy follows it instead of starting another", async () => {
    ok(await cli(["down", "alice", "--json"]));
    world.fake.setDeployDelay(6000);
    const before = world.fake.requests("DeployModel").length;
    const stopped = await interruptWhen(["deploy", "alice"], (stderr) => /creating serving cluster|adding nodes|preparing model/i.test(stderr));
    world.fake.setDeployDelay(0);
    expect(stopped.code).toBe(130);
    expect(stopped.stderr).toMatch(/Still running: the alice endpoint/);
    const record = await objectsUnder(world.gcs, BUCKET, "avatar/alice/serving/");
    expect([...record.keys()]).toEqual(["avatar/alice/serving/deploy-operation.json"]);

    const status = ok(await cli(["status", "alice", "--json"]));
    expect(status.endpoint).toMatchObject({ state: "deploying", deploying: { versionId: "1" } });
    const human = await cli(["status", "alice"]);
    expect(human.stdout).toMatch(/deploying: version 1 since .*avatar down alice/);

    const followed = await cli(["deploy", "alice", "--json"]);
    expect(ok(followed).endpoint).toMatchObject({ state: "ready", modelVersion: "1" });
    expect(world.fake.requests("DeployModel").length).toBe(before + 1);
    expect((await objectsUnder(world.gcs, BUCKET, "avatar/alice/serving/")).size).toBe(0);
  }, LONG);

  it("down cancels a deployment in flight, waits for it, and leaves nothing serving", async () => {
    ok(await cli(["down", "alice", "--json"]));
    world.fake.setDeployDelay(60_000);
    const stopped = await interruptWhen(["deploy", "alice"], (stderr) => /creating serving cluster|adding nodes|preparing model/i.test(stderr));
    world.fake.setDeployDelay(0);
    expect(stopped.code).toBe(130);
    const plan = ok(await cli(["down", "alice", "--dry-run", "--json"]));
    expect(plan.requests[0]).toMatchObject({ service: "Operations", method: "CancelOperation" });
    const down = await cli(["down", "alice", "--json"]);
    expect(ok(down)).toMatchObject({ stopped: true });
    expect(down.stderr).toMatch(/cancelling the deployment of v1/);
    expect(world.fake.calls.filter((c) => c.method === "CancelOperation")).toHaveLength(1);
    expect(world.fake.runningServers()).toEqual([]);
    expect(ok(await cli(["status", "alice", "--json"])).endpoint).toBeUndefined();
  }, LONG);

  it("a redeploy refused for serving quota says so and offers --replace; --replace undeploys first and serves the new version", async () => {
    ok(await cli(["deploy", "alice", "--json"]));
    // Version 2: the same weights under another run id, imported from a folder.
    const model = await objectsUnder(world.gcs, BUCKET, "avatar/alice/runs/");
    const folder = join(home, "v2");
    mkdirSync(folder, { recursive: true });
    for (const [key, body] of model) {
      const file = key.split("/").at(-1)!;
      if (!key.includes("/model/") || !["avatar.json", "pytorch_lora_weights.safetensors"].includes(file)) continue;
      writeFileSync(join(folder, file), file === "avatar.json" ? JSON.stringify({ ...JSON.parse(body.toString()), run_id: "20260101-000002" }) : body);
    }
    expect(ok(await cli(["register", "--name", "alice", "--artifact-uri", folder, "--json"])).version.versionId).toBe("2");
    world.fake.setServingGpuQuota(1);
    try {
      const refused = failed(await cli(["deploy", "alice", "--json"]), 5);
      expect(refused.message).toMatch(/serving GPU quota is used up/);
      expect(refused.hint).toMatch(/--replace to undeploy v1 first/);
      expect(refused.hint).toMatch(/custom_model_serving_nvidia_l4_gpus/);
      expect(ok(await cli(["status", "alice", "--json"])).endpoint).toMatchObject({ state: "ready", modelVersion: "1" });

      const replaced = await cli(["deploy", "alice", "--replace", "--json"]);
      expect(ok(replaced).endpoint).toMatchObject({ state: "ready", modelVersion: "2" });
      expect(world.fake.runningServers()).toHaveLength(1);
    } finally {
      world.fake.setServingGpuQuota(undefined);
    }
    ok(await cli(["down", "alice", "--json"]));
  }, LONG);
});

describe("Spot training that really resumes", () => {
  it("a Spot job preempted after a checkpoint ends failed; the same train resumes it (same run id) and ends with the model an uninterrupted run makes", async () => {
    world.fake.preemptNext({ afterCheckpoints: 1 });
    const first = await cli([...trainArgs("sunny"), "--spot", "--json"]);
    const error = failed(first, 3);
    expect(error.message).toMatch(/preempted/);
    expect(error.hint).toMatch(/Run the same `avatar train` again to resume from the checkpoint at step \d/);
    const [job] = ok(await cli(["status", "sunny", "--json"])).runs;
    expect(job.state).toBe("failed");
    // What a re-run would do, planned: the same options resume this run; changed ones (whose
    // checkpoints would not fit) start a new run instead of a job that fails on them.
    expect(ok(await cli([...trainArgs("sunny"), "--spot", "--dry-run", "--json"])).job.runId).toBe(job.runId);
    const other = ok(await cli([...trainArgs("sunny"), "--spot", "--lr", "0.0002", "--dry-run", "--json"]));
    expect(other.job.runId).not.toBe(job.runId);

    const again = await cli([...trainArgs("sunny"), "--spot", "--json"]);
    const data = ok(again);
    expect(data.job.runId).toBe(job.runId);
    expect(data.resumed).toBe(true);
    expect(again.stderr).toMatch(new RegExp(`Resuming run ${job.runId} of sunny from its checkpoint at step \\d \\(the previous job failed: .*preempted`));
    const created = world.fake.requests("CreateCustomJob").filter((r) => r.customJob.labels.avatar === "sunny");
    expect(created).toHaveLength(2);
    expect(created[1].customJob.jobSpec.baseOutputDirectory).toEqual(created[0].customJob.jobSpec.baseOutputDirectory);
    const log = (await cli(["logs", "sunny", "--run", job.runId])).stdout;
    expect(log).toMatch(/phase=resume step=\d/);

    // The same photos and options without interruption (another avatar name: a fresh run).
    const straight = ok(await cli([...trainArgs("steady"), "--json"]));
    expect(maxDifference(await weightsOf("sunny", job.runId), await weightsOf("steady", straight.job.runId))).toBeLessThan(1e-5);
  }, LONG);
});

describe("Vertex cannot load a base from this machine", () => {
  it("register on real Vertex refuses an avatar.json whose base is a local directory, before writing anything", async () => {
    const adc = join(home, "adc.json");
    writeFileSync(adc, JSON.stringify({ type: "authorized_user" }));
    const before = world.fake.requests("UploadModel").length;
    const real = { AVATAR_VERTEX_ENDPOINT: "", GOOGLE_APPLICATION_CREDENTIALS: adc };
    const [run] = ok(await cli(["status", "alice", "--json"])).runs;
    const handlerBefore = (await objectsUnder(world.gcs, BUCKET, `avatar/alice/runs/${run.runId}/model/handler.py`)).get(`avatar/alice/runs/${run.runId}/model/handler.py`);
    await world.gcs.storage().bucket(BUCKET).file(`avatar/alice/runs/${run.runId}/model/handler.py`).delete();
    const error = failed(await cli(["register", "--name", "alice", "--run", run.runId, "--json"], real), 2);
    expect(error.message).toMatch(/not a Hugging Face Hub id/);
    expect((await objectsUnder(world.gcs, BUCKET, `avatar/alice/runs/${run.runId}/model/handler.py`)).size).toBe(0);
    expect(world.fake.requests("UploadModel").length).toBe(before);
    await world.gcs.storage().bucket(BUCKET).file(`avatar/alice/runs/${run.runId}/model/handler.py`).save(handlerBefore!);

    const folder = join(home, "v2");
    const imported = failed(await cli(["register", "--name", "alice", "--artifact-uri", folder, "--json"], real), 2);
    expect(imported.message).toMatch(/base_model .* not a Hugging Face Hub id/);
    expect(imported.hint).toMatch(/Retrain it on sdxl, sd15 or a Hub id/);
  }, LONG);
});

describe("first contact without credentials", () => {
  const bare = () => cleanEnv(mkdtempSync(join(tmpdir(), "avatar-noadc-")));
  const offline = ["--backend", "vertex", "--project", "my-proj", "--bucket", "my-bucket"];
  const bareCli = (args: string[]) => runCli([...args, ...offline], { env: bare(), cwd: home, timeoutMs: 120_000 });

  it("train --dry-run --json plans the requests, says in one line what it could not check, and exits 0", async () => {
    const result = await bareCli(["train", photos, "--name", "alice", "--base", "sd15", "--dry-run", "--json"]);
    const data = ok(result);
    expect(data.requests.map((r: { method: string }) => r.method)).toEqual(["upload", "CreateCustomJob"]);
    expect(data.requests[1].request.customJob.jobSpec.workerPoolSpecs[0].containerSpec.args).toEqual(expect.arrayContaining(["--base", "stable-diffusion-v1-5/stable-diffusion-v1-5"]));
    const warnings = result.stderr.split("\n").filter((l) => /credentials/.test(l));
    // Earlier training runs come first: they hold the avatar's remembered --class-word.
    expect(warnings).toEqual([expect.stringMatching(/^warning: Planned without Google credentials: not checked earlier training runs, whether the dataset is already in the bucket, whether the trainer package is in the bucket;/)]);
    expect(result.stderr).not.toMatch(/MetadataLookupWarning|Could not load the default credentials/);
  }, LONG);

  it("deploy, down and register --dry-run plan too; a command that would send anything says in one line what to do (exit 4)", async () => {
    const deploy = ok(await bareCli(["deploy", "alice", "--dry-run", "--json"]));
    expect(deploy.requests.map((r: { method: string }) => r.method)).toEqual(["CreateEndpoint", "DeployModel"]);
    expect(deploy.requests[1].request.deployedModel.model).toBe("projects/my-proj/locations/us-central1/models/avatar-alice@default");
    const down = ok(await bareCli(["down", "alice", "--dry-run", "--json"]));
    expect(down.requests.map((r: { method: string }) => r.method)).toEqual(["UndeployModel", "DeleteEndpoint"]);
    const register = ok(await bareCli(["register", "--name", "alice", "--run", "20260101-000001", "--dry-run", "--json"]));
    expect(register.requests.at(-1)).toMatchObject({ method: "UploadModel", request: { modelId: "avatar-alice" } });

    const status = await bareCli(["status", "alice", "--json"]);
    const error = failed(status, 4);
    expect(error.message).toBe("No Google credentials: no Application Default Credentials found.");
    expect(error.hint).toMatch(/gcloud auth application-default login/);
  }, LONG);

  it("doctor says it once and does not wait on the metadata server", async () => {
    const result = await bareCli(["doctor", "--json"]);
    const checks = ok(result).checks as { name: string; status: string; message: string }[];
    expect(checks.find((c) => c.name === "credentials")).toMatchObject({ status: "fail" });
    expect(checks.find((c) => c.name === "bucket")).toMatchObject({ status: "warn", message: "gs://my-bucket not checked: no credentials" });
    expect(result.stderr).not.toMatch(/MetadataLookupWarning/);
  }, LONG);
});
