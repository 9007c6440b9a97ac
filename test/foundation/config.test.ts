import { describe, expect, it } from "vitest";
import { requireValue, resolveConfig, type ConfigInputs } from "../../src/core/config.ts";
import { AvatarError } from "../../src/core/errors.ts";

const base = (over: Partial<ConfigInputs> = {}): ConfigInputs => ({ flags: {}, env: {}, dotenv: {}, homeDir: "/home/u", ...over });

describe("config precedence: flags > env > .env > file > defaults", () => {
  // prettier-ignore
  const cases: [string, Partial<ConfigInputs>, string, string][] = [
    ["default",        {},                                                            "us-central1",  "default"],
    ["file",           { file: { path: "/p/avatar.config.json", data: { region: "europe-west4" } } }, "europe-west4", "file"],
    [".env over file", { dotenv: { AVATAR_REGION: "us-east4" }, file: { path: "/f", data: { region: "europe-west4" } } }, "us-east4", "dotenv"],
    ["env over .env",  { env: { AVATAR_REGION: "us-west1" }, dotenv: { AVATAR_REGION: "us-east4" } }, "us-west1", "env"],
    ["flag over env",  { flags: { region: "asia-east1" }, env: { AVATAR_REGION: "us-west1" } }, "asia-east1", "flag"],
    ["empty env ignored", { env: { AVATAR_REGION: "" }, dotenv: { AVATAR_REGION: "us-east4" } }, "us-east4", "dotenv"],
  ];
  it.each(cases)("%s", (_, inputs, region, source) => {
    const config = resolveConfig(base(inputs));
    expect(config.values.region).toBe(region);
    expect(config.sources.region).toBe(source);
  });

  it("freezes the result", () => {
    const config = resolveConfig(base());
    expect(Object.isFrozen(config.values)).toBe(true);
    expect(() => ((config.values as { region: string }).region = "x")).toThrow(TypeError);
  });

  it("derives the default base model from the GPU (T4 has no bf16: SD 1.5)", () => {
    expect(resolveConfig(base({ flags: { gpu: "t4" } })).values.baseModel).toBe("sd15");
    expect(resolveConfig(base({ flags: { gpu: "l4" } })).values.baseModel).toBe("sdxl");
    expect(resolveConfig(base({ flags: { gpu: "t4", baseModel: "sdxl" } })).values.baseModel).toBe("sdxl");
  });

  it("puts the store under the home directory and the venv under the cache", () => {
    const config = resolveConfig(base({ env: { XDG_CACHE_HOME: "/cache" } }));
    expect(config.values.store).toBe("/home/u/.avatar/store");
    expect(config.values.venv).toBe("/cache/avatar/venv");
  });
});

describe("config validation names the value, its source and the fix", () => {
  // prettier-ignore
  const bad: [string, Partial<ConfigInputs>, RegExp][] = [
    ["region",        { env: { AVATAR_REGION: "US" } },                  /region "US" \(from environment variable AVATAR_REGION\) is not a region/],
    ["bucket gs://",  { flags: { bucket: "gs://b" } },                   /bucket "gs:\/\/b" \(from flag --bucket\) must be a bare bucket name/],
    ["bucket caps",   { flags: { bucket: "My_Bucket" } },                /may contain only lowercase/],
    ["bucket google", { flags: { bucket: "google-photos" } },            /goog/],
    ["bucket short",  { flags: { bucket: "ab" } },                       /3-63 characters/],
    ["project",       { dotenv: { AVATAR_PROJECT: "1abc" } },            /AVATAR_PROJECT in \.env/],
    ["backend",       { file: { path: "/x/avatar.config.json", data: { backend: "aws" } } }, /must be one of local, vertex/],
    ["unknown key",   { file: { path: "/x/avatar.config.json", data: { regoin: "us-central1" } } }, /unknown key "regoin"/],
    ["not an object", { file: { path: "/x/avatar.config.json", data: [1] } }, /must hold a JSON object/],
    ["non-string",    { file: { path: "/x/avatar.config.json", data: { region: 5 } } }, /"region" must be a string/],
  ];
  it.each(bad)("%s", (_, inputs, message) => {
    let caught: unknown;
    try {
      resolveConfig(base(inputs));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(AvatarError);
    expect((caught as AvatarError).message).toMatch(message);
    expect((caught as AvatarError).exitCode).toBe(2);
  });

  it("requireValue names the flag, the variable and init", () => {
    const config = resolveConfig(base());
    expect(() => requireValue(config, "bucket")).toThrow(/No bucket is set/);
    try {
      requireValue(config, "project");
    } catch (error) {
      expect((error as AvatarError).hint).toBe("Pass --project <project>, set AVATAR_PROJECT, or run `avatar init`.");
      expect((error as AvatarError).exitCode).toBe(2);
    }
    expect(requireValue(resolveConfig(base({ flags: { bucket: "my-bucket" } })), "bucket")).toBe("my-bucket");
  });
});
