// Pure face rules: per-photo skips, crops, identity outliers, the set summary, faces.json.
import { describe, expect, it } from "vitest";
import { skipReason } from "../../src/core/dataset.ts";
import { exposureNote, FACE_RULES, faceCountProblem, identityOutliers, laplacianVariance, meanValue, poseOf, summarizeFaceSet } from "../../src/core/face-checks.ts";
import { chooseCrop, framingRect, minFaceSide } from "../../src/core/face-crops.ts";
import { facesManifest } from "../../src/core/face-manifest.ts";
import { normalizeEmbedding, type FaceBox } from "../../src/core/faces.ts";

const box = (x0: number, y0: number, x1: number, y1: number): { box: FaceBox } => ({ box: [x0, y0, x1, y1] });

describe("faceCountProblem", () => {
  it.each([
    ["no face", [], "no-face"],
    ["one face", [box(0, 0, 100, 100)], undefined],
    ["a second face of comparable size", [box(0, 0, 100, 100), box(200, 0, 270, 70)], "multi-face"],
    ["a small face in the background", [box(0, 0, 100, 100), box(200, 0, 240, 40)], undefined],
    ["three faces, the second small", [box(0, 0, 100, 100), box(0, 0, 50, 50), box(0, 0, 55, 55)], undefined],
    ["the largest listed last", [box(200, 0, 270, 70), box(0, 0, 100, 100)], "multi-face"],
  ])("%s", (_, faces, expected) => {
    expect(faceCountProblem(faces)).toBe(expected);
  });
});

describe("framingRect and chooseCrop", () => {
  const face: FaceBox = [900, 500, 1300, 900]; // 400 px face in a 4000x3000 photo

  it.each([
    ["close-up", 880],
    ["head-and-shoulders", 1400],
  ] as const)("%s: a square %i px, inside the photo, containing the face", (framing, side) => {
    const rect = framingRect(face, 4000, 3000, framing);
    expect(rect[2] - rect[0]).toBe(side);
    expect(rect[3] - rect[1]).toBe(side);
    expect(rect[0]).toBeLessThanOrEqual(face[0]);
    expect(rect[1]).toBeLessThanOrEqual(face[1]);
    expect(rect[2]).toBeGreaterThanOrEqual(face[2]);
    expect(rect[3]).toBeGreaterThanOrEqual(face[3]);
  });

  it("is shifted, not cut, at the photo's edge, and never larger than its short side", () => {
    expect(framingRect([0, 0, 400, 400], 4000, 3000, "head-and-shoulders")).toEqual([0, 0, 1400, 1400]);
    expect(framingRect([100, 100, 900, 900], 1000, 1000, "head-and-shoulders")).toEqual([0, 0, 1000, 1000]);
  });

  it.each([
    // resolution, preferred, expected framing (or undefined: face-too-small)
    [512, "close-up", "close-up"],
    [512, "head-and-shoulders", "head-and-shoulders"],
    [1024, "close-up", "head-and-shoulders"], // a close-up would be 880 px: upscaled
    [1536, "close-up", undefined], // even head-and-shoulders is 1400 px
  ] as const)("at %i px, preferring %s: %s", (resolution, prefer, expected) => {
    const crop = chooseCrop(face, 4000, 3000, resolution, prefer);
    expect(crop?.framing).toBe(expected);
    if (crop) {
      expect(crop.outputSide).toBe(resolution);
      expect(crop.rect[2] - crop.rect[0]).toBeGreaterThanOrEqual(resolution);
      const [x0, y0, x1, y1] = crop.faceInOutput;
      expect(crop.faceInOutput.every(Number.isInteger)).toBe(true);
      expect(x0).toBeGreaterThanOrEqual(0);
      expect(y0).toBeGreaterThanOrEqual(0);
      expect(x1).toBeLessThanOrEqual(resolution);
      expect(y1).toBeLessThanOrEqual(resolution);
      // The face keeps its share of the crop.
      expect((x1 - x0) / resolution).toBeCloseTo(400 / (crop.rect[2] - crop.rect[0]), 2);
    }
  });

  it("minFaceSide is the face below which nothing fits", () => {
    expect(minFaceSide(1024)).toBe(293);
    expect(chooseCrop([0, 0, 292, 292], 4000, 3000, 1024, "close-up")).toBeUndefined();
    expect(chooseCrop([0, 0, 293, 293], 4000, 3000, 1024, "close-up")?.framing).toBe("head-and-shoulders");
  });
});

