// Pure studio rules (core/studio.ts): names, which resources are a studio's, the one-base rule,
// manifest edits and the bucket grant doctor looks for.
import { describe, expect, it } from "vitest";
import { deployEstimate, estimateLine } from "../../src/core/costs.ts";
import { validateAvatarName } from "../../src/core/names.ts";
import type { AvatarManifest } from "../../src/core/run-keys.ts";
import {
  baseMismatch, bucketReadRole, emptyStudioManifest, isServiceAccountEmail, studioLabels, studioManifestKey, studioOf, studioOfManifestKey, studioModelJson, validateStudioName, withAvatar, withoutAvatars,
} from "../../src/core/studio.ts";

const avatar = (name: string, over: Partial<AvatarManifest> = {}): AvatarManifest => ({
  schema: 1, name, run_id: "20260101-000000", base_model: "stable-diffusion-v1-5/stable-diffusion-v1-5", base_revision: "a".repeat(40), pipeline: "sd15",
  token: "sks", class_word: "person", instance_prompt: "a photo of sks person", resolution: 512, rank: 16, steps: 800, dataset_sha256: "0".repeat(64), trainer_version: "1", captions: "none", ...over,
});

describe("studio names and resources", () => {
  it("takes avatar-like names of at most 33 characters, so studio-<name> is a valid resource name", () => {
    expect(validateStudioName("family")).toBe("family");
    expect(validateStudioName("a".repeat(33))).toHaveLength(33);
    for (const bad of ["a".repeat(34), "Family", "-x", "x-", "9a", ""]) expect(() => validateStudioName(bad), bad).toThrow(/not a valid studio name/);
    expect(() => validateAvatarName("studio-x")).toThrow(/reserved/);
  });

  it("tells a studio's model or endpoint by its label, else by its studio- name", () => {
    expect(studioOf({ name: "studio-family", labels: studioLabels("family", "20260101-000000") })).toBe("family");
    expect(studioOf({ name: "studio-family", labels: { avatar: "studio-family" } })).toBe("family");
    expect(studioOf({ name: "alice", labels: { avatar: "alice" } })).toBeUndefined();
    expect(studioLabels("family", "20260101-000000")).toEqual({ avatar: "studio-family", "avatar-studio": "family", "avatar-run": "20260101-000000", "managed-by": "avatar-cli" });
    expect(studioOfManifestKey(studioManifestKey("family"))).toBe("family");
    expect(studioOfManifestKey("_studios/family/model/handler.py")).toBeUndefined();
  });
});

describe("the one-base rule and manifest edits", () => {
  const studio = withAvatar(emptyStudioManifest("fam", avatar("alice")), "alice", { model_uri: "gs://b/avatar/alice/runs/r/model", run_id: "r", version: "1" }, new Date("2026-01-01T00:00:00Z"));

  it("accepts an avatar of the same base and revision; refuses another pipeline, base or revision with both named", () => {
    expect(baseMismatch(studio, avatar("bob"))).toBeUndefined();
    expect(baseMismatch(studio, avatar("bob", { pipeline: "sdxl", base_model: "stabilityai/stable-diffusion-xl-base-1.0" }))).toBe(
      "bob was trained on sdxl (stabilityai/stable-diffusion-xl-base-1.0@aaaaaaa), but studio fam serves sd15 (stable-diffusion-v1-5/stable-diffusion-v1-5@aaaaaaa): all avatars of a studio share one base model, loaded once on its GPU",
    );
    expect(baseMismatch(studio, avatar("bob", { base_revision: "b".repeat(40) }))).toMatch(/^bob was trained on sd15 \(.*@bbbbbbb\)/);
  });

  it("adds, re-adds (keeping added_at for the same run) and removes avatars; studio.json points at the manifest", () => {
    const later = new Date("2026-02-01T00:00:00Z");
    const same = withAvatar(studio, "alice", { model_uri: "gs://b/avatar/alice/runs/r/model", run_id: "r", version: "1" }, later);
    expect(same.avatars.alice!.added_at).toBe("2026-01-01T00:00:00.000Z");
    const newer = withAvatar(studio, "alice", { model_uri: "gs://b/avatar/alice/runs/s/model", run_id: "s", version: "2" }, later);
    expect(newer.avatars.alice).toMatchObject({ run_id: "s", version: "2", added_at: later.toISOString() });
    expect(Object.keys(withoutAvatars(newer, ["alice"], later).avatars)).toEqual([]);
    expect(studioModelJson(studio, "gs://b/avatar/_studios/fam/manifest.json")).toEqual({
      schema: 1, studio: "fam", pipeline: "sd15", base_model: "stable-diffusion-v1-5/stable-diffusion-v1-5", base_revision: "a".repeat(40), manifest: "gs://b/avatar/_studios/fam/manifest.json",
    });
  });
});

describe("bucketReadRole", () => {
  const sa = "avatar-serving@p.iam.gserviceaccount.com";
  it("finds an unconditional object-read role for the service account, nothing else", () => {
    expect(bucketReadRole({ bindings: [{ role: "roles/storage.objectViewer", members: [`serviceAccount:${sa}`] }] }, sa)).toBe("roles/storage.objectViewer");
    expect(bucketReadRole({ bindings: [{ role: "roles/storage.objectViewer", members: [`user:${sa}`] }] }, sa)).toBeUndefined();
    expect(bucketReadRole({ bindings: [{ role: "roles/storage.objectCreator", members: [`serviceAccount:${sa}`] }] }, sa)).toBeUndefined();
    expect(bucketReadRole({ bindings: [{ role: "roles/storage.objectViewer", members: [`serviceAccount:${sa}`], condition: { expression: "x" } }] }, sa)).toBeUndefined();
    expect(bucketReadRole({}, sa)).toBeUndefined();
  });
});

describe("isServiceAccountEmail", () => {
  it("accepts user- and Google-managed service accounts, nothing else", () => {
    for (const good of ["avatar-serving@p.iam.gserviceaccount.com", "123-compute@developer.gserviceaccount.com"]) expect(isServiceAccountEmail(good), good).toBe(true);
    for (const bad of ["avatar-serving", "me@example.com", "a@b.iam.gserviceaccount.com.evil", " a@p.iam.gserviceaccount.com", ""]) expect(isServiceAccountEmail(bad), bad).toBe(false);
  });
});

describe("the deploy estimate of a studio", () => {
  it("names the studio and the command that stops it", () => {
    const line = estimateLine(deployEstimate({ gpu: "l4" }), "studio-family");
    expect(line).toMatch(/^Serving studio family on g2-standard-8/);
    expect(line).toContain("until `avatar down --studio family`");
    expect(estimateLine(deployEstimate({ gpu: "l4" }), "alice")).toContain("until `avatar down alice`");
  });
});
