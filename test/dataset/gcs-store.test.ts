// The GCS store with the real @google-cloud/storage client against fake-gcs-server on 127.0.0.1.
import { Readable } from "node:stream";
import { CRC32C } from "@google-cloud/storage";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { openStore } from "../../src/backends/store.ts";
import { GcsStore } from "../../src/backends/vertex/store.ts";
import { resolveConfig } from "../../src/core/config.ts";
import { startCuttingProxy, startGcsEmulator, type CuttingProxy, type GcsEmulator } from "../support/gcs-emulator.ts";
import { describeStoreContract, slowBody } from "./store-contract.ts";

let emulator: GcsEmulator;
let proxy: CuttingProxy;
let startup: unknown;
beforeAll(async () => {
  try {
    emulator = await startGcsEmulator();
    proxy = await startCuttingProxy(emulator.port);
  } catch (error) {
    startup = error; // reported by every test below, so a missing emulator fails them all
  }
});
afterAll(async () => {
  await proxy?.close();
  await emulator?.stop();
});

let bucketCount = 0;
let current: GcsStore;
let currentBucket: string;
beforeEach(async () => {
  if (startup) throw startup;
  currentBucket = `test-bucket-${++bucketCount}`;
  await emulator.createBucket(currentBucket);
  // Uploads use a client with its own retries off, as openGcsStore does.
  current = new GcsStore(emulator.storage(), currentBucket, {
    uploadStorage: emulator.storage({ autoRetry: false, maxRetries: 0 }),
    retryDelayMs: 20,
  });
});

