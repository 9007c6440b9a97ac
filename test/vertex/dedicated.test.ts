// Dedicated endpoints (issue #11 §2) through the built CLI: deploy creates a dedicated endpoint
// (dedicatedEndpointEnabled, an inference timeout), predictions go to its own DNS name (the fake's
// second host, which checks the name and the x-vertex-ai-endpoint-id header), and a PNG at 1024 px
// (≈ 3.5 MB as a response from the tiny model, whose noise compresses badly) comes back whole.
// --shared-endpoint keeps the old limits: the same PNG is refused before anything is sent, and one
// the estimate lets through but Vertex drops is refused with a clear message too.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { helpers, v1 } from "@google-cloud/aiplatform";
import { grpc } from "google-gax";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, runCli, type CliResult } from "../support/cli.ts";
import { PROJECT, REGION, startVertexWorld, tinyBase, type VertexWorld } from "./helpers.ts";

const LONG = 10 * 60_000;
const BUCKET = "avatar-vx-dedicated";
const NAME = "alice";
let world: VertexWorld;
let home: string;
let env: Record<string, string | undefined>;

const vertex = ["--backend", "vertex", "--project", PROJECT, "--region", REGION, "--bucket", BUCKET];
const cli = (args: string[]) => runCli([...args, ...vertex], { env, cwd: home, timeoutMs: LONG });
/** The fake names resources with the project number, as Vertex does. */
const endpointOf = (name: string) => `projects/${world.fake.projectNumber}/locations/${REGION}/endpoints/avatar-${name}`;
const dnsOf = (name: string) => `avatar-${name}.${REGION}-${world.fake.projectNumber}.prediction.vertexai.goog`;
const predictsSince = (n: number) => world.fake.predictions.slice(n);

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

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "avatar-vx-dedicated-"));
  const photos = join(home, "photos");
  let base: string;
  [world, base] = await Promise.all([startVertexWorld(BUCKET), tinyBase(), writeSyntheticSelfies(photos, 6, 41)]);
  env = cleanEnv(home, world.env);
  ok(await cli(["train", photos, "--name", NAME, "--base", base, "--steps", "2", "--resolution", "64", "--rank", "4", "--json"]));
}, LONG);

