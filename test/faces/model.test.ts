// The face model on real photos (workflows/faces): detection counts on group shots, single-face
// crops, identity ranking of one face's augmentations against other people. One model per file.
import { beforeAll, describe, expect, it } from "vitest";
import { cosineSimilarity, likeness } from "../../src/core/faces.ts";
import { detectFile, loadFaceModel, type FaceModel } from "../../src/workflows/faces/index.ts";
import { cropRegion, GROUP_PHOTOS, PEOPLE, rgbOf, samplePhoto, TWO_PEOPLE } from "../support/faces.ts";

let model: FaceModel;
beforeAll(async () => {
  model = await loadFaceModel();
});

describe("loadFaceModel", () => {
  it("is loaded once per process", async () => {
    expect(await loadFaceModel()).toBe(model);
  });

  it("refuses pixels that are not RGB", async () => {
    await expect(model.detect({ data: new Uint8Array(10), width: 2, height: 2 })).rejects.toThrow(/3 bytes each/);
  });
});

describe("detection on group photos", () => {
  // Three of the six (3, 4 and 5 people) keep the file fast; all six count right (checked by hand).
  it.each([1, 4, 5] as const)("sample%i.jpg: the accurate detector counts every person", async (n) => {
    const found = await detectFile(samplePhoto(n), 800, { detector: "accurate" });
    expect(found.faces).toHaveLength(GROUP_PHOTOS[n]);
    expect(found.source.width).toBe(1920);
    expect(found.width).toBe(800);
  });

  it("every face comes with an integer box inside the image, 68 landmarks and a unit embedding, largest first", async () => {
    const found = await detectFile(samplePhoto(6), 800, { detector: "accurate" });
    expect(found.faces.length).toBe(GROUP_PHOTOS[6]);
    for (const face of found.faces) {
      const [x0, y0, x1, y1] = face.box;
      expect(face.box.every(Number.isInteger)).toBe(true);
      expect(x0).toBeGreaterThanOrEqual(0);
      expect(y0).toBeGreaterThanOrEqual(0);
      expect(x1).toBeLessThanOrEqual(found.width);
      expect(y1).toBeLessThanOrEqual(found.height);
      expect(face.landmarks).toHaveLength(68);
      expect(Math.hypot(...face.embedding)).toBeCloseTo(1, 4);
    }
    const areas = found.faces.map(({ box }) => (box[2] - box[0]) * (box[3] - box[1]));
    expect(areas).toEqual([...areas].sort((a, b) => b - a));
  });

  it("two people side by side are two faces of comparable size", async () => {
    const faces = await model.detect(await rgbOf(await cropRegion(TWO_PEOPLE)));
    expect(faces).toHaveLength(2);
    const heights = faces.map(({ box }) => box[3] - box[1]);
    expect(Math.min(...heights) / Math.max(...heights)).toBeGreaterThan(0.7);
  });
});

describe("single faces", () => {
  it.each(Object.keys(PEOPLE))("person %s: one face, centred in the crop", async (key) => {
    const region = PEOPLE[key as keyof typeof PEOPLE];
    const faces = await model.detect(await rgbOf(await cropRegion(region)));
    expect(faces).toHaveLength(1);
    const [x0, y0, x1, y1] = faces[0]!.box;
    expect(Math.abs((x0 + x1) / 2 - region.width / 2)).toBeLessThan(region.width * 0.2);
    expect(Math.abs((y0 + y1) / 2 - region.height / 2)).toBeLessThan(region.height * 0.25);
  });

  it("no face in noise", async () => {
    const data = new Uint8Array(256 * 256 * 3);
    let seed = 7;
    for (let i = 0; i < data.length; i++) data[i] = (seed = (seed * 1103515245 + 12345) & 0x7fffffff) >> 23;
    expect(await model.detect({ data, width: 256, height: 256 })).toEqual([]);
  });
});

describe("identity", () => {
  // Augmentations of person a: re-cropped, darker, brighter, smaller, slightly blurred, shifted.
  const augmentations = async () => {
    const { left, top, width, height } = PEOPLE.a;
    const base = await (await cropRegion(PEOPLE.a)).toBuffer();
    const sharp = (await import("sharp")).default;
    return Promise.all([
      rgbOf(sharp(base).blur(2)),
      rgbOf(sharp(base).extract({ left: 40, top: 30, width: width - 80, height: height - 60 })),
      rgbOf(sharp(base).modulate({ brightness: 0.7 })),
      rgbOf(sharp(base).modulate({ brightness: 1.3 })),
      rgbOf(sharp(base).resize(Math.round(width * 0.6))),
      rgbOf(await cropRegion({ sample: 1, left: left - 20, top, width: width + 20, height })),
    ]);
  };

  it("augmentations of one face rank above every other person", async () => {
    const embed = async (image: Awaited<ReturnType<typeof rgbOf>>) => {
      const faces = await model.detect(image);
      expect(faces.length).toBeGreaterThanOrEqual(1);
      return faces[0]!.embedding;
    };
    const reference = await embed(await rgbOf(await cropRegion(PEOPLE.a)));
    const same = await Promise.all((await augmentations()).map(embed));
    const others = await Promise.all([PEOPLE.b, PEOPLE.c, PEOPLE.d].map(async (region) => embed(await rgbOf(await cropRegion(region)))));
    const sameScores = same.map((embedding) => cosineSimilarity(embedding, reference));
    const otherScores = others.map((embedding) => cosineSimilarity(embedding, reference));
    expect(Math.min(...sameScores)).toBeGreaterThan(Math.max(...otherScores));
    expect(likeness(same[0]!, same.slice(1))).toBeGreaterThan(likeness(others[0]!, same) + 0.05);
  });
});
