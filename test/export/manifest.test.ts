// avatar.json as read by register, import and export: base_revision is a commit hash, null, or absent.
import { describe, expect, it } from "vitest";
import { manifestProblem } from "../../src/core/run-keys.ts";

const manifest = {
  schema: 1, name: "alice", run_id: "20260101-000000", base_model: "stabilityai/stable-diffusion-xl-base-1.0",
  pipeline: "sdxl", token: "sks", class_word: "person", instance_prompt: "a photo of sks person", resolution: 1024,
  rank: 16, steps: 1000, dataset_sha256: "0".repeat(64), trainer_version: "0.1.0", captions: "none",
};

describe("manifestProblem: base_revision", () => {
  it.each([
    ["a commit hash", "462165984030d82259a11f4367a4eed129e94a7b"],
    ["null (a local base)", null],
    ["absent (an older trainer)", undefined],
  ])("accepts %s", (_what, base_revision) => {
    expect(manifestProblem({ ...manifest, base_revision })).toBeUndefined();
  });

  it.each([
    ["a branch name", "main"],
    ["a short hash", "4621659"],
    ["a number", 42],
  ])("refuses %s", (_what, base_revision) => {
    expect(manifestProblem({ ...manifest, base_revision })).toMatch(/"base_revision" that is not a commit hash/);
  });
});
