// Cost before every paid action, billing so far, and promotion for CI, through the CLI against
// fake-gcs-server and the Vertex fake: estimates in --json (train, deploy), a refused terminal
// confirmation changes nothing, aliases move and show in `status --json`, cancel, down --all.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, runCli, type CliResult } from "../support/cli.ts";
import { PROJECT, REGION, startVertexWorld, tinyBase, type VertexWorld } from "./helpers.ts";

const LONG = 10 * 60_000;
const BUCKET = "avatar-vx-costs";
const parent = `projects/${PROJECT}/locations/${REGION}`;
const MUTATING = ["CreateCustomJob", "CancelCustomJob", "UploadModel", "MergeVersionAliases", "CreateEndpoint", "DeployModel", "UndeployModel", "DeleteEndpoint"];

let world: VertexWorld;
let home: string;
let photos: string;
let base: string;
let env: Record<string, string | undefined>;

const vertex = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
const cli = (args: string[]) => runCli([...args, ...vertex], { env, cwd: home, timeoutMs: LONG });
const trainArgs = (name: string, steps = "4") => ["train", photos, "--name", name, "--base", base, "--steps", steps, "--resolution", "64", "--rank", "4", "--checkpoint-every", "2"];
const mutatingCalls = () => world.fake.calls.filter((c) => MUTATING.includes(c.method)).map((c) => c.method);

function ok(result: CliResult): any {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
  expect(result.json?.ok).toBe(true);
  return result.json!.data;
}

/**
 * The CLI in-process on a scripted terminal (stdin and stderr claim to be TTYs, as in
 * test/foundation/prompts.test.ts): once stderr shows `question`, `answer` is typed.
 */
async function onTerminal(args: string[], question: RegExp, answer: string): Promise<{ code: number; stderr: string; asked: boolean }> {
  const { main } = await import("../../src/main.ts");
  const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => stdin });
  // Like process.stderr, never ended by a prompt that pipes into it and ends its own stream.
  const stderr: PassThrough = Object.assign(new PassThrough(), { isTTY: true, columns: 200, end: () => stderr });
  stdin.setMaxListeners(0); // every prompt adds its own key listeners
  let shown = "";
  let asked = false;
  stderr.on("data", (chunk) => {
    shown += chunk;
    if (!asked && question.test(shown)) {
      asked = true;
      setImmediate(() => stdin.write(answer)); // the prompt listens for keys only after it has drawn the question
    }
  });
  const code = await main([...args, ...vertex], { streams: { stdin, stdout: new PassThrough(), stderr }, env: { ...env } as NodeJS.ProcessEnv, cwd: home });
  return { code, stderr: shown, asked };
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-vx-costs-"));
  photos = join(home, "photos");
  [world, base] = await Promise.all([startVertexWorld(BUCKET), tinyBase(), writeSyntheticSelfies(photos, 6, 44)]);
  env = cleanEnv(home, world.env);
}, LONG);

