// generate reports the safety checker's verdict (issue #13 item 4): a warning line naming the
// image, `nsfw` in images.json and in the --json result. In-process, against a scripted backend.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Backend } from "../../src/backends/backend.ts";
import type { Context } from "../../src/context.ts";
import { generateImages } from "../../src/workflows/generate.ts";
import { scratchDir, testCtx } from "../dataset/helpers.ts";

const { dir, cleanup } = scratchDir("avatar-generate-");
afterAll(cleanup);

/** A deployed endpoint whose answers are scripted: the images with these seeds come back flagged. */
function scriptedBackend(flaggedSeeds: number[], requests: unknown[]): Backend {
  const serving = {
    get: async () => ({ id: "local-alice", name: "alice", state: "ready" }),
    predict: async (_name: string, body: { instances: { prompt: string }[]; parameters: { seed: number } }) => {
      requests.push(body);
      const seed = body.parameters.seed;
      const nsfw = flaggedSeeds.includes(seed);
      return { predictions: [{ image_b64: Buffer.from(`image ${seed}`).toString("base64"), mime_type: "image/jpeg", seed, prompt: body.instances[0]!.prompt, width: 256, height: 256, nsfw }] };
    },
  };
  return { kind: "local", serving } as unknown as Backend;
}

const input = { name: "alice", prompts: ["{avatar} at the beach", "{avatar} skiing"], numImages: 2, seed: 10, format: "jpeg" as const, outDir: "out", contactSheet: false };

describe("generate and the safety checker", () => {
  it("names each blacked-out image in a warning and records nsfw in images.json and the result", async () => {
    const ctx = testCtx(dir);
    const requests: unknown[] = [];
    const result = await generateImages(ctx as unknown as Context, scriptedBackend([12], requests), input);
    expect(result.images.map((i) => [i.seed, i.nsfw])).toEqual([[10, false], [11, false], [12, true], [13, false]]);
    expect(ctx.stderr()).toContain("warning: image 3 was blacked out by the safety checker (03-skiing-12.jpg); try another seed or prompt.");
    expect(ctx.stderr().match(/blacked out/g)).toHaveLength(1);
    const written = JSON.parse(readFileSync(join(result.dir, "images.json"), "utf8"));
    expect(written.images.map((i: { nsfw: boolean }) => i.nsfw)).toEqual([false, false, true, false]);
    // one image per request: the smallest request, which fits every GPU's per-request limits
    expect(requests).toHaveLength(4);
    expect(requests.every((r) => (r as { instances: unknown[]; parameters: { num_images: number } }).instances.length === 1 && (r as { parameters: { num_images: number } }).parameters.num_images === 1)).toBe(true);
  });

  it("an endpoint that does not report nsfw (an older handler) counts as not flagged, silently", async () => {
    const ctx = testCtx(dir);
    const backend = scriptedBackend([], []);
    const predict = backend.serving.predict.bind(backend.serving);
    backend.serving.predict = async (name, body, options) => {
      const response = await predict(name, body, options);
      for (const p of response.predictions) delete p.nsfw;
      return response;
    };
    const result = await generateImages(ctx as unknown as Context, backend, { ...input, numImages: 1 });
    expect(result.images.map((i) => i.nsfw)).toEqual([false, false]);
    expect(ctx.stderr()).not.toContain("safety checker");
  });
});
