// Issue 12, trainer side: steps scale with the usable photos, the class word is the user's
// (remembered per avatar, asked on a terminal only), and --mask-weight / --samples-every /
// --sample-steps / --flip reach the trainer's command line on both backends and the Vertex job.
import { describe, expect, it } from "vitest";
import type { TrainingJob } from "../../src/backends/backend.ts";
import { customJobSpec } from "../../src/core/vertex-specs.ts";
import { STEP_LIMITS, stepsFor } from "../../src/core/presets.ts";
import { trainerArgs, trainerOptionsProblem, type TrainerArgsInput } from "../../src/core/trainer-args.ts";
import { photoCountHint, optionsFingerprint, resolveClassWord, trainingTimeoutSeconds } from "../../src/workflows/train.ts";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../support/cli.ts";

const SDXL = "stabilityai/stable-diffusion-xl-base-1.0";
const input: TrainerArgsInput = {
  dataset: "/d.zip", outputDir: "/o", checkpointDir: "/c", base: SDXL, token: "sks", classWord: "woman", steps: 800,
  rank: 16, lr: 1e-4, seed: 42, caption: "none", checkpointEvery: 100, logEvery: 10, name: "alice", runId: "r", datasetSha256: "a".repeat(64),
};
const flagValue = (args: string[], flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);

describe("stepsFor: 100 steps per usable photo, clamped, only without --steps", () => {
  it.each([
    [5, 500],
    [8, 800],
    [12, 1200],
    [15, 1500],
    [20, 1500],
    [2, 500],
  ])("%i photos → %i steps", (photos, steps) => {
    expect(stepsFor(SDXL, undefined, photos)).toBe(steps);
  });

  it("the user's --steps always wins; unknown photo count keeps the preset default", () => {
    expect(stepsFor(SDXL, 300, 20)).toBe(300);
    expect(stepsFor(SDXL)).toBe(1000);
    expect(stepsFor("stable-diffusion-v1-5/stable-diffusion-v1-5", undefined, 0)).toBe(800);
    expect(STEP_LIMITS).toEqual({ min: 500, max: 1500 });
  });
});

describe("trainerArgs: the face and sample flags", () => {
  it("passes --mask-weight, --samples-every (0 too), --sample-steps and --flip when set", () => {
    const args = trainerArgs({ ...input, maskWeight: 0.4, samplesEvery: 0, sampleSteps: 20, flip: true });
    expect(flagValue(args, "--mask-weight")).toBe("0.4");
    expect(flagValue(args, "--samples-every")).toBe("0");
    expect(flagValue(args, "--sample-steps")).toBe("20");
    expect(flagValue(args, "--class-word")).toBe("woman");
    expect(args).toContain("--flip");
  });

  it("leaves the trainer's defaults alone when unset (no flip, auto samples)", () => {
    const args = trainerArgs(input);
    for (const flag of ["--mask-weight", "--samples-every", "--sample-steps", "--flip"]) expect(args).not.toContain(flag);
  });

  it("the Vertex CustomJob carries them", () => {
    const job = customJobSpec({
      bucket: "b", displayName: "avatar-alice-r", labels: { avatar: "alice" }, gpu: "t4", spot: false, timeoutSeconds: 60, imageUri: "img", trainerVersion: "1",
      trainer: { ...input, maskWeight: 0.3, samplesEvery: 200, sampleSteps: 25 },
      datasetKey: "alice/datasets/x.zip", modelKey: "alice/runs/r/model", checkpointKey: "alice/runs/r/checkpoints",
    });
    const args = job.jobSpec.workerPoolSpecs[0]!.containerSpec.args;
    expect([flagValue(args, "--mask-weight"), flagValue(args, "--samples-every"), flagValue(args, "--sample-steps")]).toEqual(["0.3", "200", "25"]);
    expect(args).not.toContain("--flip");
  });
});

describe("trainerOptionsProblem: the new options", () => {
  const good = { rank: 16, lr: 1e-4, token: "sks" };
  it("accepts the edges", () => {
    expect(trainerOptionsProblem({ ...good, classWord: undefined, maskWeight: 0, samplesEvery: 0, sampleSteps: 1 })).toBeUndefined();
    expect(trainerOptionsProblem({ ...good, classWord: "man", maskWeight: 1 })).toBeUndefined();
  });
  it.each([
    [{ maskWeight: 1.5 }, "--mask-weight must be a number between 0 and 1, got 1.5"],
    [{ maskWeight: -0.1 }, "--mask-weight must be a number between 0 and 1, got -0.1"],
    [{ samplesEvery: -1 }, "--samples-every must be a whole number of 0 or more, got -1"],
    [{ sampleSteps: 0 }, "--sample-steps must be a whole number of at least 1, got 0"],
  ])("refuses %o", (change, message) => {
    expect(trainerOptionsProblem({ ...good, ...change })).toBe(message);
  });
});

