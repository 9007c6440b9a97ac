// `avatar prepare` and `avatar upload` as users and CI run them: the built CLI in a child process,
// both output streams asserted; uploads go to a local store or to fake-gcs-server (vertex backend).
import { spawn } from "node:child_process";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { datasetHash } from "../../src/core/dataset.ts";
import { cleanEnv, cliPath, runCli, type CliResult } from "../support/cli.ts";
import { startCuttingProxy, startGcsEmulator, type CuttingProxy, type GcsEmulator } from "../support/gcs-emulator.ts";
import { jpeg, writePhotos } from "../support/images.ts";

const work = mkdtempSync(join(tmpdir(), "avatar-upload-cli-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const home = join(work, "home");
mkdirSync(home);

let emulator: GcsEmulator;
let proxy: CuttingProxy;
const selfies = join(work, "selfies");
const big = join(work, "twelve-mp");

let startup: unknown;
beforeAll(async () => {
  try {
    emulator = await startGcsEmulator();
    proxy = await startCuttingProxy(emulator.port);
  } catch (error) {
    startup = error; // the vertex tests report it one by one below
  }
  mkdirSync(selfies);
  await writePhotos(selfies, 12, { seed: 2000, width: 900, height: 700 });
  writeFileSync(join(selfies, "notes.txt"), "not a photo");
  mkdirSync(big);
  // 20 twelve-megapixel photos with EXIF (camera, serial, GPS) and orientation tags.
  for (let i = 0; i < 20; i++) {
    writeFileSync(join(big, `IMG_${4000 + i}.JPG`), await jpeg(3000 + i, 4000, 3000, { privateExif: true, orientation: i % 4 === 0 ? 6 : 1 }));
  }
}, 180_000);

afterAll(async () => {
  await proxy?.close();
  await emulator?.stop();
});

function vertexArgs(bucket: string): string[] {
  return ["--backend", "vertex", "--project", "avatar-test", "--bucket", bucket];
}

function gcsEnv(endpoint = emulator.endpoint) {
  return cleanEnv(home, { AVATAR_GCS_ENDPOINT: endpoint });
}

function expectNoStack(result: CliResult): void {
  expect(result.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
  expect(result.stdout).not.toMatch(/\n\s+at .+:\d+:\d+/);
}

describe("avatar prepare", () => {
  it("prints a per-file table and a summary, progress on stderr, and the next command", async () => {
    const r = await runCli(["prepare", selfies], { env: cleanEnv(home) });
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^file\s+result\s+size\s+note$/);
    expect(r.stdout).toMatch(/^photo-01\.jpg\s+kept \d{4}\.jpg\s+900x700/m);
    expect(r.stdout).toMatch(/^notes\.txt\s+skipped\s+not an image$/m);
    expect(r.stdout).toMatch(/12 kept, 1 skipped of 13 files/);
    expect(r.stdout).toMatch(/dataset sha256 [0-9a-f]{64}/);
    expect(r.stdout).toContain(`Next: avatar train ${selfies} --name <name>`);
    expect(r.stderr).toMatch(/Preparing photos .*13 \/ 13/);
    expect(r.stdout).not.toContain("Preparing photos");
  });

  it("--json gives the same data in one envelope", async () => {
    const r = await runCli(["prepare", selfies, "--json"], { env: cleanEnv(home) });
    expect(r.code).toBe(0);
    expect(r.json?.ok).toBe(true);
    const data = r.json!.data;
    expect(data.counts).toEqual({ scanned: 13, kept: 12, skipped: 1 });
    expect(data.files).toHaveLength(13);
    expect(data.files.find((f: { path: string }) => f.path === "notes.txt")).toMatchObject({ status: "skipped", code: "not-image", reason: "not an image" });
    expect(data.images.map((i: { entry: string }) => i.entry)).toEqual(Array.from({ length: 12 }, (_, i) => `${String(i + 1).padStart(4, "0")}.jpg`));
    expect(data.sha256).toBe(datasetHash(data.images.map((i: { sha256: string }) => i.sha256)));
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
  });

  it("--out writes the normalised photos", async () => {
    const out = join(work, "inspect");
    const r = await runCli(["prepare", selfies, "--out", out, "--max-size", "512"], { env: cleanEnv(home) });
    expect(r.code).toBe(0);
    expect(readdirSync(out)).toHaveLength(12);
    const meta = await sharp(join(out, "0001.jpg")).metadata();
    expect(Math.max(meta.width!, meta.height!)).toBe(512);
    expect(r.stdout).toContain(`Normalised photos written to ${out}`);
  });

  it("bad input exits 2 with a message and a hint, never a stack", async () => {
    const empty = join(work, "empty");
    mkdirSync(empty);
    const r = await runCli(["prepare", empty], { env: cleanEnv(home) });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error: Only 0 usable photos; at least 5 are needed/);
    expect(r.stderr).toMatch(/hint: /);
    expectNoStack(r);
    const j = await runCli(["prepare", join(work, "nope"), "--json"], { env: cleanEnv(home) });
    expect(j.code).toBe(2);
    expect(j.json).toMatchObject({ ok: false, error: { code: "BAD_INPUT", message: expect.stringContaining("No such folder") } });
    const size = await runCli(["prepare", selfies, "--max-size", "big"], { env: cleanEnv(home) });
    expect(size.code).toBe(2);
    expect(size.stderr).toContain("--max-size needs a whole number");
  });
});

describe("avatar upload (local backend)", () => {
  it("uploads to file://…/avatar/<name>/datasets/<sha256>.zip; a re-run uploads nothing", async () => {
    const store = join(work, "store");
    const first = await runCli(["upload", selfies, "--name", "alice", "--store", store, "--json"], { env: cleanEnv(home) });
    expect(first.code).toBe(0);
    const data = first.json!.data;
    expect(data.status).toBe("uploaded");
    expect(data.uri).toBe(`file://${store}/avatar/alice/datasets/${data.sha256}.zip`);
    const path = join(store, "avatar", "alice", "datasets", `${data.sha256}.zip`);
    expect(statSync(path).size).toBe(data.bytes);
    expect(readdirSync(join(store, "avatar", "alice", "datasets"))).toEqual([`${data.sha256}.zip`]);
    expect(execFileSync("unzip", ["-t", path], { encoding: "utf8" })).toContain("No errors detected");

    const again = await runCli(["upload", selfies, "--name", "alice", "--store", store], { env: cleanEnv(home) });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`Already uploaded: ${data.uri} (nothing uploaded)`);
    expect(again.stdout).toContain(`sha256  ${data.sha256}`);
    expect(again.stdout).toContain(`Next: avatar train ${selfies} --name alice`);
    expect(again.stderr).not.toContain("Uploading");
  });

  it("--name is required and validated", async () => {
    const missing = await runCli(["upload", selfies], { env: cleanEnv(home) });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("needs --name");
    const bad = await runCli(["upload", selfies, "--name", "Alice Smith", "--json"], { env: cleanEnv(home) });
    expect(bad.code).toBe(2);
    expect(bad.json).toMatchObject({ ok: false, error: { code: "BAD_INPUT", hint: expect.stringContaining("lowercase") } });
  });
});

