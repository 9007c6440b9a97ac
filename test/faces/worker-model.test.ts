// The face model in a worker thread (workflows/faces/worker-model.ts), as prepare uses it: the same
// faces as the main-thread model, errors passed back as errors, and an idle worker that never keeps
// the process alive. The worker is the built dist/face-worker.cjs (vitest's globalSetup builds).
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cosineSimilarity } from "../../src/core/faces.ts";
import { loadFaceModel, startFaceModel, type FaceModel, type FaceModelHandle, type RgbImage } from "../../src/workflows/faces/index.ts";
import { cropRegion, PEOPLE, rgbOf } from "../support/faces.ts";

let handle: FaceModelHandle;
let inWorker: FaceModel;
let image: RgbImage;
beforeAll(async () => {
  handle = startFaceModel();
  inWorker = await handle.model;
  image = await rgbOf(await cropRegion(PEOPLE.a));
});
afterAll(() => handle.close());

describe("startFaceModel", () => {
  it("runs in a worker thread and finds what the main-thread model finds", async () => {
    expect(handle.thread).toBe("worker");
    const [fromWorker, here] = await Promise.all([inWorker.detect(image, { detector: "auto" }), (await loadFaceModel()).detect(image, { detector: "auto" })]);
    expect(fromWorker).toHaveLength(1);
    expect(fromWorker[0]!.box).toEqual(here[0]!.box);
    expect(fromWorker[0]!.landmarks).toEqual(here[0]!.landmarks);
    expect(fromWorker[0]!.embedding).toBeInstanceOf(Float32Array);
    expect(cosineSimilarity(fromWorker[0]!.embedding, here[0]!.embedding)).toBeGreaterThan(0.9999);
  });

  it("answers concurrent requests each with its own image's faces", async () => {
    const blank: RgbImage = { data: new Uint8Array(64 * 64 * 3).fill(128), width: 64, height: 64 };
    const [face, none, again] = await Promise.all([inWorker.detect(image), inWorker.detect(blank), inWorker.detect(image)]);
    expect(face).toHaveLength(1);
    expect(none).toHaveLength(0);
    expect(again[0]!.box).toEqual(face[0]!.box);
  });

  it("a failed request rejects with the model's own message, and the worker keeps answering", async () => {
    await expect(inWorker.detect({ data: new Uint8Array(10), width: 2, height: 2 })).rejects.toThrow(/3 bytes each/);
    expect(await inWorker.detect(image)).toHaveLength(1);
  });

  it("after close every request fails clearly instead of hanging", async () => {
    const other = startFaceModel();
    const model = await other.model;
    await other.close();
    await expect(model.detect(image)).rejects.toThrow(/face model was closed/);
  });

  it("an idle worker that was never closed does not keep the process alive", () => {
    const script = `
      import { startFaceModel } from ${JSON.stringify(new URL("../../src/workflows/faces/worker-model.ts", import.meta.url).pathname)};
      const handle = startFaceModel();
      const model = await handle.model;
      const faces = await model.detect({ data: new Uint8Array(32 * 32 * 3), width: 32, height: 32 });
      console.log(handle.thread, faces.length);
    `;
    const started = Date.now();
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    expect(run.stderr).not.toMatch(/Error/);
    expect(run.stdout.trim()).toBe("worker 0");
    expect(run.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(55_000);
  });
});
