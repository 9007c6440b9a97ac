// train's options are checked like the trainer's own argparse (templates/trainer cli.py) before
// any photo work, upload or job: on Vertex a refusal there would surface only as a failed job.
import { describe, expect, it } from "vitest";
import { trainerOptionsProblem } from "../../src/core/trainer-args.ts";
import { cleanEnv, runCli, tempDir } from "../support/cli.ts";

const good = { steps: 800, rank: 16, lr: 1e-4, resolution: 512, token: "sks", classWord: "person", checkpointEvery: 100 };

describe("trainerOptionsProblem", () => {
  it("accepts what the trainer accepts", () => {
    expect(trainerOptionsProblem(good)).toBeUndefined();
    expect(trainerOptionsProblem({ ...good, steps: undefined, resolution: undefined, checkpointEvery: undefined })).toBeUndefined();
    expect(trainerOptionsProblem({ ...good, resolution: 64, steps: 1, rank: 1 })).toBeUndefined();
  });

  it.each([
    [{ steps: 0 }, "--steps must be a whole number of at least 1, got 0"],
    [{ rank: -4 }, "--rank must be a whole number of at least 1, got -4"],
    [{ checkpointEvery: 0 }, "--checkpoint-every must be a whole number of at least 1, got 0"],
    [{ lr: 0 }, "--lr must be a positive number, got 0"],
    [{ lr: Number.POSITIVE_INFINITY }, "--lr must be a positive number, got Infinity"],
    [{ resolution: 500 }, "--resolution must be a multiple of 8 between 64 and 2048, got 500"],
    [{ resolution: 4096 }, "--resolution must be a multiple of 8 between 64 and 2048, got 4096"],
    [{ token: "two words" }, '--token must be one word without spaces (up to 64 characters), got "two words"'],
    [{ classWord: "" }, '--class-word must be one word without spaces (up to 64 characters), got ""'],
  ])("refuses %o", (change, message) => {
    expect(trainerOptionsProblem({ ...good, ...change })).toBe(message);
  });
});

describe("avatar train with options the trainer would refuse", () => {
  it("exits 2 before looking at the photos or the backend", async () => {
    const home = tempDir();
    const { code, stderr } = await runCli(["train", "no-such-folder", "--name", "alice", "--steps", "0", "--backend", "vertex"], { env: cleanEnv(home), cwd: home });
    expect(code).toBe(2);
    expect(stderr).toContain("error: --steps must be a whole number of at least 1, got 0.");
  });
});
