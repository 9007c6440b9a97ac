// The local backend end to end, through the built CLI: demo, interrupt + resume, every command's
// --json shape, and `avatar serve --check`. Real Python trainer and handler on the tiny model.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, cliPath, runCli, spawnEnv } from "../support/cli.ts";
import { processesMentioning } from "../support/processes.ts";

const LONG = 15 * 60_000;


async function decodable(file: string): Promise<{ width: number; height: number }> {
  const meta = await sharp(file).metadata();
  return { width: meta.width ?? 0, height: meta.height ?? 0 };
}

describe("avatar demo", () => {
  let home: string;
  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), "avatar-demo-"));
  });
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("runs the whole pipeline from a clean home: 4 avatar and 4 base images, a two-row contact sheet, no server left", async () => {
    const { code, json, stderr } = await runCli(["demo", "--json"], { env: cleanEnv(home), cwd: home, timeoutMs: LONG });
    expect(code, stderr).toBe(0);
    expect(json?.ok).toBe(true);
    const data = json!.data;
    expect(data.images).toHaveLength(4);
    expect(data.baseImages).toHaveLength(4);
    for (const file of [...data.images, ...data.baseImages]) {
      const { width, height } = await decodable(file);
      expect(width).toBe(256); // the face base renders 256 px (its 64 px drawings, 4x)
      expect(height).toBe(width);
    }
    // The same seeds at lora_scale 0 and 1: the base row and the avatar row differ image by image.
    for (const [i, file] of data.images.entries()) {
      expect(readFileSync(file).equals(readFileSync(data.baseImages[i])), `image ${i + 1}`).toBe(false);
    }
    expect(data.subject).toBe("long teal hair and round red glasses");
    expect(existsSync(data.contactSheet)).toBe(true);
    const sheet = await decodable(data.contactSheet);
    expect(sheet.width).toBeGreaterThan(4 * 256); // a label column and four tiles per row
    expect(sheet.height).toBeGreaterThan(2 * 256); // two rows: base, avatar
    expect(sheet.height).toBeLessThan(3 * 256);
    expect(data.phases.map((p: { phase: string }) => p.phase)).toEqual([
      "Python environment", "Selfies", "Tiny base model", "Prepare", "Upload", "Train", "Register", "Deploy", "Generate", "Down",
    ]);
    expect(data.dataset.status).toBe("uploaded");
    expect(processesMentioning(home)).toEqual([]);
  }, LONG);

  it("a second run reuses the Python environment and the uploaded dataset", async () => {
    // Reuse is what is checked here, not learning: a few steps keep the second run short.
    const { code, json, stderr } = await runCli(["demo", "--steps", "4", "--json"], { env: cleanEnv(home), cwd: home, timeoutMs: LONG });
    expect(code, stderr).toBe(0);
    expect(json!.data.dataset.status).toBe("exists");
    expect(stderr).not.toContain("setting up its Python environment");
    expect(json!.data.images).toHaveLength(4);
    expect(processesMentioning(home)).toEqual([]);
  }, LONG);
});

