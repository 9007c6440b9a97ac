// Studios on the local backend through the built CLI: two tiny avatars trained once, one studio
// endpoint (one server process) serving both, no adapter leakage between requests, a third avatar
// added without a redeploy, an avatar of another base refused, and `down --studio` stopping it.
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, cliPath, runCli, type CliResult } from "../support/cli.ts";
import { artifactFolder, processesMentioning } from "./helpers.ts";

const LONG = 10 * 60_000;
let home: string;
let tiny: string;
let env: Record<string, string | undefined>;
const runs: Record<string, string> = {};

const cli = (args: string[]) => runCli(args, { env, cwd: home, timeoutMs: LONG });
function ok(result: CliResult) {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
  return result.json!.data;
}
const gen = async (name: string, extra: string[] = []) =>
  ok(await cli(["generate", name, "{avatar} smiling", "--seed", "1", "--steps", "2", "--width", "256", "--height", "256", "--format", "png", "--json", ...extra]));
const bytes = (data: { images: { file: string }[] }) => readFileSync(data.images[0]!.file);
const servers = () => processesMentioning(home).filter((p) => p.includes("local_server"));
const modelDir = (name: string) => join(home, ".avatar", "store", "avatar", name, "runs", runs[name]!, "model");

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-studio-"));
  env = cleanEnv(home, { HF_HUB_OFFLINE: "1" });
  tiny = join(home, "tiny");
  const python = join(process.env.AVATAR_VENV!, "bin", "python");
  await Promise.all([
    writeSyntheticSelfies(join(home, "alice"), 6, 1),
    writeSyntheticSelfies(join(home, "bob"), 6, 2),
    new Promise<void>((resolve, reject) => {
      const child = spawn(python, ["-m", "avatar_trainer.tiny", "--pipeline", "sd15", "--out", tiny], {
        env: { ...process.env, PYTHONPATH: join(cliPath, "..", "..", "templates", "trainer"), HF_HUB_OFFLINE: "1" },
        stdio: "ignore",
      });
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tiny kit exited ${code}`))));
    }),
  ]);
  for (const [name, seed] of [["alice", "1"], ["bob", "2"]] as const) {
    const data = ok(await cli(["train", join(home, name), "--name", name, "--base", tiny, "--steps", "4", "--resolution", "64", "--rank", "4", "--seed", seed, "--json"]));
    runs[name] = data.job.runId;
  }
}, LONG);

afterAll(async () => {
  await cli(["down", "--studio", "fam"]);
  rmSync(home, { recursive: true, force: true });
});

describe("a studio on the local backend", () => {
  it("refuses bad studio input with exit 2 and a hint, before touching anything", async () => {
    for (const [args, message] of [
      [["studio", "frob"], 'Unknown studio action "frob".'],
      [["studio", "remove", "fam"], "Which studio, and which avatars?"],
      [["deploy", "alice", "--studio", "Fam"], '"Fam" is not a valid studio name.'],
      [["deploy", "alice", "--service-account", "sa@p.iam.gserviceaccount.com"], "--service-account goes with --studio (a studio reads the bucket; an avatar's own endpoint does not)."],
      [["down", "alice", "--studio", "fam"], "--studio stops a whole studio; pass no avatar name or --all with it."],
      [["generate", "alice", "x", "--studio", "fam", "--no-endpoint"], "--studio and --no-endpoint do not go together: a studio is an endpoint."],
      [["deploy", "studio-x"], '"studio-x" is reserved: names starting with studio- belong to studios.'],
    ] as const) {
      const result = await cli([...args, "--json"]);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.json!.error.message).toBe(message);
      expect(result.json!.error.hint).toBeTruthy();
    }
  }, LONG);

  it("serves two avatars from one server process; alice's image is the same before and after bob's", async () => {
    const first = ok(await cli(["deploy", "alice", "--studio", "fam", "--json"]));
    expect(first).toMatchObject({ studio: "fam", avatars: ["alice"], deployed: true, endpoint: { name: "studio-fam", state: "ready" } });
    const second = ok(await cli(["deploy", "bob", "--studio", "fam", "--json"]));
    expect(second).toMatchObject({ avatars: ["alice", "bob"], deployed: false, alreadyServed: false });

    const aliceBefore = await gen("alice");
    const bob = await gen("bob");
    const aliceAfter = await gen("alice");
    expect(aliceBefore).toMatchObject({ studio: "fam", images: [{ seed: 1, prompt: "sks person smiling" }] });
    expect(bytes(aliceAfter).equals(bytes(aliceBefore))).toBe(true);
    expect(bytes(bob).equals(bytes(aliceBefore))).toBe(false);
    expect(servers()).toHaveLength(1);

    // --studio picks the studio explicitly; one that does not serve the avatar says what it serves.
    expect(bytes(await gen("alice", ["--studio", "fam"])).equals(bytes(aliceBefore))).toBe(true);
    const elsewhere = await cli(["generate", "carol", "x", "--studio", "fam", "--json"]);
    expect(elsewhere.code).toBe(6);
    expect(elsewhere.json!.error.message).toBe("Studio fam does not serve carol (it serves alice, bob).");
  }, LONG);

  it("adds a third avatar without a redeploy (same server process); refuses one of another base", async () => {
    const before = servers();
    // carol: bob's LoRA registered under another name (no third training run): the same image as bob's.
    const carolDir = artifactFolder(join(home, "carol"), "carol", "20260101-000003", readFileSync(join(modelDir("bob"), "pytorch_lora_weights.safetensors")), readFileSync(join(modelDir("bob"), "avatar.json")));
    ok(await cli(["register", "--name", "carol", "--artifact-uri", carolDir, "--json"]));
    const added = ok(await cli(["deploy", "carol", "--studio", "fam", "--json"]));
    expect(added).toMatchObject({ avatars: ["alice", "bob", "carol"], deployed: false });
    const carol = await gen("carol");
    expect(bytes(carol).equals(bytes(await gen("bob")))).toBe(true);
    expect(servers()).toEqual(before);

    // olga: trained (as far as avatar.json says) on another base directory.
    const otherBase = join(home, "tiny-other");
    cpSync(tiny, otherBase, { recursive: true });
    const olgaDir = artifactFolder(join(home, "olga"), "olga", "20260101-000004", readFileSync(join(modelDir("alice"), "pytorch_lora_weights.safetensors")), readFileSync(join(modelDir("alice"), "avatar.json")), { base_model: otherBase });
    ok(await cli(["register", "--name", "olga", "--artifact-uri", olgaDir, "--json"]));
    const refused = await cli(["deploy", "olga", "--studio", "fam", "--json"]);
    expect(refused.code).toBe(2);
    expect(refused.json!.error.message).toBe(`Cannot add olga to studio fam: olga was trained on sd15 (${otherBase}), but studio fam serves sd15 (${tiny}): all avatars of a studio share one base model, loaded once on its GPU.`);
    expect(refused.json!.error.hint).toMatch(/avatar deploy olga --studio <another>/);
    expect(ok(await cli(["studio", "list", "fam", "--json"])).studios[0].avatars).toEqual(["alice", "bob", "carol"]);
  }, LONG);

  it("list/status show the studio; studio remove stops serving one avatar; down --studio leaves nothing running", async () => {
    const listed = ok(await cli(["list", "--json"]));
    expect(listed.studios).toEqual([expect.objectContaining({ studio: "fam", avatars: ["alice", "bob", "carol"], endpoint: expect.objectContaining({ state: "ready" }) })]);
    expect(listed.avatars.map((a: { name: string }) => a.name)).toEqual(["alice", "bob", "carol", "olga"]); // the studio's own model is not an avatar
    const status = await cli(["status", "alice"]);
    expect(status.stdout).toContain("studio: fam (endpoint ready, with bob, carol)");

    expect(ok(await cli(["studio", "remove", "fam", "bob", "--json"]))).toMatchObject({ removed: ["bob"], avatars: ["alice", "carol"] });
    const gone = await cli(["generate", "bob", "x", "--json"]);
    expect(gone.code).toBe(6);
    expect(gone.json!.error.message).toBe("bob is not deployed.");

    expect(ok(await cli(["down", "--studio", "fam", "--json"]))).toMatchObject({ studio: "fam", stopped: true });
    expect(servers()).toEqual([]);
    const after = ok(await cli(["studio", "list", "--json"])).studios;
    expect(after).toEqual([expect.objectContaining({ studio: "fam", avatars: ["alice", "carol"] })]);
    expect(after[0].endpoint).toBeUndefined();
  }, LONG);
});