afterAll(async () => {
  await world?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("cost before every paid action", () => {
  it("train --dry-run: the estimate (USD and hours, Spot or not) in --json and on stderr; nothing sent", async () => {
    const spot = await cli([...trainArgs("ada", "1000"), "--gpu", "l4", "--spot", "--dry-run", "--json"]);
    const e = ok(spot).estimate;
    expect(e).toMatchObject({ kind: "training", gpu: "l4", machineType: "g2-standard-8", accelerator: "NVIDIA_L4", spot: true, steps: 1000, estimate: true, pricingUrl: "https://cloud.google.com/vertex-ai/pricing" });
    expect(e.usd.low).toBeGreaterThan(0);
    expect(e.usd.high).toBeGreaterThan(e.usd.low);
    expect(e.hours).toEqual({ low: 0.75, high: 1.5 });
    expect(e.usd.high).toBeCloseTo(1.5 * e.usdPerHour, 2);
    expect(spot.stderr).toMatch(/Training ada on g2-standard-8 \+ 1× NVIDIA L4, Spot: ≈ 45–90 min, ≈ \$0\.\d\d–0\.\d\d \(estimate/);

    const onDemand = ok(await cli([...trainArgs("ada", "1000"), "--gpu", "t4", "--dry-run", "--json"])).estimate;
    expect(onDemand).toMatchObject({ gpu: "t4", machineType: "n1-standard-8", accelerator: "NVIDIA_TESLA_T4", spot: false });
    expect(onDemand.usdPerHour).toBeGreaterThan(e.usdPerHour); // T4 on-demand costs more per hour than an L4 on Spot
    expect(mutatingCalls()).toEqual([]);
  }, LONG);

  it("on a terminal, answering no to the training question uploads and launches nothing (exit 2)", async () => {
    // --class-word: the first train of an avatar on a terminal would ask for it before the cost.
    const r = await onTerminal([...trainArgs("tty"), "--class-word", "person"], /Train tty \(≈ \$/, "n\r");
    expect(r.asked, r.stderr).toBe(true);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/Train tty: not confirmed, so nothing was started or changed/);
    expect(mutatingCalls()).toEqual([]);
    expect(await world.gcs.objects(BUCKET)).toEqual(new Map());
  }, LONG);

  it("a script proceeds without --yes: train runs with its estimate in --json; deploy too", async () => {
    const trained = ok(await cli([...trainArgs("bea"), "--json"]));
    expect(trained.estimate).toMatchObject({ kind: "training", steps: 4, spot: false });
    expect(trained.registered).toMatchObject({ created: true, version: { versionId: "1" } });

    const dry = ok(await cli(["deploy", "bea", "--dry-run", "--json"]));
    expect(dry.estimate).toMatchObject({ kind: "deploy", gpu: "l4", readyInMinutes: { low: 15, high: 25 } });
    const deployed = await cli(["deploy", "bea", "--json"]);
    const data = ok(deployed);
    expect(data.estimate.usdPerHour).toBeCloseTo(0.98, 2);
    expect(data.estimate.usdPerDay).toBeCloseTo(data.estimate.usdPerHour * 24, 1);
    expect(deployed.stderr).toMatch(/Serving bea on g2-standard-8 \+ 1× NVIDIA L4, on-demand: ready in ≈ 15–25 min, then ≈ \$0\.98\/h/);
    expect(data.endpoint).toMatchObject({ state: "ready", modelVersion: "1" });
  }, LONG);

  it("on a terminal, answering no to the deploy question creates and deploys nothing", async () => {
    ok(await cli(["register", "--name", "bea", "--artifact-uri", await secondRun("bea", "20250505-050505"), "--json"]));
    const before = mutatingCalls().length;
    const r = await onTerminal(["deploy", "bea", "--model-version", "2"], /Deploy bea v2 \(≈ \$0\.98\/h until it is stopped\)/, "n\r");
    expect(r.asked, r.stderr).toBe(true);
    expect(r.code).toBe(2);
    expect(mutatingCalls()).toHaveLength(before);
    expect(ok(await cli(["status", "bea", "--json"])).endpoint).toMatchObject({ modelVersion: "1" });
  }, LONG);

  it("status and list: how long each endpoint has been deployed, its cost so far, the total per hour; generate reminds", async () => {
    const status = await cli(["status", "bea"]);
    expect(status.stdout).toMatch(/billing: deployed \d+m ago, ≈ \$0\.\d+ so far at list price \(≈ \$0\.98\/h\); `avatar down bea` stops it/);
    const billing = ok(await cli(["status", "bea", "--json"])).billing;
    expect(billing.usdPerHour).toBeCloseTo(0.98, 2);
    expect(Date.parse(billing.since)).toBeLessThanOrEqual(Date.now());
    expect(billing.usdSoFar).toBeCloseTo(billing.hours * billing.usdPerHour, 2);

    const list = ok(await cli(["list", "--json"]));
    expect(list.billing).toMatchObject({ endpoints: 1, trainingJobs: 0 });
    expect(list.billing.usdPerHour).toBeCloseTo(0.98, 2);
    const human = await cli(["list"]);
    expect(human.stdout).toMatch(/DEPLOYED, COST SO FAR/);
    expect(human.stdout.trim().split("\n").at(-3)).toMatch(/^Billing now: ≈ \$0\.98\/h at list price \(1 endpoint, 0 training jobs\)/);

    const args = ["generate", "bea", "{avatar}", "--steps", "1", "--width", "256", "--height", "256"];
    const reminder = "bea's endpoint bills ≈$0.98/h; `avatar down bea` stops it.";
    expect((await cli(args)).stderr).toContain(reminder);
    expect((await cli([...args, "-q"])).stderr).not.toContain(reminder);
    const json = await cli([...args, "--json"]);
    expect(json.code, json.stderr).toBe(0);
    expect(json.stderr).not.toContain(reminder);
  }, LONG);
});

/** A second model folder of `name` in the bucket (a copy of its first run's, under another run id). */
async function secondRun(name: string, runId: string): Promise<string> {
  const objects = await world.gcs.objects(BUCKET);
  const key = [...objects.keys()].find((k) => k.startsWith(`avatar/${name}/runs/`) && k.endsWith("/model/avatar.json"))!;
  const dir = join(home, `${name}-${runId}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "pytorch_lora_weights.safetensors"), objects.get(key.replace("avatar.json", "pytorch_lora_weights.safetensors"))!);
  writeFileSync(join(dir, "avatar.json"), JSON.stringify({ ...JSON.parse(objects.get(key)!.toString()), run_id: runId }));
  return dir;
}

describe("promotion for CI scripts", () => {
  it("register --alias and `alias` move an alias between versions (status --json shows it); deploy --model-version <alias>", async () => {
    const aliases = async () => Object.fromEntries(ok(await cli(["status", "bea", "--json"])).models.map((m: { versionId: string; aliases: string[] }) => [m.versionId, m.aliases]));
    const bad = await cli(["register", "--name", "bea", "--alias", "Prod", "--json"]);
    expect(bad.code).toBe(2);
    expect(bad.json!.error!.hint).toMatch(/starts with a lowercase letter/);

    const dry = ok(await cli(["register", "--name", "bea", "--run", ok(await cli(["status", "bea", "--json"])).runs[0].runId, "--alias", "prod", "--dry-run", "--json"]));
    expect(dry.requests.at(-1)).toMatchObject({ method: "MergeVersionAliases", request: { name: `${parent}/models/avatar-bea@1`, versionAliases: ["prod"] } });
    expect(world.fake.requests("MergeVersionAliases")).toEqual([]);

    const first = ok(await cli(["register", "--name", "bea", "--alias", "prod", "--json"]));
    expect(first).toMatchObject({ created: false, version: { versionId: "1" }, alias: { name: "prod", versionId: "1" } });
    expect((await aliases())["1"]).toContain("prod");

    const second = ok(await cli(["register", "--name", "bea", "--artifact-uri", join(home, "bea-20250505-050505"), "--alias", "prod", "--json"]));
    expect(second).toMatchObject({ version: { versionId: "2" }, alias: { name: "prod", versionId: "2", from: "1" } });
    let now = await aliases();
    expect(now["2"]).toContain("prod");
    expect(now["1"]).not.toContain("prod");

    const back = ok(await cli(["alias", "bea", "prod", "--model-version", "1", "--json"]));
    expect(back).toMatchObject({ alias: "prod", versionId: "1", from: "2" });
    expect(world.fake.requests("MergeVersionAliases").at(-1)).toEqual({ name: `${parent}/models/avatar-bea@1`, versionAliases: ["prod"] });
    ok(await cli(["alias", "bea", "staging", "--model-version", "prod", "--json"]));
    now = await aliases();
    expect(now["1"]).toEqual(expect.arrayContaining(["prod", "staging"]));
    expect(now["2"]).not.toContain("prod");

    const deployed = ok(await cli(["deploy", "bea", "--model-version", "prod", "--json"]));
    expect(deployed).toMatchObject({ reused: true, version: { versionId: "1" } });
    expect(ok(await cli(["alias", "bea", "staging", "--remove", "--json"]))).toMatchObject({ removed: true, from: "1" });
    expect((await aliases())["1"]).not.toContain("staging");
    expect((await cli(["alias", "bea", "default", "--remove", "--json"])).code).toBe(2);
    expect((await cli(["deploy", "bea", "--model-version", "staging", "--json"])).code).toBe(6);
  }, LONG);

  it("cancel: a script needs --yes; --yes cancels the running job (CancelCustomJob); nothing left to cancel exits 6", async () => {
    const launched = ok(await cli([...trainArgs("cy", "100000"), "--detach", "--json"]));
    expect(["queued", "running"]).toContain(launched.job.state);
    const refused = await cli(["cancel", "cy", "--json"]);
    expect(refused.code).toBe(2);
    expect(refused.json!.error!.hint).toContain("--yes");
    expect(world.fake.requests("CancelCustomJob")).toEqual([]);

    const cancelled = ok(await cli(["cancel", "cy", "--yes", "--json"]));
    expect(cancelled.cancelled).toEqual([expect.objectContaining({ runId: launched.job.runId, state: "cancelled" })]);
    expect(world.fake.requests("CancelCustomJob")).toEqual([{ name: `${parent}/customJobs/${launched.job.id}` }]);
    const again = await cli(["cancel", "cy", "--yes", "--json"]);
    expect(again.code).toBe(6);
    expect(again.json!.error!.message).toMatch(/the last one is cancelled/);
  }, LONG);

  it("down --all: a terminal 'no' and a script without --yes stop nothing; --yes stops every endpoint and says what stopped billing", async () => {
    ok(await cli([...trainArgs("cat"), "--json"]));
    ok(await cli(["deploy", "cat", "--json"]));
    expect(world.fake.runningServers()).toHaveLength(2);

    const tty = await onTerminal(["down", "--all"], /Undeploy and delete 2 endpoints: bea, cat \(billing ≈ \$1\.96\/h now\)\?/, "n\r");
    expect(tty.asked, tty.stderr).toBe(true);
    expect(tty.code).toBe(2);
    const script = await cli(["down", "--all", "--json"]);
    expect(script.code).toBe(2);
    expect(script.json!.error!.hint).toContain("--yes");
    const dry = ok(await cli(["down", "--all", "--dry-run", "--json"]));
    expect(dry.stopped.map((e: { name: string }) => e.name)).toEqual(["bea", "cat"]);
    expect(dry.requests.filter((r: { method: string }) => r.method === "DeleteEndpoint")).toHaveLength(2);
    expect(world.fake.requests("UndeployModel")).toEqual([]);
    expect(world.fake.runningServers()).toHaveLength(2);

    const down = await cli(["down", "--all", "--yes", "--json"]);
    const data = ok(down);
    expect(data.stopped).toEqual([
      { name: "bea", gpu: "l4", usdPerHour: expect.closeTo(0.98, 2) },
      { name: "cat", gpu: "l4", usdPerHour: expect.closeTo(0.98, 2) },
    ]);
    expect(data.usdPerHour).toBeCloseTo(1.96, 2);
    expect(world.fake.runningServers()).toEqual([]);
    expect(ok(await cli(["list", "--json"])).avatars.filter((a: { endpoint?: unknown }) => a.endpoint)).toEqual([]);
    expect(ok(await cli(["down", "--all", "--yes", "--json"]))).toMatchObject({ stopped: [], usdPerHour: 0 });
    const human = await cli(["list"]);
    expect(human.stdout).toContain("Billing now: nothing");
  }, LONG);
});