describe("measures", () => {
  it.each([
    ["flat grey", () => new Uint8Array(100).fill(128), 0],
    ["one bright pixel", () => Object.assign(new Uint8Array(9), { 4: 9 }), 0], // one interior sample: no variance
  ])("laplacianVariance: %s", (_, grey, expected) => {
    const data = grey();
    const side = Math.sqrt(data.length);
    expect(laplacianVariance(data, side, side)).toBe(expected);
  });

  it("a checkerboard is sharper than its blurred copy", () => {
    const n = 32;
    const sharp = new Uint8Array(n * n).map((_, i) => (((i % n) + Math.floor(i / n)) % 2 ? 255 : 0));
    const soft = sharp.map((_, i) => (i % n > 0 ? (sharp[i]! + sharp[i - 1]!) / 2 : sharp[i]!));
    expect(laplacianVariance(sharp, n, n)).toBeGreaterThan(laplacianVariance(soft, n, n) * 10);
  });

  it.each([
    [30, /dark/],
    [128, undefined],
    [230, /bright/],
  ])("exposure %i", (luma, expected) => {
    const note = exposureNote(luma);
    if (expected) expect(note).toMatch(expected);
    else expect(note).toBeUndefined();
    expect(meanValue(new Uint8Array(4).fill(luma))).toBe(luma);
  });
});

describe("identityOutliers", () => {
  // One person: small variations around a direction; someone else: a rotated direction.
  const person = (i: number) => normalizeEmbedding(Array.from({ length: 8 }, (_, k) => (k === 0 ? 1 : 0.04 * Math.sin(i * 7 + k))));
  const other = normalizeEmbedding([0.85, 0.5, 0, 0, 0, 0, 0, 0.1]);

  it("flags the one photo of someone else, naming its index", () => {
    const set = [person(1), person(2), other, person(3), person(4), person(5)];
    const verdict = identityOutliers(set);
    expect(verdict.outliers).toEqual([2]);
    expect(verdict.similarity[2]).toBeLessThan(verdict.threshold);
    expect(Math.min(...verdict.similarity.filter((_, i) => i !== 2))).toBeGreaterThanOrEqual(verdict.threshold);
  });

  // Vectors at a chosen cosine to the x axis, each off in a direction of its own (10 dimensions).
  const at = (cos: number, axis: number) => normalizeEmbedding(Array.from({ length: 10 }, (_, i) => (i === 0 ? cos : i === axis ? Math.sqrt(1 - cos * cos) : 0)));
  const tight = [0.97, 0.98, 0.99, 0.975, 0.985, 0.97, 0.99].map((cos, k) => at(cos, k + 1));
  const loose = [0.86, 0.88, 0.9, 0.92, 0.93, 0.89, 0.91].map((cos, k) => at(cos, k + 1));

  it.each([
    ["a tight set keeps a 0.94 photo (the ceiling: 0.93 and up is the same person)", tight, 0.94, false],
    ["a tight set drops a 0.90 photo", tight, 0.9, true],
    ["a loose set keeps a photo as far off as its loosest member", loose, 0.86, false],
    ["a loose set drops a 0.72 photo (the floor)", loose, 0.72, true],
  ])("%s", (_, set, odd, flagged) => {
    const verdict = identityOutliers([...set, at(odd, 9)]);
    expect(verdict.threshold).toBeLessThanOrEqual(FACE_RULES.identityCeiling);
    expect(verdict.threshold).toBeGreaterThanOrEqual(FACE_RULES.identityFloor);
    expect(verdict.outliers).toEqual(flagged ? [set.length] : []);
  });

  it("flags nothing in a consistent set", () => {
    expect(identityOutliers([1, 2, 3, 4, 5].map(person)).outliers).toEqual([]);
  });

  it("never flags a majority, and cannot judge fewer than three faces", () => {
    const mixed = [person(1), other, normalizeEmbedding([0, 0, 1, 0, 0, 0, 0, 0]), normalizeEmbedding([0, 0, 0, 1, 0, 0, 0, 0])];
    expect(identityOutliers(mixed).outliers.length).toBeLessThan(mixed.length / 2);
    const two = identityOutliers([person(1), other]);
    expect(two.outliers).toEqual([]);
    expect(two.threshold).toBeNaN();
    expect(FACE_RULES.identityMinFaces).toBe(3);
  });
});