describe("avatar upload (vertex backend on fake-gcs-server)", () => {
  beforeEach(() => {
    if (startup) throw startup;
  });

  it("must-show: 20 twelve-megapixel JPEGs → gs:// URI; the zip holds 20 normalised JPEGs with no EXIF", async () => {
    await emulator.createBucket("alice-bucket");
    const started = Date.now();
    const r = await runCli(["upload", big, "--name", "alice", "--json", ...vertexArgs("alice-bucket")], { env: gcsEnv() });
    const seconds = (Date.now() - started) / 1000;
    expect(r.code, r.stderr).toBe(0);
    const data = r.json!.data;
    expect(data).toMatchObject({ name: "alice", status: "uploaded", images: 20 });
    expect(data.uri).toBe(`gs://alice-bucket/avatar/alice/datasets/${data.sha256}.zip`);
    // Progress (prepare, then upload progress events) on stderr; stdout holds only the envelope.
    expect(r.stderr).toMatch(/Preparing photos .*20 \/ 20/);
    expect(r.stderr).toMatch(/Uploading 20 photos \[#+\] 100% 2\.\d MB \/ 2\.\d MB/);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    console.log(`upload of 20 x 12 MP: ${seconds.toFixed(2)} s, ${data.bytes} bytes`);

    const objects = await emulator.objects("alice-bucket");
    expect([...objects.keys()]).toEqual([`avatar/alice/datasets/${data.sha256}.zip`]);
    const zip = objects.get(`avatar/alice/datasets/${data.sha256}.zip`)!;
    expect(zip.length).toBe(data.bytes);
    const zipPath = join(work, "downloaded.zip");
    writeFileSync(zipPath, zip);
    const unpacked = join(work, "unpacked");
    execFileSync("unzip", ["-q", zipPath, "-d", unpacked]);
    const entries = readdirSync(unpacked).sort();
    expect(entries).toEqual(Array.from({ length: 20 }, (_, i) => `${String(i + 1).padStart(4, "0")}.jpg`));
    const hashes: string[] = [];
    for (const entry of entries) {
      const bytes = readFileSync(join(unpacked, entry));
      const meta = await sharp(bytes).metadata();
      expect(meta.format).toBe("jpeg");
      expect(meta.exif, entry).toBeUndefined();
      expect(meta.orientation).toBeUndefined();
      expect(Math.max(meta.width!, meta.height!)).toBe(1024);
      expect(bytes.includes(Buffer.from("SN-0042-PRIVATE"))).toBe(false);
      hashes.push((await import("node:crypto")).createHash("sha256").update(bytes).digest("hex"));
    }
    // Portrait photos (EXIF orientation 6) came out upright.
    expect(data.prepare.files.filter((f: { width: number; height: number }) => f.height > f.width)).toHaveLength(5);
    // The object's name is the hash of exactly these normalised images.
    expect(datasetHash(hashes)).toBe(data.sha256);
    const [metadata] = await emulator.storage().bucket("alice-bucket").file(`avatar/alice/datasets/${data.sha256}.zip`).getMetadata();
    expect(metadata.metadata).toMatchObject({ avatar: "alice", "managed-by": "avatar-cli", "avatar-dataset-sha256": data.sha256 });

    // A re-run uploads nothing: same object, same generation.
    const again = await runCli(["upload", big, "--name", "alice", "--json", ...vertexArgs("alice-bucket")], { env: gcsEnv() });
    expect(again.code).toBe(0);
    expect(again.json!.data).toMatchObject({ status: "exists", uri: data.uri, sha256: data.sha256, uploadedBytes: 0 });
    const [after] = await emulator.storage().bucket("alice-bucket").file(`avatar/alice/datasets/${data.sha256}.zip`).getMetadata();
    expect(after.generation).toBe(metadata.generation);
  }, 120_000);

  it("--dry-run prepares and reports the URI without uploading", async () => {
    await emulator.createBucket("dry-bucket");
    const r = await runCli(["upload", selfies, "--name", "bob", "--dry-run", ...vertexArgs("dry-bucket")], { env: gcsEnv() });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Dry run: would upload gs:\/\/dry-bucket\/avatar\/bob\/datasets\/[0-9a-f]{64}\.zip/);
    expect(r.stdout).toContain(`Next: avatar upload ${selfies} --name bob`);
    expect((await emulator.objects("dry-bucket")).size).toBe(0);
  });

  it("a missing bucket setting or bucket exits with a clear error", async () => {
    const noBucket = await runCli(["upload", selfies, "--name", "bob", "--backend", "vertex", "--json"], { env: gcsEnv() });
    expect(noBucket.code).toBe(2);
    expect(noBucket.json!.error).toMatchObject({ code: "USAGE", hint: expect.stringContaining("--bucket") });
    const missing = await runCli(["upload", selfies, "--name", "bob", ...vertexArgs("no-such-bucket")], { env: gcsEnv() });
    expect(missing.code).toBe(6);
    expect(missing.stderr).toContain("error: The bucket gs://no-such-bucket does not exist.");
    expect(missing.stderr).toContain("hint: Check --bucket");
    expectNoStack(missing);
  });

  it("a connection killed half-way leaves no object (exit 3), and a re-run succeeds", async () => {
    await emulator.createBucket("cut-bucket");
    proxy.cutAfter(200_000);
    const r = await runCli(["upload", selfies, "--name", "carol", ...vertexArgs("cut-bucket")], { env: gcsEnv(proxy.endpoint) });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/error: Network error while uploading gs:\/\/cut-bucket\/avatar\/carol\/datasets\/[0-9a-f]{64}\.zip .*nothing was stored/);
    expect(r.stderr).toMatch(/hint: Check the network connection/);
    expectNoStack(r);
    expect((await emulator.objects("cut-bucket")).size).toBe(0);
    proxy.heal();
    const again = await runCli(["upload", selfies, "--name", "carol", "--json", ...vertexArgs("cut-bucket")], { env: gcsEnv(proxy.endpoint) });
    expect(again.code).toBe(0);
    expect(again.json!.data.status).toBe("uploaded");
    const objects = await emulator.objects("cut-bucket");
    expect([...objects.keys()]).toEqual([`avatar/carol/datasets/${again.json!.data.sha256}.zip`]);
    expect([...objects.values()][0]!.length).toBe(again.json!.data.bytes);
  }, 60_000);

  it("Ctrl-C during a stalled upload exits 130 and leaves no object; a re-run succeeds", async () => {
    await emulator.createBucket("int-bucket");
    const before = proxy.clientBytes;
    proxy.stallAfter(300_000);
    const child = spawn(process.execPath, [cliPath, "upload", selfies, "--name", "dave", ...vertexArgs("int-bucket")], {
      env: gcsEnv(proxy.endpoint) as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while (proxy.clientBytes - before < 300_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(proxy.clientBytes - before).toBeGreaterThanOrEqual(300_000);
    await new Promise((r) => setTimeout(r, 300));
    child.kill("SIGINT");
    const code = await exited;
    expect(code).toBe(130);
    expect(stderr).toContain("Interrupted");
    expect(stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
    expect((await emulator.objects("int-bucket")).size).toBe(0);
    proxy.heal();
    const again = await runCli(["upload", selfies, "--name", "dave", "--json", ...vertexArgs("int-bucket")], { env: gcsEnv(proxy.endpoint) });
    expect(again.code).toBe(0);
    expect(again.json!.data.status).toBe("uploaded");
    expect((await emulator.objects("int-bucket")).size).toBe(1);
  }, 60_000);
});
