// register --checkpoint and avatar likeness on scripted runs (no training): checkpoints whose samples
// are real face crops from the face library's package photos, written into a local store and into
// the GCS emulator (vertex backend against the fakes). The CLI runs in-process, so the face model
// loads once for the whole file.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalStore } from "../../src/backends/local/store.ts";
import { cleanEnv } from "../support/cli.ts";
import { noise, personViews, putDataset, putRun, TRAINING_VIEWS, weightsOf } from "../support/scripted-run.ts";
import { PROJECT, REGION, startVertexWorld, type VertexWorld } from "../vertex/helpers.ts";

const LONG = 5 * 60_000;
const NAME = "cleo";
const RUN = "20261201-070000";
const TINY_RUN = "20261201-080000";

let home: string;
let storeDir: string;
let env: Record<string, string | undefined>;
let views: { c: Awaited<ReturnType<typeof personViews>>; b: Awaited<ReturnType<typeof personViews>>; d: Awaited<ReturnType<typeof personViews>> };
/** step → samples of the scripted run: 200 draws the training person in new views; 400 copies training photos. */
let checkpoints: Record<number, Buffer[]>;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: { ok: boolean; data?: any; error?: { code: string; message: string; hint?: string } } | undefined;
}

/** The CLI in-process (src/main.ts), both streams captured. */
async function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const { main } = await import("../../src/main.ts");
  const stdout = new PassThrough().setMaxListeners(0);
  const stderr = new PassThrough().setMaxListeners(0);
  let out = "";
  let err = "";
  stdout.on("data", (d) => (out += d));
  stderr.on("data", (d) => (err += d));
  const code = await main(args, { streams: { stdin: new PassThrough(), stdout, stderr }, env: { ...env, ...extraEnv } as NodeJS.ProcessEnv, cwd: home });
  let json;
  try {
    json = JSON.parse(out);
  } catch {
    json = undefined;
  }
  return { code, stdout: out, stderr: err, json };
}

function ok(result: Run) {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
  expect(result.json?.ok).toBe(true);
  return result.json!.data;
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-pick-"));
  storeDir = join(home, "store");
  env = cleanEnv(home, { AVATAR_STORE: storeDir, AVATAR_BACKEND: "local" });
  const [c, b, d] = await Promise.all([personViews("c"), personViews("b"), personViews("d")]);
  views = { c, b, d };
  const store = new LocalStore(storeDir);
  const sha = await putDataset(store, NAME, TRAINING_VIEWS.map((v) => c[v]));
  checkpoints = {
    100: [await noise(1), await noise(2), b.plain, b.rotM6], // someone else, faces lost
    200: [c.mirror, c.mirrorRot, c.mirrorWarm, c.mirrorZoom], // the training person, new views
    300: [d.zoomOut, d.mirror, b.bright, c.rotM12], // mostly other people
    400: [c.plain, c.bright, c.zoomOut, await noise(3)], // copies of training photos: overfit
  };
  await putRun(store, { name: NAME, runId: RUN, datasetSha256: sha, checkpoints });
  // The tiny demo model's run: noise everywhere.
  await putRun(store, { name: NAME, runId: TINY_RUN, datasetSha256: sha, checkpoints: { 2: [await noise(4), await noise(5)], 4: [await noise(6), await noise(7)] } });
}, LONG);

afterAll(() => rmSync(home, { recursive: true, force: true }));

const runDir = (run: string) => join(storeDir, "avatar", NAME, "runs", run);
let firstRows: unknown[];

