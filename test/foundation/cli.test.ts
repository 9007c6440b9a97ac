import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, cliPath, repoRoot, runCli, tempDir, spawnEnv } from "../support/cli.ts";

const v1 = ["init", "doctor", "prepare", "train", "status", "logs", "register", "deploy", "generate", "list", "down", "serve", "demo"];

describe("program surface", () => {
  it("--help lists every v1 command and the global flags", async () => {
    const home = tempDir();
    const { code, stdout } = await runCli(["--help"], { env: cleanEnv(home) });
    expect(code).toBe(0);
    for (const name of v1) expect(stdout).toMatch(new RegExp(`^  ${name}\\b`, "m"));
    for (const flag of ["--backend", "--project", "--region", "--bucket", "--config", "--json", "--no-input", "--yes", "--dry-run", "--verbose", "--quiet"]) {
      expect(stdout).toContain(flag);
    }
  });

  it("command help shows examples", async () => {
    const { code, stdout } = await runCli(["init", "--help"], { env: cleanEnv(tempDir()) });
    expect(code).toBe(0);
    expect(stdout).toContain("Examples:");
    expect(stdout).toContain("$ avatar init --no-input --backend local");
  });

  it("--version prints the package version", async () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
    const { code, stdout } = await runCli(["--version"], { env: cleanEnv(tempDir()) });
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(pkg.version);
  });

  it("an unknown flag exits 2", async () => {
    const { code, stderr } = await runCli(["doctor", "--bogus"], { env: cleanEnv(tempDir()) });
    expect(code).toBe(2);
    expect(stderr).toContain("unknown option '--bogus'");
  });

  it("an unknown command exits 2 with a suggestion", async () => {
    const near = await runCli(["deplyo"], { env: cleanEnv(tempDir()) });
    expect(near.code).toBe(2);
    expect(near.stderr).toMatch(/Did you mean deploy\?/);
    const far = await runCli(["nonsense"], { env: cleanEnv(tempDir()) });
    expect(far.code).toBe(2);
    expect(far.stderr).toMatch(/Did you mean avatar \w+\?/);
    expect(far.stderr).not.toMatch(/at .*\.js:\d+/);
  });

  it("--json turns usage errors into an error envelope", async () => {
    const { code, json } = await runCli(["nonsense", "--json"], { env: cleanEnv(tempDir()) });
    expect(code).toBe(2);
    expect(json).toMatchObject({ ok: false, error: { code: "USAGE", message: "unknown command 'nonsense'" } });
    expect(json?.error?.hint).toMatch(/Did you mean/);
  });

  it("a bad number for a numeric option is exit 2 without a stack", async () => {
    const { code, stderr } = await runCli(["--region", "Nowhere", "config"], { env: cleanEnv(tempDir()) });
    expect(code).toBe(2);
    expect(stderr).toMatch(/region "Nowhere" \(from flag --region\) is not a region/);
    expect(stderr).toMatch(/hint: /);
  });
});

