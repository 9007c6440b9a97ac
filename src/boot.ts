// The start-up loader, built apart from the CLI as dist/boot.cjs. It runs dist/startup.cjs (the
// code every `avatar` invocation runs: commander, the command list, config, output) from a V8 code
// cache taken when a process exits, so it holds the functions that actually ran. Node's own compile
// cache is taken right after compiling and holds only top-level code, leaving commander's parsing
// and help to be compiled again on every start: measured ~4 of the ~15 ms `avatar --help` took
// beyond a bare `node -e 0`.
// Chunks loaded later (workflows, backends) go through the ordinary loader and Node's cache.
import { lstatSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { Module, createRequire, enableCompileCache } from "node:module";
import { dirname, join } from "node:path";
import { Script, constants as vmConstants } from "node:vm";

export type CodeCacheState = "hit" | "written-at-exit" | "off";

export interface Loaded {
  exports: Record<string, unknown>;
  cache: CodeCacheState;
}

/** FNV-1a of the file's path: one cache file per installed copy, without loading node:crypto. */
function pathKey(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(16).padStart(8, "0");
}

/** Where the cache for `file` lives: a folder of its own per user inside `cacheDir` (Node's). */
export function codeCachePath(file: string, cacheDir: string): string {
  return join(cacheDir, `avatar-${process.getuid?.() ?? "user"}`, `startup-${pathKey(file)}.bin`);
}

/**
 * A code cache is code: only trust one from a folder that this user owns and nobody else can
 * write to (the default cache folder sits in the shared temp directory).
 */
function trustedFolder(folder: string): boolean {
  try {
    const stat = lstatSync(folder);
    if (!stat.isDirectory()) return false;
    return process.getuid === undefined || (stat.uid === process.getuid() && (stat.mode & 0o022) === 0);
  } catch {
    return false;
  }
}

function readCache(path: string, stamp: string): Buffer | undefined {
  if (!trustedFolder(dirname(path))) return undefined;
  try {
    const bytes = readFileSync(path);
    const end = bytes.indexOf(10);
    // V8 checks its own version and flags and the source length; the stamp adds the file's
    // identity, so a rebuilt bundle of the same length never runs against a stale cache.
    return end > 0 && bytes.toString("latin1", 0, end + 1) === stamp ? bytes.subarray(end + 1) : undefined;
  } catch {
    return undefined;
  }
}

function writeCache(path: string, stamp: string, script: Script): void {
  const temp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { mode: 0o700, recursive: true });
    if (!trustedFolder(dirname(path))) return;
    writeFileSync(temp, Buffer.concat([Buffer.from(stamp, "latin1"), script.createCachedData()]));
    renameSync(temp, path); // atomic: concurrent first runs never read half a cache
  } catch {
    // A cache only saves time: a read-only or full disk means running without one.
    try {
      rmSync(temp, { force: true });
    } catch {
      // nothing was written
    }
  }
}

/**
 * Runs a CommonJS file like `require` would (same wrapper, registered in require.cache so chunks
 * that require it share its module state), compiled from a code cache when a valid one exists.
 * Without one, the cache is written when the process exits. `cacheDir` undefined: no cache.
 */
export function loadWithCodeCache(file: string, cacheDir: string | undefined): Loaded {
  const source = readFileSync(file, "utf8");
  const { size, mtimeMs } = statSync(file);
  const stamp = `${size}:${mtimeMs}:${process.version}:${process.arch}\n`;
  const cachePath = cacheDir === undefined ? undefined : codeCachePath(file, cacheDir);
  const cachedData = cachePath === undefined ? undefined : readCache(cachePath, stamp);

  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new Script(wrapped, {
    filename: file,
    cachedData,
    // A fallback only: import() of a package from here works but warns that it is experimental, so
    // the build keeps such imports out of startup.cjs (.config/rolldown.config.mjs).
    importModuleDynamically: vmConstants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const require = createRequire(file);
  const module = new Module(file);
  module.filename = file;
  require.cache[file] = module;
  (script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, require, module, file, dirname(file));
  module.loaded = true;

  if (cachePath === undefined) return { exports: module.exports, cache: "off" };
  if (cachedData !== undefined && !script.cachedDataRejected) return { exports: module.exports, cache: "hit" };
  process.once("exit", () => writeCache(cachePath, stamp, script));
  return { exports: module.exports, cache: "written-at-exit" };
}

/** bin/avatar.js calls this. NODE_DISABLE_COMPILE_CACHE turns both caches off. */
export async function boot(argv: string[]): Promise<void> {
  const { directory } = enableCompileCache(); // Node's cache, for the chunks loaded later
  const { exports } = loadWithCodeCache(join(import.meta.dirname, "startup.cjs"), directory);
  await (exports.run as (argv: string[]) => Promise<void>)(argv);
}
