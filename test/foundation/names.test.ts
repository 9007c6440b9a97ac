import { describe, expect, it } from "vitest";
import { isRunId, newRunId, resourceLabels, validateAvatarName } from "../../src/core/names.ts";
import { AvatarError } from "../../src/core/errors.ts";

describe("avatar names", () => {
  it.each(["a", "alice", "team-bob", "x1", "a-1", "a".repeat(40)])("accepts %s", (name) => {
    expect(validateAvatarName(name)).toBe(name);
  });
  it.each(["", "Alice", "1alice", "-a", "al_ice", "a".repeat(41), "al ice", "ålice", "alice-", "team--"])("rejects %j with exit 2", (name) => {
    expect(() => validateAvatarName(name)).toThrow(AvatarError);
    try {
      validateAvatarName(name);
    } catch (error) {
      expect((error as AvatarError).exitCode).toBe(2);
      expect((error as AvatarError).hint).toMatch(/lowercase letter first/);
    }
  });
});

describe("run ids and labels", () => {
  it("formats a UTC timestamp", () => {
    expect(newRunId(new Date(Date.UTC(2026, 0, 2, 3, 4, 5)))).toBe("20260102-030405");
    expect(isRunId("20260102-030405")).toBe(true);
    expect(isRunId("2026-01-02")).toBe(false);
  });
  it("labels every resource with the avatar, the run and the tool", () => {
    expect(resourceLabels("alice", "20260102-030405")).toEqual({ avatar: "alice", "avatar-run": "20260102-030405", "managed-by": "avatar-cli" });
    expect(resourceLabels("alice")).toEqual({ avatar: "alice", "managed-by": "avatar-cli" });
  });
});
