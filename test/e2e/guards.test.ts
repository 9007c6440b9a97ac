// Refusals that must happen before any work: nothing uploaded, nothing started.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeSyntheticSelfies } from "../../src/workflows/synthetic-selfies.ts";
import { cleanEnv, runCli, tempDir } from "../support/cli.ts";

describe("train guards", () => {
  it("refuses a full-size base model on a CPU-only local backend before preparing or uploading", async () => {
    const home = tempDir();
    const photos = join(home, "photos");
    await writeSyntheticSelfies(photos, 6, 11);
    // An empty PATH: no nvidia-smi, so this machine counts as CPU-only whatever it has.
    const env = cleanEnv(home, { PATH: tempDir() });
    const { code, json } = await runCli(["train", photos, "--name", "bob", "--base", "sdxl", "--json"], { env, cwd: home });
    expect(code).toBe(2);
    expect(json?.error?.message).toMatch(/would take days/);
    expect(json?.error?.hint).toMatch(/--force/);
    expect(existsSync(join(home, ".avatar", "store", "avatar", "bob"))).toBe(false);
  });
});

describe("deploy", () => {
  it("--model-version picks a version (and does not collide with the program's --version)", async () => {
    const home = tempDir();
    const { code, stdout, json } = await runCli(["deploy", "bob", "--model-version", "9", "--json"], { env: cleanEnv(home), cwd: home });
    expect(code).toBe(6);
    expect(stdout).not.toMatch(/^\d+\.\d+\.\d+\s*$/);
    expect(json?.error?.message).toBe("bob has no registered model version 9.");
  });
});
