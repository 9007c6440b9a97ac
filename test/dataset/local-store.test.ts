// The local backend's directory store: the shared contract plus what only a directory can show.
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { LocalStore } from "../../src/backends/local/store.ts";
import { openStore } from "../../src/backends/store.ts";
import { resolveConfig } from "../../src/core/config.ts";
import { scratchDir } from "./helpers.ts";
import { describeStoreContract, slowBody } from "./store-contract.ts";

const work = scratchDir("avatar-store-");
afterAll(work.cleanup);

function walk(dir: string): string[] {
  const out: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(full));
    else out.push(full);
  }
  return out;
}

let counter = 0;
let current: LocalStore;
beforeEach(() => {
  current = new LocalStore(join(work.dir, `store-${++counter}`));
});

describeStoreContract(
  "local",
  () => ({
    store: current,
    // Every file (hidden ones included) that is not a temporary of an unfinished write.
    rawKeys: async () => walk(current.root).map((f) => relative(current.root, f).split(sep).join("/")).filter((k) => !/(^|\/)\.[^/]*\.partial$/.test(k)),
  }),
  /^file:\/\//,
);

describe("local store specifics", () => {
  it("lays objects out as <store>/avatar/<key>", async () => {
    const dir = join(work.dir, "layout");
    const store = new LocalStore(dir);
    await store.put("alice/datasets/abc.zip", Buffer.from("zip"));
    expect(statSync(join(dir, "avatar", "alice", "datasets", "abc.zip")).size).toBe(3);
    expect(store.uri("alice/datasets/abc.zip")).toBe(`file://${dir}/avatar/alice/datasets/abc.zip`);
    expect(store.rootUri).toBe(`file://${dir}/avatar`);
  });

  it("an interrupted write leaves no temporary file behind and nothing visible", async () => {
    const store = new LocalStore(join(work.dir, "partials"));
    const controller = new AbortController();
    const put = store.put("g/datasets/x.zip", slowBody(50, 10_000, 10), {
      signal: controller.signal,
      onProgress: (n) => n > 100_000 && controller.abort(),
    });
    await expect(put).rejects.toMatchObject({ code: "INTERRUPTED" });
    expect(walk(store.root)).toEqual([]);
    expect(await store.partials()).toEqual([]);
  });

  it("ignores stray temporary files of a crashed writer when listing", async () => {
    const store = new LocalStore(join(work.dir, "stray"));
    await store.put("h/datasets/a.zip", Buffer.from("a"));
    writeFileSync(join(store.root, "h", "datasets", ".b.zip.0123456789ab.partial"), "half");
    expect((await store.list("h/")).map((o) => o.key)).toEqual(["h/datasets/a.zip"]);
    expect(await store.exists("h/datasets/b.zip")).toBe(false);
    expect(await store.partials("h/")).toEqual(["h/datasets/.b.zip.0123456789ab.partial"]);
  });

  it("ready() accepts a store that does not exist yet and refuses a file in its place", async () => {
    await expect(new LocalStore(join(work.dir, "not-yet")).ready()).resolves.toBeUndefined();
    const file = join(work.dir, "a-file");
    writeFileSync(file, "x");
    mkdirSync(join(work.dir, "file-store"));
    writeFileSync(join(work.dir, "file-store", "avatar"), "not a folder");
    await expect(new LocalStore(join(work.dir, "file-store")).ready()).rejects.toMatchObject({ code: "CONFIG" });
  });

  it("openStore picks the directory store for the local backend", async () => {
    const dir = join(work.dir, "from-config");
    const config = resolveConfig({ flags: { store: dir }, env: {}, dotenv: {} });
    const store = await openStore({ config, env: {} });
    expect(store.kind).toBe("local");
    expect(store.rootUri).toBe(`file://${dir}/avatar`);
  });

  it("openStore for vertex needs a bucket (exit 2 naming the flag)", async () => {
    const config = resolveConfig({ flags: { backend: "vertex" }, env: {}, dotenv: {} });
    await expect(openStore({ config, env: {} })).rejects.toMatchObject({ code: "USAGE", hint: expect.stringContaining("--bucket") });
  });
});
