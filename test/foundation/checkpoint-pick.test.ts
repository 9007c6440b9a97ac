// The checkpoint ranking rule on plain numbers (core/checkpoint-pick.ts): what wins, what a
// near-copy costs, ties, the no-face fallback, and the explicit choices.
import { describe, expect, it } from "vitest";
import {
  isNearCopy,
  nearCopyOf,
  likenessLabel,
  parseCheckpointChoice,
  pickCheckpoint,
  rankCheckpoints,
  sampleScore,
  summariseCheckpoint,
  type SampleScore,
} from "../../src/core/checkpoint-pick.ts";
import { faceHash, faceThumbnail } from "../../src/core/face-hash.ts";
import { differenceHash as gridHash, hammingDistance as hashDistance } from "../../src/core/dataset.ts";

/** The face hash: dataset.ts differenceHash on a 9×8 grid (bit = left < right). */
const differenceHash = (gray: readonly number[] | Uint8Array) => gridHash(Uint8Array.from(gray), 9, 8);

const face = (likeness: number, extra: Partial<SampleScore> = {}): SampleScore => ({ file: "s.png", face: true, likeness, ...extra });
const none: SampleScore = { file: "s.png", face: false, likeness: null };
const copy = (likeness: number): SampleScore => face(likeness, { nearCopy: { photo: "0003.jpg", similarity: 0.97, hashDistance: 3 } });

describe("summariseCheckpoint", () => {
  it("scores counted samples over all samples: a missing face or a near-copy scores 0", () => {
    // 0.97 → (0.97 - 0.85) / 0.15 = 0.8; 0.91 → 0.4; (0.8 + 0.4) / 4 samples = 0.3
    const row = summariseCheckpoint(200, [face(0.97), face(0.91), none, copy(0.99)]);
    expect(row).toEqual({ step: 200, samples: 4, faces: 3, likeness: 0.94, worst: 0.91, nearCopies: 1, score: 0.3 });
  });
  it("has no likeness when nothing counts; someone else's face (below the floor) scores 0", () => {
    expect(summariseCheckpoint(100, [none, none])).toMatchObject({ faces: 0, likeness: null, worst: null, score: 0 });
    expect(summariseCheckpoint(100, [face(0.6), face(0.91)])).toMatchObject({ likeness: 0.755, worst: 0.6, score: 0.2 });
    expect(sampleScore(0.8)).toBe(0);
    expect(sampleScore(1.2)).toBe(1);
  });
});