afterAll(async () => {
  await world?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("deploy --dry-run, without credentials", () => {
  const bare = (args: string[]) => runCli([...args, "--backend", "vertex", "--project", "my-proj", "--bucket", "my-bucket"], { env: cleanEnv(mkdtempSync(join(tmpdir(), "avatar-noadc-"))), cwd: home, timeoutMs: 120_000 });

  it("plans a CreateEndpoint with dedicatedEndpointEnabled and the inference timeout; --shared-endpoint plans a plain one", async () => {
    const dedicated = ok(await bare(["deploy", NAME, "--dry-run", "--json"]));
    expect(dedicated.requests[0]).toMatchObject({ service: "EndpointService", method: "CreateEndpoint" });
    expect(dedicated.requests[0].request).toEqual({
      parent: "projects/my-proj/locations/us-central1",
      endpointId: "avatar-alice",
      endpoint: {
        displayName: "avatar-alice",
        labels: { avatar: NAME, "managed-by": "avatar-cli" },
        dedicatedEndpointEnabled: true,
        clientConnectionConfig: { inferenceTimeout: { seconds: 300 } },
      },
    });
    const shared = ok(await bare(["deploy", NAME, "--dry-run", "--shared-endpoint", "--json"]));
    expect(shared.requests[0].request.endpoint).toEqual({ displayName: "avatar-alice", labels: { avatar: NAME, "managed-by": "avatar-cli" } });
  }, LONG);
});

describe("a dedicated endpoint (the default)", () => {
  it("deploy creates it; status shows its type and the URL at its DNS name", async () => {
    const data = ok(await cli(["deploy", NAME, "--json"]));
    const url = `https://${dnsOf(NAME)}/v1/${endpointOf(NAME)}:predict`;
    expect(data.endpoint).toMatchObject({ state: "ready", endpointType: "dedicated", url });
    const [create] = world.fake.requests("CreateEndpoint");
    expect(create.endpoint).toMatchObject({ dedicatedEndpointEnabled: true, clientConnectionConfig: { inferenceTimeout: { seconds: "300" } } });
    // The model's env carries the dedicated endpoint's limits to handler.py.
    const env = Object.fromEntries(world.fake.requests("UploadModel")[0].model.containerSpec.env.map((e: { name: string; value: string }) => [e.name, e.value]));
    expect(env).toMatchObject({ AVATAR_MAX_RESPONSE_BYTES: "10000000", AVATAR_PREDICT_TIMEOUT_S: "300" });
    const status = await cli(["status", NAME]);
    expect(status.stdout).toContain(`endpoint: ready (version 1, dedicated) ${url}`);
  }, LONG);

  it("predictions go to the dedicated host, addressed to its DNS name with the endpoint-id header; none to the shared host", async () => {
    const before = world.fake.predictions.length;
    const data = ok(await cli(["generate", NAME, "{avatar} smiling", "-n", "2", "--steps", "1", "--width", "256", "--height", "256", "--json"]));
    expect(data.images).toHaveLength(2);
    const sent = predictsSince(before);
    expect(sent).toHaveLength(2);
    for (const p of sent) expect(p).toMatchObject({ host: "dedicated", authority: dnsOf(NAME), endpointIdHeader: `avatar-${NAME}`, endpoint: `projects/${PROJECT}/locations/${REGION}/endpoints/avatar-${NAME}`, outcome: "ok" });
    expect(world.fake.calls.filter((c) => c.method === "Predict" && c.host === "shared")).toEqual([]);
  }, LONG);

  it("a PNG at 1024 px, a response of more than 3 MB, comes back whole", async () => {
    const before = world.fake.predictions.length;
    const data = ok(await cli(["generate", NAME, "{avatar}", "--format", "png", "--steps", "1", "--width", "1024", "--height", "1024", "--json"]));
    const [sent] = predictsSince(before);
    expect(sent).toMatchObject({ host: "dedicated", outcome: "ok" });
    expect(sent!.responseBytes).toBeGreaterThan(3_000_000);
    const file = data.images[0].file as string;
    const meta = await sharp(file).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["png", 1024, 1024]);
    expect(statSync(file).size).toBeGreaterThan(2_000_000);
  }, LONG);

  it("the shared API host refuses this endpoint the way Vertex does (a real client)", async () => {
    const [host, port] = world.fake.address.split(":");
    const client = new v1.PredictionServiceClient({ apiEndpoint: host, port: Number(port), sslCreds: grpc.credentials.createInsecure(), universeDomain: "googleapis.com" });
    try {
      const error = await client.predict({ endpoint: `projects/${PROJECT}/locations/${REGION}/endpoints/avatar-${NAME}`, instances: [helpers.toValue({ prompt: "x" })!] }).catch((e) => e);
      expect(error.code).toBe(9);
      expect(error.details).toBe(`This endpoint is a dedicated endpoint via CloudESF and cannot be accessed through the Vertex AI API. Please access the endpoint using its dedicated dns name '${dnsOf(NAME)}'`);
    } finally {
      await client.close();
    }
  });

  it("a deploy asking for a shared endpoint stops before sending anything (exit 2), and says to `avatar down` first", async () => {
    const deploys = world.fake.requests("DeployModel").length;
    for (const extra of [[], ["--dry-run"]]) {
      const error = failed(await cli(["deploy", NAME, "--shared-endpoint", ...extra, "--json"]), 2);
      expect(error.message).toBe(`${NAME}'s endpoint is dedicated, and an endpoint keeps the type it was created with; this deploy asks for a shared one.`);
      expect(error.hint).toMatch(/Deploy without --shared-endpoint to keep using it, or run `avatar down alice` first/);
    }
    expect(world.fake.requests("DeployModel")).toHaveLength(deploys);
  }, LONG);
});

describe("a shared endpoint (--shared-endpoint)", () => {
  it("after `avatar down`, deploy --shared-endpoint creates a shared one; status shows the regional URL", async () => {
    ok(await cli(["down", NAME, "--json"]));
    const data = ok(await cli(["deploy", NAME, "--shared-endpoint", "--json"]));
    const url = `https://${REGION}-aiplatform.googleapis.com/v1/${endpointOf(NAME)}:predict`;
    expect(data.endpoint).toMatchObject({ state: "ready", endpointType: "shared", url });
    expect(world.fake.requests("CreateEndpoint").at(-1).endpoint).toMatchObject({ dedicatedEndpointEnabled: false, clientConnectionConfig: null });
    expect((await cli(["status", NAME])).stdout).toContain(`endpoint: ready (version 1, shared) ${url}`);
  }, LONG);

  it("the 1024 px PNG (≈ 2.8 MB estimated) is refused before anything is sent: exit 2, and the way to a dedicated endpoint", async () => {
    const before = world.fake.predictions.length;
    const out = join(home, "refused");
    const error = failed(await cli(["generate", NAME, "{avatar}", "--format", "png", "--steps", "1", "--width", "1024", "--height", "1024", "--out", out, "--json"]), 2);
    expect(error.code).toBe("BAD_INPUT");
    expect(error.message).toBe(`${NAME}'s endpoint is shared: an image of 1024x1024 as PNG comes to about 2.8 MB, over the 1.5 MB a shared endpoint returns.`);
    expect(error.hint).toBe(
      "Ask for --format jpeg (about a quarter of the size of PNG) or a smaller --width/--height; or serve from a dedicated endpoint (10 MB): `avatar down alice`, then `avatar deploy alice` without --shared-endpoint.",
    );
    expect(predictsSince(before)).toEqual([]);
    expect(existsSync(join(out, NAME)) ? readdirSync(join(out, NAME)) : []).toEqual([]);
  }, LONG);

  it("a PNG the estimate lets through but that comes out bigger (704 px of noise, ≈ 1.65 MB) is dropped by Vertex: exit 2 with a clear message", async () => {
    const before = world.fake.predictions.length;
    const error = failed(await cli(["generate", NAME, "{avatar}", "--format", "png", "--steps", "1", "--width", "704", "--height", "704", "--json"]), 2);
    expect(error.message).toMatch(/^The images are larger than the shared endpoint returns \(1\.5 MB\): Failed to handle request\. .*Response size too large\. Received at least \d+ bytes/);
    expect(error.hint).toMatch(/--format jpeg .* `avatar deploy alice` without --shared-endpoint/);
    const [sent] = predictsSince(before);
    expect(sent).toMatchObject({ host: "shared", authority: world.fake.address });
    expect(sent!.responseBytes).toBeGreaterThan(1_500_000);
    expect(sent!.outcome).toMatch(/^3 Failed to handle request/);
  }, LONG);

  it("a JPEG goes through the shared host, without the dedicated header", async () => {
    const before = world.fake.predictions.length;
    const data = ok(await cli(["generate", NAME, "{avatar}", "--steps", "1", "--width", "256", "--height", "256", "--json"]));
    expect(data.images).toHaveLength(1);
    const [sent] = predictsSince(before);
    expect(sent).toMatchObject({ host: "shared", outcome: "ok" });
    expect(sent!.endpointIdHeader).toBeUndefined();
  }, LONG);

  it("deploy without --shared-endpoint asks for a dedicated one: exit 2, keep it with --shared-endpoint or `avatar down` first", async () => {
    const error = failed(await cli(["deploy", NAME, "--json"]), 2);
    expect(error.message).toMatch(/endpoint is shared, .* asks for a dedicated one/);
    expect(error.hint).toBe(`Pass --shared-endpoint to keep using it, or run \`avatar down ${NAME}\` first, then \`avatar deploy ${NAME}\` for a dedicated one.`);
    expect(ok(await cli(["deploy", NAME, "--shared-endpoint", "--json"])).reused).toBe(true);
  }, LONG);
});