describe("poseOf and summarizeFaceSet", () => {
  // A synthetic 68-point face: eyes at y=100 (x 80-120 and 180-220), nose tip (30) at x=150+turn, mouth below.
  const landmarks = (turn: number, open: number): [number, number][] => {
    const points: [number, number][] = Array.from({ length: 68 }, () => [150, 200]);
    for (let i = 36; i < 42; i++) points[i] = [80 + (i - 36) * 8, 100];
    for (let i = 42; i < 48; i++) points[i] = [180 + (i - 42) * 8, 100];
    points[30] = [150 + turn, 160];
    points[48] = [120, 220];
    points[54] = [180, 220];
    points[62] = [150, 215];
    points[66] = [150, 215 + open];
    return points;
  };

  it("reads the head turn and the open mouth", () => {
    const pose = poseOf(landmarks(20, 15))!;
    expect(pose.yaw).toBeCloseTo(0.2, 6);
    expect(pose.mouthOpen).toBeCloseTo(0.25, 6);
    expect(poseOf(undefined)).toBeUndefined();
    expect(poseOf(landmarks(0, 0).slice(0, 5))).toBeUndefined();
  });

  it("a frontal, frozen set is low variety with advice; a varied one is not", () => {
    const e = normalizeEmbedding([1, 0, 0]);
    const frozen = Array.from({ length: 12 }, () => ({ embedding: e, pose: poseOf(landmarks(0, 0)) }));
    const low = summarizeFaceSet(frozen, 10);
    expect(low.variety).toBe("low");
    expect(low.advice).toMatch(/faces the camera the same way/);
    const varied = Array.from({ length: 12 }, (_, i) => ({
      embedding: normalizeEmbedding([1, 0.2 * Math.sin(i), 0.2 * Math.cos(i)]),
      pose: poseOf(landmarks((i % 5) * 12 - 24, (i % 3) * 10)),
    }));
    const high = summarizeFaceSet(varied, 10);
    expect(high.variety).toBe("high");
    expect(high.advice).toBeUndefined();
    expect(summarizeFaceSet(varied.slice(0, 6), 10).advice).toMatch(/Only 6 usable photos/);
  });
});

describe("facesManifest", () => {
  it("is the exact documented JSON, entries sorted, boxes as given", () => {
    const json = facesManifest([
      { entry: "0002.jpg", width: 512, height: 512, box: [10, 20, 300, 310] },
      { entry: "0001.jpg", width: 1024, height: 1024, box: [0, 0, 1024, 1024] },
    ]);
    expect(json).toBe('{"schema":1,"images":{"0001.jpg":{"width":1024,"height":1024,"box":[0,0,1024,1024]},"0002.jpg":{"width":512,"height":512,"box":[10,20,300,310]}}}');
    expect(facesManifest([])).toBe('{"schema":1,"images":{}}');
  });

  it.each([
    ["outside the image", [0, 0, 513, 100]],
    ["not integers", [0.5, 0, 100, 100]],
    ["empty", [50, 50, 50, 100]],
  ] as const)("refuses a box %s", (_, bad) => {
    expect(() => facesManifest([{ entry: "0001.jpg", width: 512, height: 512, box: [...bad] as FaceBox }])).toThrow(/not inside/);
  });
});

describe("face skip reasons", () => {
  it.each([
    ["no-face", {}, /no face found .*--no-face-check/],
    ["multi-face", { faces: 3 }, /3 faces of comparable size/],
    ["face-too-small", { resolution: 1024, cropSide: 700, faceSide: 293 }, /1024 px: a crop around it would be 700 px .* 293 px or more/],
    ["face-too-small", { resolution: 1024, cropSide: 1100, faceSide: 293, width: 2000, height: 1500 }, /1024 px: a crop around it would be 1100 px .* 293 px or more/],
    ["face-too-small", { resolution: 1024, cropSide: 800, faceSide: 293, width: 800, height: 1200 }, /photo is 800x1200, smaller than the base model's 1024 px/],
    ["blurry", { sharpness: 12.4, minSharpness: 40 }, /blurry \(sharpness 12; 40 or more/],
    ["different-person", { similarity: 0.81234, threshold: 0.95 }, /different person .*0\.812.*0\.950 or more/],
  ] as const)("%s", (code, details, expected) => {
    expect(skipReason(code, details)).toMatch(expected);
  });
});
