// dist/boot.cjs: runs the start-up bundle from a V8 code cache taken at exit. Each case runs real
// processes, because the cache is written by an exit hook and read by the next process.
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, repoRoot, runCli, tempDir } from "../support/cli.ts";

const bootPath = join(repoRoot, "dist", "boot.cjs");

/** Shaped like the bundle: a start-up file, a lazily required chunk that requires it back (shared
 * state) and imports an ES module (the way ora and inquirer are loaded). */
function fixture(dir: string, value: number): string {
  const entry = join(dir, "entry.cjs");
  writeFileSync(entry, `exports.value = ${value};\nexports.chunk = () => require("./chunk.cjs");\n`);
  writeFileSync(join(dir, "chunk.cjs"), `exports.entry = require("./entry.cjs");\nexports.esm = () => import("./esm.mjs");\n`);
  writeFileSync(join(dir, "esm.mjs"), `export const answer = "from esm";\n`);
  return entry;
}

const driver = `
const { loadWithCodeCache } = require(process.env.BOOT);
const { exports, cache } = loadWithCodeCache(process.argv[1], process.argv[2] || undefined);
const chunk = exports.chunk();
chunk.esm().then(({ answer }) => {
  console.log(JSON.stringify({ cache, value: exports.value, sameModule: chunk.entry === exports, answer }));
});
`;

interface Run {
  cache: string;
  value: number;
  sameModule: boolean;
  answer: string;
}

function load(entry: string, cacheDir: string | undefined): Run {
  const result = spawnSync(process.execPath, ["-e", driver, entry, cacheDir ?? ""], {
    env: { ...process.env, BOOT: bootPath },
    encoding: "utf8",
  });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout) as Run;
}

const cacheFiles = (cacheDir: string) =>
  existsSync(cacheDir) ? readdirSync(cacheDir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".bin")) : [];

describe("start-up code cache", () => {
  it("writes the cache when the first process exits and compiles from it in the next", () => {
    const dir = tempDir();
    const cacheDir = join(dir, "cache");
    const entry = fixture(dir, 42);

    const first = load(entry, cacheDir);
    expect(first).toEqual({ cache: "written-at-exit", value: 42, sameModule: true, answer: "from esm" });
    expect(cacheFiles(cacheDir)).toHaveLength(1);

    const second = load(entry, cacheDir);
    expect(second).toEqual({ cache: "hit", value: 42, sameModule: true, answer: "from esm" });
  });

  it("never runs a rebuilt file against the old cache, even at the same length", () => {
    const dir = tempDir();
    const cacheDir = join(dir, "cache");
    const entry = fixture(dir, 42);
    load(entry, cacheDir);
    fixture(dir, 43); // same byte length, new contents and mtime
    const rebuilt = load(entry, cacheDir);
    expect(rebuilt.value).toBe(43);
    expect(rebuilt.cache).toBe("written-at-exit");
    expect(load(entry, cacheDir).cache).toBe("hit");
  });

  it("ignores a cache in a folder other users can write to, and writes none there", () => {
    const dir = tempDir();
    const cacheDir = join(dir, "cache");
    const entry = fixture(dir, 42);
    load(entry, cacheDir);
    const [file] = cacheFiles(cacheDir);
    const folder = join(cacheDir, file!, "..");
    chmodSync(folder, 0o777);
    const before = statSync(join(cacheDir, file!)).mtimeMs;
    expect(load(entry, cacheDir).cache).not.toBe("hit");
    expect(statSync(join(cacheDir, file!)).mtimeMs).toBe(before);
  });

  it("runs without a cache when the folder cannot be created, without a word", () => {
    const dir = tempDir();
    const entry = fixture(dir, 7);
    writeFileSync(join(dir, "not-a-folder"), "");
    expect(load(entry, join(dir, "not-a-folder", "cache"))).toMatchObject({ value: 7, sameModule: true });
    expect(load(entry, undefined)).toEqual({ cache: "off", value: 7, sameModule: true, answer: "from esm" });
  });

  it("does not trust a copied-in cache file it did not write", () => {
    const dir = tempDir();
    const entry = fixture(dir, 42);
    const trusted = join(dir, "trusted");
    load(entry, trusted);
    const [file] = cacheFiles(trusted);
    // The same file planted in a world-writable folder of the same shape is not used.
    const planted = join(dir, "planted");
    const plantedFile = join(planted, file!);
    mkdirSync(join(plantedFile, ".."), { recursive: true, mode: 0o777 });
    chmodSync(join(plantedFile, ".."), 0o777);
    copyFileSync(join(trusted, file!), plantedFile);
    expect(load(entry, planted).cache).not.toBe("hit");
  });
});

describe("avatar start-up", () => {
  it("a checkout that is not built says how to build it, without a stack trace", () => {
    const copy = tempDir();
    mkdirSync(join(copy, "bin"));
    copyFileSync(join(repoRoot, "bin", "avatar.js"), join(copy, "bin", "avatar.js"));
    copyFileSync(join(repoRoot, "package.json"), join(copy, "package.json"));
    const result = spawnSync(process.execPath, [join(copy, "bin", "avatar.js"), "--help"], { encoding: "utf8" });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("error: this checkout of avatar is not built yet.\nhint: run `npm ci` (it builds) or `npm run build`.\n");
  });

  it("answers the same from a cold and a warm code cache, and NODE_DISABLE_COMPILE_CACHE turns it off", async () => {
    const home = tempDir();
    const cache = join(home, "node-cache");
    const cold = await runCli(["--help"], { env: cleanEnv(home, { NODE_COMPILE_CACHE: cache }) });
    expect(cold.code).toBe(0);
    expect(cacheFiles(cache).filter((f) => f.includes("avatar-"))).toHaveLength(1);
    const warm = await runCli(["--help"], { env: cleanEnv(home, { NODE_COMPILE_CACHE: cache }) });
    expect(warm.stdout).toBe(cold.stdout);
    expect(warm.stderr).toBe("");

    const off = join(home, "off");
    const disabled = await runCli(["--version"], { env: cleanEnv(home, { NODE_COMPILE_CACHE: off, NODE_DISABLE_COMPILE_CACHE: "1" }) });
    expect(disabled.stdout.trim()).toBe(JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")).version);
    expect(cacheFiles(off)).toHaveLength(0);
  });
});