describe("optionsFingerprint (which run a new train resumes)", () => {
  const options = { base: SDXL, pipeline: "sdxl" as const, resolution: 1024, token: "sks", classWord: "person", steps: 1000, rank: 16, lr: 1e-4, seed: 42, caption: "none" as const, checkpointEvery: 100, logEvery: 10, flip: false, maskWeight: 0.4 };
  it("changes with the mask weight, the flip and the class word, not with the samples", () => {
    const fp = optionsFingerprint(options);
    expect(optionsFingerprint({ ...options, maskWeight: 1 })).not.toBe(fp);
    expect(optionsFingerprint({ ...options, flip: true })).not.toBe(fp);
    expect(optionsFingerprint({ ...options, classWord: "woman" })).not.toBe(fp);
    expect(optionsFingerprint({ ...options, samplesEvery: 0, sampleSteps: 10 })).toBe(fp);
  });
});

function job(labels: Record<string, string>): TrainingJob {
  return { id: "j", name: "alice", runId: "r", state: "succeeded", labels, createdAt: "2026-01-01T00:00:00Z", modelUri: "x" };
}

describe("resolveClassWord", () => {
  const backend = (jobs: TrainingJob[]) => ({ training: { list: async () => jobs } }) as never;
  const prompts = (interactive: boolean, answer?: string) => {
    const asked: string[] = [];
    return {
      asked,
      ctx: { prompts: { interactive, select: async (q: { message: string; default?: string }) => (asked.push(q.message), answer ?? q.default), text: async () => "", confirm: async () => true } } as never,
    };
  };

  it("the flag wins, without looking anything up or asking", async () => {
    const p = prompts(true, "man");
    expect(await resolveClassWord(p.ctx, backend([job({ "avatar-class": "woman" })]), "alice", "person")).toEqual({ classWord: "person", source: "flag" });
    expect(p.asked).toEqual([]);
  });

  it("remembers the newest earlier run's class word", async () => {
    const p = prompts(true, "man");
    const jobs = [job({ "avatar-class": "man" }), job({}), job({ "avatar-class": "woman" })];
    expect(await resolveClassWord(p.ctx, backend(jobs), "alice")).toEqual({ classWord: "woman", source: "remembered" });
    expect(p.asked).toEqual([]);
  });

  it("asks on a terminal at the first train of an avatar", async () => {
    const p = prompts(true, "woman");
    expect(await resolveClassWord(p.ctx, backend([]), "alice")).toEqual({ classWord: "woman", source: "asked" });
    expect(p.asked).toEqual(["Who is alice? (the class word the model learns the person as)"]);
  });

  it("never asks in a script (--no-input, CI, --json): person", async () => {
    const p = prompts(false);
    expect(await resolveClassWord(p.ctx, backend([job({})]), "alice")).toEqual({ classWord: "person", source: "default" });
    expect(p.asked).toEqual([]);
  });
});

describe("photoCountHint (the cost estimate before prepare)", () => {
  it("counts image files at the folder's top level, not hidden files, folders or other files", async () => {
    const dir = tempDir();
    for (const f of ["a.jpg", "b.JPEG", "c.png", "d.heic", ".e.jpg", "notes.txt"]) writeFileSync(join(dir, f), "x");
    mkdirSync(join(dir, "sub.jpg"));
    expect(await photoCountHint(dir, false)).toBe(4);
    expect(await photoCountHint(dir, true)).toBeUndefined();
    expect(await photoCountHint(join(dir, "missing"), false)).toBeUndefined();
  });
});

describe("trainingTimeoutSeconds (steps now reach 1500)", () => {
  it("keeps 3 h where that is plenty and grows with the slow end of the estimate", () => {
    expect(trainingTimeoutSeconds("l4", "sdxl", 1000)).toBe(3 * 3600); // ≤ 1.5 h at 4.8 s/step
    expect(trainingTimeoutSeconds("t4", "sd15", 1500)).toBe(3 * 3600);
    // T4 + SDXL, 1500 steps: (10 min + 1500 × 15 s) × 1.5 ≈ 9.6 h.
    expect(trainingTimeoutSeconds("t4", "sdxl", 1500)).toBeGreaterThan(9 * 3600);
    expect(trainingTimeoutSeconds("t4", "sdxl", 1500)).toBeLessThan(10 * 3600);
  });
});