describe("register --checkpoint auto (local store)", () => {
  it("registers the checkpoint whose samples are the training person, flags near-copies, prints the table", async () => {
    const result = await cli(["register", "--name", NAME, "--run", RUN, "--json"]);
    const data = ok(result);
    const cp = data.checkpoint;
    expect(cp).toMatchObject({ step: 200, lastStep: 400, choice: "auto", noFaces: false, steps: [100, 200, 300, 400] });
    expect(cp.reason).toMatch(/^Step 200 has the highest score/);
    const row = (step: number) => cp.rows.find((r: { step: number }) => r.step === step);
    expect(row(200)).toMatchObject({ samples: 4, faces: 4, nearCopies: 0 });
    expect(row(200).likeness).toBeGreaterThan(0.95);
    expect(row(400).nearCopies).toBe(3);
    expect(row(100).faces).toBe(2);
    for (const step of [100, 300, 400]) expect(row(step).score).toBeLessThan(row(200).score - 0.2);
    expect(cp.references).toMatchObject({ photos: 4, faces: 4 });
    firstRows = cp.rows;
    // Scores are kept by sample content (16 distinct samples).
    const cache = JSON.parse(readFileSync(join(runDir(RUN), "likeness-scores.json"), "utf8"));
    expect(Object.keys(cache.samples)).toHaveLength(16);

    // The pick has its own model folder; model/ keeps the last step's weights.
    expect(data.artifactUri).toMatch(new RegExp(`/runs/${RUN}/step-000200$`));
    expect(readFileSync(join(runDir(RUN), "step-000200", "pytorch_lora_weights.safetensors"))).toEqual(weightsOf(200));
    expect(readFileSync(join(runDir(RUN), "model", "pytorch_lora_weights.safetensors"))).toEqual(weightsOf(400));
    const manifest = JSON.parse(readFileSync(join(runDir(RUN), "step-000200", "avatar.json"), "utf8"));
    expect(manifest).toMatchObject({ run_id: RUN, steps: 400, checkpoint_step: 200, likeness: { score: row(200).score, faces: 4, samples: 4, near_copies: 0, choice: "auto" } });
    expect(readFileSync(join(runDir(RUN), "step-000200", "handler.py"), "utf8")).toContain("class EndpointHandler");
    expect(data.version.labels).toMatchObject({ "avatar-checkpoint": "200", "avatar-likeness": expect.stringMatching(/^0_\d{3}$/) });
    expect(data.version.description).toMatch(/checkpoint 200 \(400 steps, auto\), likeness 0\.\d{3} \(mean 0\.9\d\d, worst 0\.9\d\d, faces 4\/4, near-copies 0\)/);
  }, LONG);

  it("--checkpoint last registers model/ as a second version; --checkpoint 200 returns the first", async () => {
    const last = ok(await cli(["register", "--name", NAME, "--run", RUN, "--checkpoint", "last", "--json"]));
    expect(last.checkpoint.rows).toEqual(firstRows); // from the kept scores
    expect(last.checkpoint.references).toMatchObject({ photos: 4, faces: 4 });
    expect(last).toMatchObject({ created: true, version: { versionId: "2", labels: { "avatar-checkpoint": "400" } }, checkpoint: { step: 400, choice: "last" } });
    expect(last.artifactUri).toMatch(/\/model$/);
    const manifest = JSON.parse(readFileSync(join(runDir(RUN), "model", "avatar.json"), "utf8"));
    expect(manifest).toMatchObject({ checkpoint_step: 400, likeness: { near_copies: 3, choice: "last" } });
    expect(readFileSync(join(runDir(RUN), "model", "pytorch_lora_weights.safetensors"))).toEqual(weightsOf(400));

    // Human output: the table, the chosen row marked, and the version registered by auto above.
    const human = await cli(["register", "--name", NAME, "--run", RUN, "--checkpoint", "200"]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/step\s+likeness\s+worst\s+faces\s+near-copies\s+score/);
    expect(human.stdout).toMatch(/\n200\s+0\.9\d\s+0\.9\d\s+4\/4\s+0\s+0\.\d\d\s+← registered/);
    expect(human.stdout).toMatch(/\n400\s+\S+\s+\S+\s+3\/4\s+3\s+0\.\d\d\n/);
    expect(human.stdout).toContain("checkpoint 200 of 400: --checkpoint 200 was asked for");
    expect(human.stdout).toContain(`Already registered: cleo version 1 (run ${RUN})`);
  }, LONG);

  it("a bad --checkpoint exits 2 and names the steps that exist; nothing is registered", async () => {
    for (const value of ["250", "best"]) {
      const bad = await cli(["register", "--name", NAME, "--run", RUN, "--checkpoint", value, "--json"]);
      expect(bad.code).toBe(2);
      expect(bad.json?.error?.code).toBe("BAD_INPUT");
      expect(bad.json?.error?.message).toContain(value);
      expect(bad.json?.error?.hint).toContain("100, 200, 300, 400");
      expect(bad.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
    }
    const registry = JSON.parse(readFileSync(join(storeDir, "avatar", NAME, "registry.json"), "utf8"));
    expect(registry.versions).toHaveLength(2);
  }, LONG);

  it("keeps the last checkpoint and says so when no sample has a face (the tiny demo model)", async () => {
    const result = await cli(["register", "--name", NAME, "--run", TINY_RUN]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("checkpoint 4 of 4: No sample of any checkpoint shows a face (4 samples; the tiny demo model draws noise): keeping the last checkpoint.");
    const data = ok(await cli(["register", "--name", NAME, "--run", TINY_RUN, "--json"]));
    expect(data).toMatchObject({ created: false, checkpoint: { step: 4, noFaces: true, likeness: null }, version: { labels: { "avatar-checkpoint": "4" } } });
    expect(data.version.labels["avatar-likeness"]).toBeUndefined();
    expect(data.artifactUri).toMatch(/\/model$/);
  }, LONG);
});

describe("avatar likeness", () => {
  it("scores the same person clearly above other people, against a photos folder and against the avatar", async () => {
    const photos = join(home, "photos");
    mkdirSync(photos);
    for (const v of TRAINING_VIEWS) writeFileSync(join(photos, `${v}.png`), views.c[v]);
    const images = { same: views.c.mirror, other: views.b.plain, third: views.d.zoomOut, none: await noise(9) };
    for (const [k, v] of Object.entries(images)) writeFileSync(join(home, `${k}.png`), v);
    const files = Object.keys(images).map((k) => `${k}.png`);

    const byFolder = ok(await cli(["likeness", "photos", ...files, "--json"]));
    expect(byFolder.source).toMatchObject({ kind: "folder", photos: 4, faces: 4 });
    const [same, other, third, none] = byFolder.images;
    expect(same).toMatchObject({ face: true, faces: 1 });
    expect(none).toMatchObject({ face: false, likeness: null });
    expect(same.likeness).toBeGreaterThan(Math.max(other.likeness, third.likeness) + 0.04);

    const human = await cli(["likeness", NAME, ...files]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/Likeness to 4 faces in 4 photos: cleo's training photos/);
    expect(human.stdout).toMatch(/\n0\.9\d\s+face\s+same\.png/);
    expect(human.stdout).toMatch(/\n–\s+no face\s+none\.png/);
  }, LONG);

  it("bad input exits 2 with a hint; an avatar with no photos is exit 6", async () => {
    const missing = await cli(["likeness", "photos", "nope.png", "--json"]);
    expect(missing.code).toBe(2);
    expect(missing.json?.error?.message).toMatch(/nope\.png is not a file/);
    const neither = await cli(["likeness", "Not A Name", "same.png", "--json"]);
    expect(neither.code).toBe(2);
    expect(neither.json?.error?.message).toMatch(/neither a folder nor an avatar name/);
    // Caught before the face model or any reference photo is read (the dataset's own format sniffing).
    writeFileSync(join(home, "notes.txt"), "not an image\n");
    const text = await cli(["likeness", "photos", "notes.txt", "--json"]);
    expect(text.code).toBe(2);
    expect(text.json?.error?.message).toMatch(/notes\.txt/);
    // An avatar with nothing in the store is "no photos", not an internal error about store keys.
    const unknown = await cli(["likeness", "nobody", "same.png", "--json"]);
    expect(unknown.code, unknown.stderr).toBe(6);
    expect(unknown.json?.error?.message).toMatch(/nobody has no photos/);
  }, LONG);
});

describe("generate's images.json", () => {
  it("carries each image's likeness when the avatar's photos are in the store, and none when they are not", async () => {
    const { finishOutputs } = await import("../../src/workflows/generate-files.ts");
    const notes: string[] = [];
    const spinner = { update() {}, succeed: (t?: string) => notes.push(t ?? ""), fail() {}, warn() {}, stop() {} };
    const ctx = { out: { spinner: async () => spinner, warn: (t: string) => notes.push(t), detail: (t: string) => notes.push(t) } } as never;
    const store = { store: new LocalStore(storeDir) };
    const dir = join(home, "generated");
    mkdirSync(dir);
    writeFileSync(join(dir, "01-a-1.png"), views.c.rotM12);
    writeFileSync(join(dir, "02-b-2.png"), await noise(11));
    const images = () => [
      { file: join(dir, "01-a-1.png"), prompt: "a", seed: 1, nsfw: false },
      { file: join(dir, "02-b-2.png"), prompt: "b", seed: 2, nsfw: false },
    ];
    await finishOutputs(ctx, NAME, dir, images(), false, store);
    const written = JSON.parse(readFileSync(join(dir, "images.json"), "utf8"));
    expect(written.images[0]).toMatchObject({ file: "01-a-1.png", face: true });
    expect(written.images[0].likeness).toBeGreaterThan(0.95);
    expect(written.images[1]).toMatchObject({ file: "02-b-2.png", face: false, likeness: null });
    expect(notes.at(-1)).toMatch(/Likeness to cleo's photos: 0\.9\d–0\.9\d, faces in 1 of 2 images/);

    await finishOutputs(ctx, "nobody", dir, images(), false, store);
    const without = JSON.parse(readFileSync(join(dir, "images.json"), "utf8"));
    expect(without.images[0]).not.toHaveProperty("likeness");
    expect(notes.at(-1)).toMatch(/nobody has no photos in the store/);
  }, LONG);
});

describe("register --checkpoint on the vertex backend (GCS emulator + Vertex fake)", () => {
  const BUCKET = "avatar-pick-vx";
  let world: VertexWorld;
  beforeAll(async () => {
    world = await startVertexWorld(BUCKET);
    const { store } = await world.backend();
    const sha = await putDataset(store, NAME, TRAINING_VIEWS.map((v) => views.c[v]));
    await putRun(store, { name: NAME, runId: RUN, datasetSha256: sha, checkpoints });
  }, LONG);
  afterAll(async () => world?.stop());

  it("uploads the picked checkpoint's folder with the step and likeness in labels and description", async () => {
    const vertex = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
    const data = ok(await cli(["register", "--name", NAME, "--run", RUN, "--json", ...vertex], world.env));
    expect(data.checkpoint).toMatchObject({ step: 200, lastStep: 400 });
    const upload = world.fake.requests("UploadModel")[0];
    expect(upload.model.artifactUri).toBe(`gs://${BUCKET}/avatar/${NAME}/runs/${RUN}/step-000200`);
    expect(upload.model.labels).toMatchObject({ avatar: NAME, "avatar-run": RUN, "avatar-checkpoint": "200", "avatar-likeness": expect.stringMatching(/^0_\d{3}$/) });
    for (const value of Object.values(upload.model.labels as Record<string, string>)) expect(value).toMatch(/^[a-z0-9_-]{0,63}$/);
    expect(upload.model.description).toMatch(/checkpoint 200 \(400 steps, auto\), likeness 0\.\d{3}/);
    const objects = [...(await world.gcs.objects(BUCKET)).keys()].filter((k) => k.includes("/step-000200/")).map((k) => k.split("/").at(-1)).sort();
    expect(objects).toEqual(["avatar.json", "handler.py", "pytorch_lora_weights.safetensors", "requirements.txt"]);

    const again = ok(await cli(["register", "--name", NAME, "--run", RUN, "--json", ...vertex], world.env));
    expect(again).toMatchObject({ created: false, version: { versionId: data.version.versionId } });
    expect(world.fake.requests("UploadModel")).toHaveLength(1);
  }, LONG);
});
