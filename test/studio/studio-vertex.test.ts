// Studios on the vertex backend through the built CLI, against fake-gcs-server and the Vertex fake:
// the studio's server (handlers/local_server.py in the fake) reads the manifest and the LoRAs from
// the bucket with google-cloud-storage, which the fake allows only under a DeployedModel
// serviceAccount (Vertex's default serving identity may read only the model's own artifacts).
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, runCli, type CliResult } from "../support/cli.ts";
import { objectsUnder, PROJECT, REGION, startVertexWorld, tinyBase, type VertexWorld } from "../vertex/helpers.ts";
import { artifactFolder } from "./helpers.ts";

const LONG = 10 * 60_000;
const BUCKET = "avatar-studio-e2e";
const SA = `avatar-serving@${PROJECT}.iam.gserviceaccount.com`;
const parent = `projects/${PROJECT}/locations/${REGION}`;
let world: VertexWorld;
let home: string;
let base: string;
let env: Record<string, string | undefined>;
const runs: Record<string, string> = {};

const vertex = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
const cli = (args: string[]) => runCli([...args, ...vertex], { env, cwd: home, timeoutMs: LONG });
function ok(result: CliResult) {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
  return result.json!.data;
}
const gen = async (name: string) =>
  ok(await cli(["generate", name, "{avatar} smiling", "--seed", "1", "--steps", "2", "--width", "256", "--height", "256", "--format", "png", "--json"]));
const bytes = (data: { images: { file: string }[] }) => readFileSync(data.images[0]!.file);
async function modelFiles(name: string): Promise<{ weights: Buffer; meta: Buffer }> {
  const prefix = `avatar/${name}/runs/${runs[name]}/model/`;
  const files = await objectsUnder(world.gcs, BUCKET, prefix);
  return { weights: files.get(`${prefix}pytorch_lora_weights.safetensors`)!, meta: files.get(`${prefix}avatar.json`)! };
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-studio-vx-"));
  [world, base] = await Promise.all([startVertexWorld(BUCKET), tinyBase(), writeSyntheticSelfies(join(home, "alice"), 6, 1), writeSyntheticSelfies(join(home, "bob"), 6, 2)]);
  env = cleanEnv(home, world.env);
  for (const [name, seed] of [["alice", "1"], ["bob", "2"]] as const) {
    const data = ok(await cli(["train", join(home, name), "--name", name, "--base", base, "--steps", "4", "--resolution", "64", "--rank", "4", "--seed", seed, "--json"]));
    runs[name] = data.job.runId;
  }
}, LONG);