describe("pickCheckpoint (auto)", () => {
  const steps = [100, 200, 300, 400];
  it("picks the checkpoint whose samples look most like the person, not the last", () => {
    const rows = [
      summariseCheckpoint(100, [face(0.88), none, none, face(0.88)]),
      summariseCheckpoint(200, [face(0.97), face(0.96), face(0.95), face(0.97)]),
      summariseCheckpoint(300, [face(0.91), face(0.91), none, face(0.91)]),
      summariseCheckpoint(400, [copy(0.99), copy(0.98), face(0.94), none]),
    ];
    const pick = pickCheckpoint(rows, steps, { kind: "auto" });
    expect(pick).toMatchObject({ step: 200, lastStep: 400, choice: "auto", noFaces: false, row: { step: 200, faces: 4 } });
    expect(pick.row!.score).toBeCloseTo(0.75, 3);
    expect(pick.reason).toMatch(/^Step 200 has the highest score \(likeness 0\.96, faces 4\/4, score 0\.75; next: step 300, 0\.30\)/);
  });
  it("a checkpoint that draws someone else loses to one that draws the person, even with fewer faces", () => {
    const rows = [summariseCheckpoint(300, [face(0.88), face(0.88), face(0.88), face(0.88)]), summariseCheckpoint(400, [face(0.95), face(0.95), none, none])];
    expect(pickCheckpoint(rows, steps, { kind: "auto" }).step).toBe(400);
  });
  it("does not reward near-copies: very high similarity to one training photo loses to honest likeness", () => {
    const rows = [summariseCheckpoint(300, [face(0.93), face(0.93), face(0.93), face(0.93)]), summariseCheckpoint(400, [copy(0.99), copy(0.99), copy(0.99), face(0.97)])];
    expect(pickCheckpoint(rows, steps, { kind: "auto" }).step).toBe(300);
  });
  it("a tie within the margin goes to fewer near-copies, then to the later step", () => {
    const a = { step: 200, samples: 4, faces: 4, likeness: 0.93, worst: 0.9, nearCopies: 0, score: 0.7 };
    const b = { ...a, step: 300, score: 0.71 };
    const c = { ...a, step: 400, score: 0.69, nearCopies: 1 };
    expect(rankCheckpoints([a, b, c]).map((r) => r.step)).toEqual([300, 200, 400]);
    const pick = pickCheckpoint([a, { ...b, score: 0.69 }], steps, { kind: "auto" });
    expect(pick.step).toBe(300);
    expect(pick.reason).toMatch(/later step/);
    expect(rankCheckpoints([a, { ...b, score: 0.5 }]).map((r) => r.step)).toEqual([200, 300]);
  });
  it("keeps the last checkpoint and says so when no sample of any checkpoint has a face", () => {
    const rows = [summariseCheckpoint(2, [none, none, none, none]), summariseCheckpoint(4, [none, none, none, none])];
    const pick = pickCheckpoint(rows, [2, 4], { kind: "auto" });
    expect(pick).toMatchObject({ step: 4, lastStep: 4, noFaces: true });
    expect(pick.reason).toMatch(/No sample of any checkpoint shows a face \(8 samples.*keeping the last checkpoint/);
  });
  it("keeps the last step when nothing was sampled", () => {
    expect(pickCheckpoint([], [100, 200], { kind: "auto" })).toMatchObject({ step: 200, noFaces: true, reason: expect.stringMatching(/No checkpoint has samples/) });
  });
});

describe("pickCheckpoint (explicit)", () => {
  const rows = [summariseCheckpoint(200, [face(0.99)]), summariseCheckpoint(400, [face(0.865)])];
  it("last: the final step, whatever the scores", () => {
    expect(pickCheckpoint(rows, [200, 400], { kind: "last" })).toMatchObject({ step: 400, choice: "last", row: { step: 400 } });
  });
  it("a step: that step, with its row when it was sampled", () => {
    expect(pickCheckpoint(rows, [100, 200, 400], { kind: "step", step: 400 })).toMatchObject({ step: 400, choice: "step", row: { score: 0.1 } });
    expect(pickCheckpoint(rows, [100, 200, 400], { kind: "step", step: 100 }).reason).toMatch(/not sampled/);
    expect(() => pickCheckpoint(rows, [200, 400], { kind: "step", step: 300 })).toThrow(/300 is not one of 200, 400/);
  });
});

describe("parsing and labels", () => {
  it.each([
    ["auto", { kind: "auto" }],
    ["LAST", { kind: "last" }],
    ["200", { kind: "step", step: 200 }],
    [" 0400 ", { kind: "step", step: 400 }],
  ])("parses %j", (input, expected) => expect(parseCheckpointChoice(input)).toEqual(expected));
  it.each(["", "0", "-200", "2e3", "best", "200.5", "1234567890"])("refuses %j", (input) => expect(parseCheckpointChoice(input)).toBeUndefined());
  it("likeness labels follow Vertex label rules", () => {
    expect(likenessLabel(0.8344)).toBe("0_834");
    expect(likenessLabel(-0.2)).toBe("0_000");
    expect(likenessLabel(1)).toMatch(/^[a-z0-9_-]{1,63}$/);
  });
  it("a near-copy needs both a very high similarity to one photo and a matching hash", () => {
    expect(isNearCopy(0.98, 4)).toBe(true);
    expect(isNearCopy(0.98, 30)).toBe(false);
    expect(isNearCopy(0.9, 0)).toBe(false);
  });
  it("the copied photo is the near-copy with the closest hash, not the most similar photo", () => {
    const matches = [
      { photo: "0001.jpg", similarity: 0.999, hashDistance: 9 },
      { photo: "0004.jpg", similarity: 0.997, hashDistance: 2 },
      { photo: "0002.jpg", similarity: 0.9, hashDistance: 1 },
    ];
    expect(nearCopyOf(matches)?.photo).toBe("0004.jpg");
    expect(nearCopyOf(matches.slice(0, 1))).toBeUndefined();
  });
});

describe("differenceHash", () => {
  const ramp = Array.from({ length: 72 }, (_, i) => (i % 9) * 20);
  it("hashes a left-to-right ramp to all ones and its mirror to all zeros", () => {
    expect(differenceHash(ramp)).toBe("ffffffffffffffff");
    expect(differenceHash(ramp.map((v) => 255 - v))).toBe("0000000000000000");
    expect(hashDistance("0000000000000000", "ffffffffffffffff")).toBe(64);
  });
  it("is stable under small brightness noise and counts the differing bits", () => {
    const noisy = ramp.map((v, i) => v + (i % 3));
    expect(hashDistance(differenceHash(ramp), differenceHash(noisy))).toBe(0);
    expect(hashDistance("00000000000000ff", "0000000000000000")).toBe(8);
    expect(() => differenceHash([1, 2, 3])).toThrow(/expected 72 samples/);
  });
});

describe("faceThumbnail", () => {
  // A 40×20 image: left half black, right half white.
  const width = 40, height = 20;
  const rgb = new Uint8Array(width * height * 3).map((_, i) => (Math.floor(i / 3) % width >= 20 ? 255 : 0));
  it("averages the (grown, clamped) face box into 9×8 gray pixels", () => {
    const thumb = faceThumbnail(rgb, width, height, [10, 5, 30, 15], 0);
    expect(thumb).toHaveLength(72);
    expect([...thumb.slice(0, 9)]).toEqual([0, 0, 0, 0, 128, 255, 255, 255, 255].map((v, i) => (i === 4 ? thumb[4] : v)));
    expect(thumb[4]).toBeGreaterThan(0);
    expect(thumb[4]).toBeLessThan(255);
    expect(differenceHash(thumb)).toBe(differenceHash(faceThumbnail(rgb, width, height, [11, 5, 31, 15], 0)));
    expect(faceHash(rgb, width, height, [10, 5, 30, 15])).toBe(differenceHash(faceThumbnail(rgb, width, height, [10, 5, 30, 15])));
  });
  it("refuses a box outside the image", () => {
    expect(() => faceThumbnail(rgb, width, height, [50, 30, 60, 40], 0)).toThrow(/outside/);
  });
});

describe("readZipEntries", () => {
  it("reads the streamed dataset zip (sizes only in the central directory) and refuses a broken one with exit 2", async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { createHash } = await import("node:crypto");
    const { buffer } = await import("node:stream/consumers");
    const { datasetZip } = await import("../../src/workflows/zip.ts");
    const { readZipEntries } = await import("../../src/workflows/zip-read.ts");
    const dir = mkdtempSync(join(tmpdir(), "avatar-zip-read-"));
    try {
      const files = [["0001.jpg", "first photo"], ["faces.json", '{"schema":1,"images":{}}']] as const;
      const images = files.map(([entry, data]) => {
        writeFileSync(join(dir, entry), data);
        return { entry, file: join(dir, entry), sha256: createHash("sha256").update(data).digest("hex") };
      });
      const zip = await buffer(datasetZip(images));
      expect(readZipEntries(zip, "test.zip").map((e) => [e.name, e.data.toString()])).toEqual(files.map(([n, d]) => [n, d]));
      expect(() => readZipEntries(zip.subarray(0, zip.length - 30), "cut.zip")).toThrow(/cut\.zip is not a readable zip/);
      let exitCode: number | undefined;
      try {
        readZipEntries(Buffer.from("not a zip at all, just some text"), "text.zip");
      } catch (error) {
        exitCode = (error as { exitCode?: number }).exitCode;
      }
      expect(exitCode).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