describeStoreContract(
  "gcs",
  () => ({
    store: current,
    rawKeys: async () => [...(await emulator.objects(currentBucket)).keys()].map((k) => k.replace(/^avatar\//, "")),
  }),
  /^gs:\/\/test-bucket-\d+\//,
);

function throughProxy(bucket: string, attempts = 3): GcsStore {
  return new GcsStore(emulator.storage(), bucket, {
    uploadStorage: new (emulator.storage().constructor as typeof import("@google-cloud/storage").Storage)({
      apiEndpoint: proxy.endpoint,
      projectId: "avatar-test",
      retryOptions: { autoRetry: false, maxRetries: 0 },
    }),
    attempts,
    retryDelayMs: 20,
  });
}

describe("gcs store specifics", () => {
  it("stores under gs://<bucket>/avatar/<key>: resumable, create-only, typed, labelled, crc32c-checked", async () => {
    const store = throughProxy(currentBucket);
    const first = proxy.heads.length;
    await store.put("alice/datasets/abc.zip", Buffer.alloc(700_000, 9), {
      contentType: "application/zip",
      metadata: { avatar: "alice", "managed-by": "avatar-cli" },
    });
    // What went over the wire: a resumable session, create-only, with the content type. (Real GCS
    // takes the type from X-Upload-Content-Type; fake-gcs-server ignores that header and stores
    // application/octet-stream, so the type is asserted on the request, not on the stored object.)
    const start = proxy.heads.slice(first).find((h) => h.startsWith("POST /upload/storage/v1/b/"))!;
    expect(start).toMatch(/^POST \/upload\/storage\/v1\/b\/test-bucket-\d+\/o\?[^ ]*uploadType=resumable/);
    expect(start).toMatch(/[?&]ifGenerationMatch=0[& ]/);
    expect(start).toMatch(/[?&]name=avatar%2Falice%2Fdatasets%2Fabc\.zip[& ]/);
    expect(start.toLowerCase()).toContain("x-upload-content-type: application/zip");
    expect(start.toLowerCase()).toContain("x-upload-content-length: 700000");
    // One streaming request that declares the total: a body cut short can never commit.
    const puts = proxy.heads.slice(first).filter((h) => h.startsWith("PUT "));
    expect(puts).toHaveLength(1);
    expect(puts[0]).toMatch(/content-range: bytes 0-\*\/700000/i);
    const crc32c = new CRC32C();
    crc32c.update(Buffer.alloc(700_000, 9));
    const crc = crc32c.toString();
    const [metadata] = await emulator.storage().bucket(currentBucket).file("avatar/alice/datasets/abc.zip").getMetadata();
    expect(metadata.metadata).toMatchObject({ avatar: "alice", "managed-by": "avatar-cli" });
    expect(metadata.crc32c).toBe(crc); // the client compares this with its own crc32c (validation: "crc32c")
    expect(Number(metadata.size)).toBe(700_000);
    const info = await current.stat("alice/datasets/abc.zip");
    expect(info).toMatchObject({ size: 700_000, metadata: { avatar: "alice", "managed-by": "avatar-cli" } });
    expect(current.uri("alice/datasets/abc.zip")).toBe(`gs://${currentBucket}/avatar/alice/datasets/abc.zip`);
  });

  it("a connection cut half-way fails the upload (UNAVAILABLE) and leaves no object; a re-run succeeds", async () => {
    const store = throughProxy(currentBucket, 2);
    const key = "bob/datasets/cut.zip";
    proxy.cutAfter(600_000);
    const error = await store.put(key, () => Readable.from([Buffer.alloc(1_500_000, 3)])).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "UNAVAILABLE" });
    expect(proxy.cuts).toBeGreaterThan(0);
    expect(await current.exists(key)).toBe(false);
    expect([...(await emulator.objects(currentBucket)).keys()]).toEqual([]);
    proxy.heal();
    const info = await store.put(key, () => Readable.from([Buffer.alloc(1_500_000, 3)]));
    expect(info.size).toBe(1_500_000);
    const stored = (await emulator.objects(currentBucket)).get(`avatar/${key}`)!;
    expect(stored.equals(Buffer.alloc(1_500_000, 3))).toBe(true);
  });

  it("a one-off network drop is retried with a fresh upload and the object is complete", async () => {
    const store = throughProxy(currentBucket, 3);
    const key = "carol/datasets/retried.zip";
    const before = proxy.cuts;
    proxy.cutAfter(400_000, { once: true });
    const body = Buffer.from(Array.from({ length: 1_200_000 }, (_, i) => i % 251));
    const info = await store.put(key, () => Readable.from([body]));
    expect(proxy.cuts).toBe(before + 1);
    expect(info.size).toBe(body.length);
    expect((await emulator.objects(currentBucket)).get(`avatar/${key}`)!.equals(body)).toBe(true);
  });

  it("a plain stream body is sent once (no retry possible) and fails cleanly", async () => {
    const store = throughProxy(currentBucket, 3);
    proxy.cutAfter(300_000, { once: true });
    const error = await store.put("dan/datasets/once.zip", slowBody(8, 100_000, 0)()).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "UNAVAILABLE" });
    expect(await current.exists("dan/datasets/once.zip")).toBe(false);
  });

  it("a missing bucket is NOT_FOUND with a hint (ready() and put)", async () => {
    const store = new GcsStore(emulator.storage(), "no-such-bucket", { uploadStorage: emulator.storage({ autoRetry: false, maxRetries: 0 }) });
    await expect(store.ready()).rejects.toMatchObject({ code: "NOT_FOUND", message: "The bucket gs://no-such-bucket does not exist.", hint: expect.stringContaining("--bucket") });
    await expect(current.ready()).resolves.toBeUndefined();
    const error = await store.put("x/datasets/y.zip", Buffer.from("x")).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "NOT_FOUND" });
  });

  it("openStore builds the GCS store from config, honouring AVATAR_GCS_ENDPOINT", async () => {
    const config = resolveConfig({ flags: { backend: "vertex", bucket: currentBucket, project: "avatar-test" }, env: {}, dotenv: {} });
    const store = await openStore({ config, env: { AVATAR_GCS_ENDPOINT: emulator.endpoint } });
    expect(store.kind).toBe("gcs");
    expect(store.rootUri).toBe(`gs://${currentBucket}/avatar`);
    await store.put("erin/datasets/z.zip", Buffer.from("z"));
    expect(await current.exists("erin/datasets/z.zip")).toBe(true);
  });
});