afterAll(async () => {
  await world?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("a studio on the vertex backend", () => {
  it("asks for a serving identity, deploys once with it, serves both avatars without leakage", async () => {
    const noIdentity = await cli(["deploy", "alice", "--studio", "fam", "--json"]);
    expect(noIdentity.code).toBe(2);
    expect(noIdentity.json!.error.message).toMatch(/needs a serving service account: it reads each avatar's LoRA from gs:\/\/avatar-studio-e2e/);
    expect(noIdentity.json!.error.hint).toContain(`gcloud storage buckets add-iam-policy-binding gs://${BUCKET} --member serviceAccount:${SA} --role roles/storage.objectViewer`);
    const notAnAccount = await cli(["deploy", "alice", "--studio", "fam", "--service-account", "avatar-serving", "--json"]);
    expect(notAnAccount.code).toBe(2);
    expect(notAnAccount.json!.error.message).toBe('"avatar-serving" is not a service account email (--service-account).');
    expect(world.fake.requests("DeployModel")).toHaveLength(0);

    const first = ok(await cli(["deploy", "alice", "--studio", "fam", "--service-account", SA, "--json"]));
    expect(first).toMatchObject({ avatars: ["alice"], deployed: true, endpoint: { name: "studio-fam", state: "ready" } });
    const [deploy] = world.fake.requests("DeployModel");
    expect(deploy).toMatchObject({ endpoint: `${parent}/endpoints/avatar-studio-fam`, deployedModel: { serviceAccount: SA, model: `${parent}/models/avatar-studio-fam@1` } });
    const manifest = JSON.parse((await objectsUnder(world.gcs, BUCKET, "avatar/_studios/fam/manifest.json")).get("avatar/_studios/fam/manifest.json")!.toString());
    expect(manifest.avatars.alice).toMatchObject({ model_uri: `gs://${BUCKET}/avatar/alice/runs/${runs.alice}/model`, version: "1" });

    // bob joins through the environment variable: the manifest changes, nothing is redeployed.
    env = { ...env, AVATAR_SERVING_SERVICE_ACCOUNT: SA };
    expect(ok(await cli(["deploy", "bob", "--studio", "fam", "--json"]))).toMatchObject({ avatars: ["alice", "bob"], deployed: false });
    const aliceBefore = await gen("alice");
    const bob = await gen("bob");
    const aliceAfter = await gen("alice");
    expect(aliceBefore.studio).toBe("fam");
    expect(bytes(aliceAfter).equals(bytes(aliceBefore))).toBe(true);
    expect(bytes(bob).equals(bytes(aliceBefore))).toBe(false);
    // doctor names the serving identity and looks for its read grant on the bucket.
    const doctor = await cli(["doctor", "--json"]);
    const check = doctor.json!.data?.checks?.find((c: { name: string }) => c.name === "studio serving") ?? doctor.json!.error;
    expect(check.message).toContain(SA);
    const predicts = world.fake.requests("Predict").slice(-3);
    expect(predicts.map((p) => p.endpoint)).toEqual(Array(3).fill(`${parent}/endpoints/avatar-studio-fam`));
  }, LONG);

  it("adds a third avatar without a redeploy, refuses another base, and down --studio leaves nothing billing", async () => {
    const bobFiles = await modelFiles("bob");
    const carolDir = artifactFolder(join(home, "carol"), "carol", "20260101-000003", bobFiles.weights, bobFiles.meta);
    ok(await cli(["register", "--name", "carol", "--artifact-uri", carolDir, "--json"]));
    expect(ok(await cli(["deploy", "carol", "--studio", "fam", "--json"]))).toMatchObject({ avatars: ["alice", "bob", "carol"], deployed: false });
    expect(bytes(await gen("carol")).equals(bytes(await gen("bob")))).toBe(true); // bob's LoRA, read from carol's model in the bucket
    expect(world.fake.requests("DeployModel")).toHaveLength(1);

    const otherBase = join(home, "tiny-other");
    cpSync(base, otherBase, { recursive: true });
    const aliceFiles = await modelFiles("alice");
    const olgaDir = artifactFolder(join(home, "olga"), "olga", "20260101-000004", aliceFiles.weights, aliceFiles.meta, { base_model: otherBase });
    ok(await cli(["register", "--name", "olga", "--artifact-uri", olgaDir, "--json"]));
    const refused = await cli(["deploy", "olga", "--studio", "fam", "--json"]);
    expect(refused.code).toBe(2);
    expect(refused.json!.error.message).toMatch(/^Cannot add olga to studio fam: olga was trained on sd15 \(.*tiny-other\), but studio fam serves sd15/);

    const listed = ok(await cli(["list", "--json"]));
    expect(listed.studios).toEqual([expect.objectContaining({ studio: "fam", avatars: ["alice", "bob", "carol"], usdPerHour: expect.any(Number) })]);
    expect(listed.studios[0].usdPerHourPerAvatar).toBeCloseTo(listed.studios[0].usdPerHour / 3, 3);
    expect(listed.billing.usdPerHour).toBe(listed.studios[0].usdPerHour);
    expect((await cli(["studio", "list"])).stdout).toMatch(/fam\s+sd15\s+alice, bob, carol\s+endpoint ready\s+≈ \$[\d.]+\/h \(≈ \$[\d.]+\/h per avatar\)/);

    expect(ok(await cli(["down", "--studio", "fam", "--json"]))).toMatchObject({ studio: "fam", stopped: true });
    const after = ok(await cli(["list", "--json"]));
    expect(after.billing.usdPerHour).toBe(0);
    expect(after.studios[0].endpoint).toBeUndefined();
    expect(world.fake.requests("DeleteEndpoint").map((r) => r.name)).toEqual([expect.stringMatching(/\/endpoints\/avatar-studio-fam$/)]);
  }, LONG);
});