describe("avatar doctor", () => {
  it("--json --backend local prints named checks with no credentials present", async () => {
    const home = tempDir();
    const { code, json, stdout, stderr } = await runCli(["doctor", "--json", "--backend", "local"], { env: cleanEnv(home), cwd: home });
    expect(code).toBe(0);
    expect(stdout.trim().split("\n")).toHaveLength(1);
    expect(json?.ok).toBe(true);
    const names = json!.data.checks.map((c: { name: string }) => c.name);
    expect(names).toEqual(expect.arrayContaining(["node", "config", "credentials", "store", "python", "python-env", "gpu"]));
    for (const check of json!.data.checks) expect(["ok", "warn", "fail"]).toContain(check.status);
    expect(json!.data.config.backend).toEqual({ value: "local", source: "flag --backend" });
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it("on vertex without credentials fails the credentials check with a hint, printing no secret", async () => {
    const home = tempDir();
    const secret = "-----BEGIN PRIVATE KEY-----SECRET";
    const keyFile = join(home, "key.json");
    writeFileSync(keyFile, JSON.stringify({ type: "service_account", private_key: secret, client_email: "x@y" }));
    const missing = await runCli(["doctor", "--json", "--backend", "vertex", "--project", "my-project", "--bucket", "b-avatar"], {
      env: cleanEnv(home, { AVATAR_GCS_ENDPOINT: "http://127.0.0.1:9" }),
      cwd: home,
    });
    const creds = missing.json!.data.checks.find((c: { name: string }) => c.name === "credentials");
    expect(creds.status).toBe("fail");
    expect(creds.hint).toMatch(/gcloud auth application-default login/);
    expect(missing.json!.data.healthy).toBe(false);

    const found = await runCli(["doctor", "--json", "--backend", "vertex", "--project", "my-project", "--bucket", "b-avatar"], {
      env: cleanEnv(home, { GOOGLE_APPLICATION_CREDENTIALS: keyFile, AVATAR_GCS_ENDPOINT: "http://127.0.0.1:9" }),
      cwd: home,
    });
    const ok = found.json!.data.checks.find((c: { name: string }) => c.name === "credentials");
    expect(ok.status).toBe("ok");
    expect(ok.message).toContain("service_account");
    expect(found.stdout + found.stderr).not.toContain("PRIVATE KEY");
    const bucket = found.json!.data.checks.find((c: { name: string }) => c.name === "bucket");
    expect(bucket.status).toBe("fail");
  });
});

describe("avatar init", () => {
  it("--no-input with a required value missing exits 2 naming the flag", async () => {
    const home = tempDir();
    const { code, stderr } = await runCli(["init", "--no-input", "--backend", "vertex"], { env: cleanEnv(home), cwd: home });
    expect(code).toBe(2);
    expect(stderr).toMatch(/Pass --project/);
    expect(existsSync(join(home, "avatar.config.json"))).toBe(false);
  });

  it("--no-input --backend local writes a valid config that later commands read", async () => {
    const home = tempDir();
    const { code, stdout } = await runCli(["init", "--no-input", "--backend", "local", "--gpu", "t4"], { env: cleanEnv(home), cwd: home });
    expect(code).toBe(0);
    expect(stdout).toContain("Next: avatar demo");
    const written = JSON.parse(readFileSync(join(home, "avatar.config.json"), "utf8"));
    expect(written).toEqual({ backend: "local", gpu: "t4", baseModel: "sd15" });
    const shown = await runCli(["config", "--json"], { env: cleanEnv(home), cwd: join(home) });
    expect(shown.json?.data.values.gpu).toEqual({ value: "t4", source: `"gpu" in ${join(home, "avatar.config.json")}` });
  });

  it("CI=true is non-interactive even without --no-input", async () => {
    const home = tempDir();
    const { code, stderr } = await runCli(["init", "--backend", "vertex", "--project", "my-project"], { env: cleanEnv(home, { CI: "true" }), cwd: home });
    expect(code).toBe(2);
    expect(stderr).toMatch(/Pass --bucket/);
  });

  it("will not overwrite a different config without --yes", async () => {
    const home = tempDir();
    const path = join(home, "avatar.config.json");
    writeFileSync(path, JSON.stringify({ backend: "vertex", project: "other-proj", bucket: "x-avatar" }));
    const refused = await runCli(["init", "--no-input", "--backend", "local"], { env: cleanEnv(home), cwd: home });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);
    expect(JSON.parse(readFileSync(path, "utf8")).backend).toBe("vertex");
    const forced = await runCli(["init", "--no-input", "--backend", "local", "--yes"], { env: cleanEnv(home), cwd: home });
    expect(forced.code).toBe(0);
    expect(JSON.parse(readFileSync(path, "utf8")).backend).toBe("local");
  });
});

describe("config precedence end to end", () => {
  it("flag > AVATAR_* env > .env > avatar.config.json found upward", async () => {
    const home = tempDir();
    const nested = join(home, "a", "b");
    await import("node:fs/promises").then((fs) => fs.mkdir(nested, { recursive: true }));
    writeFileSync(join(home, "avatar.config.json"), JSON.stringify({ region: "europe-west4", bucket: "file-bucket", project: "file-project" }));
    writeFileSync(join(nested, ".env"), "AVATAR_BUCKET=dotenv-bucket\nAVATAR_PROJECT=dotenv-project\n");
    const { json } = await runCli(["config", "--json", "--project", "flag-project"], {
      env: cleanEnv(home, { AVATAR_PROJECT: "env-project", AVATAR_BUCKET: "" }),
      cwd: nested,
    });
    expect(json?.data.values.project).toEqual({ value: "flag-project", source: "flag --project" });
    expect(json?.data.values.bucket).toEqual({ value: "dotenv-bucket", source: "AVATAR_BUCKET in .env" });
    expect(json?.data.values.region.value).toBe("europe-west4");
    expect(json?.data.file).toBe(join(home, "avatar.config.json"));
  });
});

describe("streams", () => {
  it("a reader that closes stderr early (`2>&1 | head`) does not change the outcome", async () => {
    const home = tempDir();
    const folder = join(home, "not-photos");
    mkdirSync(folder);
    for (let i = 0; i < 400; i++) writeFileSync(join(folder, `note-${i}.txt`), "not an image");
    const env = spawnEnv(cleanEnv(home));
    const child = spawn(process.execPath, [cliPath, "prepare", folder], { cwd: home, env, stdio: ["ignore", "ignore", "pipe"] });
    child.stderr.once("data", () => child.stderr.destroy()); // the reader goes away after one chunk
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(2); // "only 0 usable photos", as without the pipe; not a crash
  });

  it("--tail below 1 is a usage error", async () => {
    const { code, stderr } = await runCli(["logs", "alice", "--tail", "0"], { env: cleanEnv(tempDir()) });
    expect(code).toBe(2);
    expect(stderr).toContain("--tail needs at least 1 line, got 0.");
  });
});