describe("local backend commands", () => {
  let home: string;
  let env: Record<string, string | undefined>;
  let photos: string;
  let tiny: string;
  const name = "alice";

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "avatar-local-"));
    env = cleanEnv(home);
    // The demo's own building blocks: synthetic selfies and the tiny model, via the built package.
    const { writeSyntheticSelfies } = await import("../../src/workflows/synthetic-selfies.ts");
    photos = join(home, "photos");
    await writeSyntheticSelfies(photos, 6, 3);
    tiny = join(home, "tiny-sd15");
    const python = join(process.env.AVATAR_VENV!, "bin", "python");
    await new Promise<void>((resolve, reject) => {
      const child = spawn(python, ["-m", "avatar_trainer.tiny", "--pipeline", "sd15", "--out", tiny], {
        env: { ...process.env, PYTHONPATH: join(cliPath, "..", "..", "templates", "trainer"), HF_HUB_OFFLINE: "1" },
        stdio: "ignore",
      });
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tiny kit exited ${code}`))));
    });
  }, LONG);
  afterAll(async () => {
    await runCli(["down", name], { env, cwd: home });
    rmSync(home, { recursive: true, force: true });
  });

  const trainArgs = () => ["train", photos, "--name", name, "--base", tiny, "--steps", "30", "--resolution", "64", "--rank", "4", "--checkpoint-every", "2", "--no-register", "-v"];

  it("Ctrl-C during training stops the trainer; the same command resumes from its checkpoint", async () => {
    const child = spawn(process.execPath, [cliPath, ...trainArgs()], { cwd: home, env: spawnEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    const interrupted = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no checkpoint seen:\n${stderr}`)), LONG);
      void interrupted.then((code) => reject(new Error(`the CLI exited (${code}) before a checkpoint:\n${stderr}`)));
      child.stderr.on("data", (d) => {
        stderr += d;
        if (/checkpoint step=4\b/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill("SIGINT");
    expect(await interrupted).toBe(130);
    expect(stderr).toMatch(/Interrupted/);
    expect(stderr).toMatch(/Nothing keeps running remotely|resume/);
    expect(processesMentioning(home).filter((p) => p.includes("avatar_trainer"))).toEqual([]);

    const resumed = await runCli([...trainArgs(), "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.json!.data.resumed).toBe(true);
    expect(resumed.json!.data.job.state).toBe("succeeded");
    const logs = await runCli(["logs", name, "--json"], { env, cwd: home });
    const resumeLine = logs.json!.data.lines.find((l: string) => l.startsWith("phase=resume"));
    expect(resumeLine).toMatch(/step=(\d+)/);
    expect(Number(/step=(\d+)/.exec(resumeLine)![1])).toBeGreaterThanOrEqual(4);
  }, LONG);

  it("register is idempotent, deploy/generate/list/status/down give their --json shapes", async () => {
    const first = await runCli(["register", "--name", name, "--json"], { env, cwd: home });
    expect(first.code, first.stderr).toBe(0);
    expect(first.json!.data.created).toBe(true);
    expect(first.json!.data.version.versionId).toBe("1");
    // The trained tiny model's samples are noise: register says so and keeps the last checkpoint.
    expect(first.json!.data.checkpoint).toMatchObject({ step: 30, lastStep: 30, choice: "auto", noFaces: true, likeness: null });
    expect(first.json!.data.checkpoint.reason).toMatch(/No sample of any checkpoint shows a face .*keeping the last checkpoint/);
    expect(first.json!.data.checkpoint.rows.length).toBeGreaterThan(0);
    expect(first.json!.data.version.labels["avatar-checkpoint"]).toBe("30");
    const again = await runCli(["register", "--name", name, "--json"], { env, cwd: home });
    expect(again.json!.data).toMatchObject({ created: false, version: { versionId: "1" } });

    const deployed = await runCli(["deploy", name, "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.json!.data.endpoint.state).toBe("ready");
    const reused = await runCli(["deploy", name, "--json"], { env, cwd: home });
    expect(reused.json!.data.reused).toBe(true);

    const generated = await runCli(["generate", name, "{avatar} smiling", "--steps", "2", "--seed", "5", "--width", "256", "--height", "256", "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(generated.code, generated.stderr).toBe(0);
    expect(generated.json!.data.images).toHaveLength(1);
    expect(generated.json!.data.images[0]).toMatchObject({ seed: 5, prompt: "sks person smiling", nsfw: false });
    expect(await decodable(generated.json!.data.images[0].file)).toEqual({ width: 256, height: 256 });

    const folders = readdirSync(join(home, "avatars", name)).length;
    const bad = await runCli(["generate", name, "x", "--steps", "1000", "--json"], { env, cwd: home });
    expect(bad.code).toBe(2);
    expect(bad.json!.error!.message).toMatch(/steps/);
    expect(readdirSync(join(home, "avatars", name))).toHaveLength(folders); // no empty output folder left

    // --batch: prompts from a file; the results are also kept in the store under outputs/<stamp>/.
    writeFileSync(join(home, "prompts.txt"), "# a batch\n{avatar} in a suit\n\nan oil painting of {avatar}\n");
    const batch = await runCli(["generate", name, "--batch", "prompts.txt", "--steps", "1", "--width", "256", "--height", "256", "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(batch.code, batch.stderr).toBe(0);
    expect(batch.json!.data.images.map((i: { prompt: string }) => i.prompt)).toEqual(["sks person in a suit", "an oil painting of sks person"]);
    const stamp = basename(batch.json!.data.dir);
    const kept = join(home, ".avatar", "store", "avatar", name, "outputs", stamp);
    expect(batch.json!.data.stored).toEqual({ uri: `${pathToFileURL(kept).href}/`, objects: 4 });
    expect(readdirSync(kept).sort()).toEqual([...readdirSync(batch.json!.data.dir)].sort());
    expect(readdirSync(kept)).toEqual(expect.arrayContaining(["contact-sheet.jpg", "images.json"]));
    // Two runs in the same second each get a folder of their own: neither's images.json is lost.
    const twice = await Promise.all([1, 2].map((seed) => runCli(["generate", name, "{avatar}", "--steps", "1", "--width", "256", "--height", "256", "--seed", String(seed), "--json"], { env, cwd: home, timeoutMs: LONG })));
    const [one, two] = twice.map((r) => r.json!.data);
    expect(one.dir).not.toBe(two.dir);
    for (const run of [one, two]) expect(JSON.parse(readFileSync(join(run.dir, "images.json"), "utf8")).images).toHaveLength(1);

    const missing = await runCli(["generate", name, "--batch", "nope.txt", "--json"], { env, cwd: home });
    expect(missing.code).toBe(2);
    expect(missing.json!.error).toMatchObject({ code: "BAD_INPUT", message: "Cannot read the --batch file nope.txt (ENOENT)." });

    const listed = await runCli(["list", "--json"], { env, cwd: home });
    expect(listed.json!.data.avatars).toEqual([expect.objectContaining({ name, endpoint: expect.objectContaining({ state: "ready" }) })]);
    const status = await runCli(["status", name, "--json"], { env, cwd: home });
    expect(status.json!.data.models).toHaveLength(1);
    expect(status.json!.data.runs.at(-1).state).toBe("succeeded");

    const down = await runCli(["down", name, "--json"], { env, cwd: home });
    expect(down.json!.data).toEqual({ name, stopped: true });
    const downAgain = await runCli(["down", name, "--json"], { env, cwd: home });
    expect(downAgain.json!.data).toEqual({ name, stopped: false });
    expect(processesMentioning(home).filter((p) => p.includes("local_server"))).toEqual([]);
  }, LONG);

  it("logs --follow prints a detached run's lines as they come and returns when it ends", async () => {
    const launched = await runCli([...trainArgs(), "--seed", "7", "--detach", "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(launched.code, launched.stderr).toBe(0);
    expect(launched.json!.data.job.state).toBe("running");

    const child = spawn(process.execPath, [cliPath, "logs", name, "--follow"], { cwd: home, env: spawnEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    const arrivals: number[] = [];
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      arrivals.push(Date.now());
      stdout += d;
    });
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    const ended = Date.now();
    expect(code, stderr).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^phase=/);
    expect(lines.filter((l) => l.startsWith("step=")).at(-1)).toMatch(/^step=30\/30 /);
    expect(lines.at(-1)).toMatch(/^done output=/);
    // Streamed, not printed at the end: the first lines came while the trainer was still working.
    expect(ended - arrivals[0]!).toBeGreaterThan(1000);
    const status = await runCli(["status", name, "--json"], { env, cwd: home });
    expect(status.json!.data.runs.at(-1).state).toBe("succeeded");

    const serving = await runCli(["logs", name, "--serving", "--follow"], { env, cwd: home });
    expect(serving.code).toBe(2);
    expect(serving.stderr).toMatch(/--follow works with training logs/);
  }, LONG);

  it("Ctrl-C stops following the log, not the run: exit 130 and it says the run goes on", async () => {
    const launched = await runCli([...trainArgs(), "--steps", "300", "--seed", "8", "--detach", "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(launched.code, launched.stderr).toBe(0);
    const child = spawn(process.execPath, [cliPath, "logs", name, "-f"], { cwd: home, env: spawnEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (d) => {
        stdout += d;
        if (stdout.includes("step=")) resolve();
      });
    });
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/Still running: training run \d{8}-\d{6} of /);
    // status shows where it is, from the trainer's newest step line.
    const running = await runCli(["status", name, "--json"], { env, cwd: home });
    const run = running.json!.data.runs.at(-1);
    expect(run).toMatchObject({ state: "running", progress: { total: 300 } });
    expect(run.progress.step).toBeGreaterThan(0);
    expect(run.progress.loss).toEqual(expect.any(Number));
    const waited = await runCli(["status", name, "--wait", "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(waited.json!.data.runs.at(-1)).toMatchObject({ runId: launched.json!.data.job.runId, state: "succeeded" });
  }, LONG);

  it("register --artifact-uri copies a model folder trained elsewhere into the store and registers it, once", async () => {
    const status = await runCli(["status", name, "--json"], { env, cwd: home });
    const run = status.json!.data.runs.filter((r: { state: string }) => r.state === "succeeded").at(-1).runId;
    const trained = join(home, ".avatar", "store", "avatar", name, "runs", run, "model");
    const elsewhere = join(home, "elsewhere", "model");
    mkdirSync(elsewhere, { recursive: true });
    copyFileSync(join(trained, "pytorch_lora_weights.safetensors"), join(elsewhere, "pytorch_lora_weights.safetensors"));
    const manifest = JSON.parse(readFileSync(join(trained, "avatar.json"), "utf8"));
    writeFileSync(join(elsewhere, "avatar.json"), JSON.stringify({ ...manifest, run_id: "20250102-030405" }));

    const first = await runCli(["register", "--name", name, "--artifact-uri", "elsewhere/model", "--json"], { env, cwd: home });
    expect(first.code, first.stderr).toBe(0);
    expect(first.json!.data).toMatchObject({ created: true, imported: { runId: "20250102-030405", copied: true, from: elsewhere }, version: { runId: "20250102-030405" } });
    const kept = join(home, ".avatar", "store", "avatar", name, "runs", "20250102-030405", "model");
    expect(readdirSync(kept).sort()).toEqual(["avatar.json", "handler.py", "pytorch_lora_weights.safetensors", "requirements.txt"]);
    expect(readFileSync(join(kept, "pytorch_lora_weights.safetensors"))).toEqual(readFileSync(join(trained, "pytorch_lora_weights.safetensors")));
    const again = await runCli(["register", "--name", name, "--artifact-uri", pathToFileURL(elsewhere).href, "--json"], { env, cwd: home });
    expect(again.json!.data).toMatchObject({ created: false, imported: { copied: false }, version: { versionId: first.json!.data.version.versionId } });

    const refused = async (args: string[]) => {
      const result = await runCli(["register", "--name", name, ...args, "--json"], { env, cwd: home });
      expect(result.code, result.stdout).toBe(2);
      return result.json!.error!.message;
    };
    writeFileSync(join(elsewhere, "avatar.json"), JSON.stringify({ ...manifest, run_id: "20250102-030405", steps: 999 }));
    expect(await refused(["--artifact-uri", elsewhere])).toBe(`Run 20250102-030405 of ${name} already holds a different model (${pathToFileURL(kept).href}).`);
    writeFileSync(join(elsewhere, "avatar.json"), JSON.stringify({ ...manifest, name: "someone-else" }));
    expect(await refused(["--artifact-uri", elsewhere])).toBe(`${elsewhere} holds avatar "someone-else", not "${name}".`);
    expect(await refused(["--artifact-uri", join(home, "photos-or-whatever")])).toMatch(/is not a folder\.$/);
    expect(await refused(["--artifact-uri", join(home, "elsewhere")])).toBe(`${join(home, "elsewhere")} has no avatar.json.`);
    expect(await refused(["--artifact-uri", "https://example.com/model"])).toMatch(/only gs:\/\/ URIs, file:\/\/ URIs and folder paths/);
    expect(await refused(["--artifact-uri", "gs://bucket/model"])).toMatch(/the local backend reads local folders/);
    expect(await refused(["--artifact-uri", elsewhere, "--run", run])).toBe("--run and --artifact-uri name two different models.");
  }, LONG);

  it("avatar serve --check runs one prediction through the container stand-in", async () => {
    const status = await runCli(["status", name, "--json"], { env, cwd: home });
    const run = status.json!.data.runs.at(-1).runId;
    const modelDir = join(home, ".avatar", "store", "avatar", name, "runs", run, "model");
    const { code, json, stderr } = await runCli(["serve", modelDir, "--check", "--steps", "2", "--json"], { env, cwd: home, timeoutMs: LONG });
    expect(code, stderr).toBe(0);
    expect(json!.data.check.bytes).toBeGreaterThan(0);
    expect(json!.data.check.width).toBeGreaterThan(0);
    expect(json!.data.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const broken = await runCli(["serve", photos, "--check", "--json"], { env, cwd: home });
    expect(broken.code).toBe(2);
    expect(broken.json!.error!.message).toMatch(/pytorch_lora_weights\.safetensors/);
  }, LONG);
});
