// The ObjectStore contract, run against both implementations (local directory, GCS on fake-gcs-server).
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { describe, expect, it } from "vitest";
import type { ObjectStore } from "../../src/backends/store.ts";

export interface StoreHarness {
  store: ObjectStore;
  /** Every complete object's key under the store root, whatever the store (read behind its back). */
  rawKeys(): Promise<string[]>;
}

/** A stream that yields `chunks` pieces of `size` bytes, pausing between them. */
export function slowBody(chunks: number, size: number, pauseMs = 10, fill = 0x61): () => Readable {
  return () =>
    Readable.from(
      (async function* () {
        for (let i = 0; i < chunks; i++) {
          yield Buffer.alloc(size, fill + (i % 26));
          await new Promise((r) => setTimeout(r, pauseMs));
        }
      })(),
    );
}

export function describeStoreContract(label: string, harness: () => StoreHarness, uriPattern: RegExp): void {
  describe(`${label}: ObjectStore contract`, () => {
    it("put → exists, stat, read, uri", async () => {
      const { store } = harness();
      const key = "alice/datasets/one.zip";
      expect(await store.exists(key)).toBe(false);
      expect(await store.stat(key)).toBeUndefined();
      const info = await store.put(key, Buffer.from("hello zip"), { contentType: "application/zip" });
      expect(info).toMatchObject({ key, size: 9, uri: store.uri(key) });
      expect(store.uri(key)).toMatch(uriPattern);
      expect(store.uri(key).endsWith("/avatar/alice/datasets/one.zip")).toBe(true);
      expect(await store.exists(key)).toBe(true);
      expect(await store.stat(key)).toMatchObject({ key, size: 9 });
      expect(await text(await store.read(key))).toBe("hello zip");
    });

    it("a body function streams, and progress reaches the full size", async () => {
      const { store } = harness();
      const seen: number[] = [];
      const info = await store.put("alice/datasets/stream.zip", slowBody(5, 100_000, 1), { onProgress: (n) => seen.push(n) });
      expect(info.size).toBe(500_000);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.at(-1)).toBe(500_000);
      expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    });

    it("is create-only by default; overwrite replaces", async () => {
      const { store } = harness();
      const key = "bob/runs/r1/model/avatar.json";
      await store.put(key, Buffer.from("first"));
      await expect(store.put(key, Buffer.from("second"))).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
      expect(await text(await store.read(key))).toBe("first");
      await store.put(key, Buffer.from("third"), { overwrite: true });
      expect(await text(await store.read(key))).toBe("third");
    });

    it("lists by prefix, sorted", async () => {
      const { store } = harness();
      for (const key of ["carol/datasets/b.zip", "carol/datasets/a.zip", "carol/runs/x/model/w.bin", "carolyn/datasets/c.zip"]) {
        await store.put(key, Buffer.from(key));
      }
      expect((await store.list("carol/datasets/")).map((o) => o.key)).toEqual(["carol/datasets/a.zip", "carol/datasets/b.zip"]);
      expect((await store.list("carol/")).map((o) => o.key)).toEqual(["carol/datasets/a.zip", "carol/datasets/b.zip", "carol/runs/x/model/w.bin"]);
      expect((await store.list("carol")).map((o) => o.key)).toContain("carolyn/datasets/c.zip");
      expect((await store.list("nobody/")).length).toBe(0);
      const [first] = await store.list("carol/datasets/a");
      expect(first).toMatchObject({ key: "carol/datasets/a.zip", size: "carol/datasets/a.zip".length, uri: store.uri("carol/datasets/a.zip") });
    });

    it("delete is idempotent; reading a missing object is NOT_FOUND", async () => {
      const { store } = harness();
      await store.put("dave/datasets/x.zip", Buffer.from("x"));
      await store.delete("dave/datasets/x.zip");
      await store.delete("dave/datasets/x.zip");
      expect(await store.exists("dave/datasets/x.zip")).toBe(false);
      await expect(store.read("dave/datasets/x.zip")).rejects.toMatchObject({ code: "NOT_FOUND" });
    });

    it("an aborted put leaves nothing that looks like an object", async () => {
      const { store, rawKeys } = harness();
      const controller = new AbortController();
      const key = "erin/datasets/aborted.zip";
      const put = store.put(key, slowBody(40, 64 * 1024, 15), {
        signal: controller.signal,
        onProgress: (n) => {
          if (n >= 512 * 1024) controller.abort();
        },
      });
      await expect(put).rejects.toMatchObject({ code: "INTERRUPTED" });
      await new Promise((r) => setTimeout(r, 200));
      expect(await store.exists(key)).toBe(false);
      expect((await store.list("erin/")).length).toBe(0);
      expect((await rawKeys()).filter((k) => k.startsWith("erin/"))).toEqual([]);
      // …and the same key can be written afterwards.
      const info = await store.put(key, slowBody(4, 1000, 0));
      expect(info.size).toBe(4000);
    });

    it("a body that fails half-way leaves no object", async () => {
      const { store, rawKeys } = harness();
      const key = "frank/datasets/broken.zip";
      const failing = () =>
        Readable.from(
          (async function* () {
            yield Buffer.alloc(300_000, 1);
            throw new Error("disk went away");
          })(),
        );
      await expect(store.put(key, failing)).rejects.toThrow();
      expect(await store.exists(key)).toBe(false);
      expect((await rawKeys()).filter((k) => k.startsWith("frank/"))).toEqual([]);
    });

    it("a body shorter or longer than the declared size fails and leaves no object", async () => {
      const { store, rawKeys } = harness();
      const short = await store.put("dan/datasets/short.zip", () => Readable.from([Buffer.alloc(500_000, 1)]), { size: 600_000 }).catch((e: unknown) => e);
      expect(short).toMatchObject({ code: "INTERNAL", message: expect.stringContaining("produced 500000 bytes where 600000 were declared") });
      const long = await store.put("dan/datasets/long.zip", () => Readable.from([Buffer.alloc(500_000, 1)]), { size: 400_000 }).catch((e: unknown) => e);
      expect(long).toMatchObject({ code: "INTERNAL" });
      await new Promise((r) => setTimeout(r, 100));
      expect((await rawKeys()).filter((k) => k.startsWith("dan/"))).toEqual([]);
    });

    it("rejects keys that could escape the root", async () => {
      const { store } = harness();
      for (const key of ["../x", "a/../../x", "/etc/passwd", "a//b", ".hidden/x"]) {
        await expect(store.put(key, Buffer.from("x"))).rejects.toThrow(/Store key/);
        expect(() => store.uri(key)).toThrow(/Store key/);
      }
    });
  });
}
