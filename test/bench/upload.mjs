// prepare + zip + upload to fake-gcs-server (loopback), through the built CLI in fresh processes.
// Measures: wall time for 20 x 12-MP JPEGs (target <= 3 s on 2 cores), bytes uploaded against a
// plain zip of the originals (target >= 5x fewer), and peak RSS of the CLI for 20 x 12 MP, 50 and
// 500 photos (target <= 250 MB and flat in folder size). Fixtures are generated once and cached.
import { spawnSync } from "node:child_process";
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { ZipArchive } from "archiver";
import { jpeg } from "../support/images.ts";
import { startGcsEmulator } from "../support/gcs-emulator.ts";

const root = new URL("../..", import.meta.url).pathname;
const cache = process.env.AVATAR_BENCH_CACHE ?? join(tmpdir(), "avatar-bench-upload-v1");
const runs = Number(process.env.BENCH_RUNS ?? 3);
const MB = 1024 * 1024;

async function fixtures(dir, count, make) {
  const done = join(dir, ".complete");
  if (existsSync(done)) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const started = Date.now();
  for (let i = 0; i < count; i++) writeFileSync(join(dir, `IMG_${String(i + 1).padStart(4, "0")}.JPG`), await make(i));
  writeFileSync(done, "");
  console.log(`generated ${count} photos in ${dir} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return dir;
}

/** The same folder as a subset, by hard links (regular files, as prepare requires). */
function subset(from, dir, count) {
  if (existsSync(join(dir, ".complete"))) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(from).filter((n) => !n.startsWith(".")).sort().slice(0, count)) linkSync(join(from, name), join(dir, name));
  writeFileSync(join(dir, ".complete"), "");
  return dir;
}

/** Size of a plain zip of the originals (deflate, archiver defaults): what a naive tool would upload. */
async function naiveZipSize(dir) {
  const archive = new ZipArchive({ zlib: { level: 6 } });
  let size = 0;
  const done = pipeline(archive, new Writable({ write: (chunk, _e, cb) => ((size += chunk.length), cb()) }));
  for (const name of readdirSync(dir).filter((n) => !n.startsWith(".")).sort()) archive.file(join(dir, name), { name });
  await archive.finalize();
  await done;
  return size;
}

const rssHook = join(cache, "rss-hook.mjs");

function upload(emulator, folder, bucket) {
  const rssFile = join(cache, `rss-${process.pid}-${bucket}.txt`);
  const started = process.hrtime.bigint();
  const result = spawnSync(
    process.execPath,
    ["--import", pathToFileURL(rssHook).href, join(root, "bin", "avatar.js"), "upload", folder, "--name", "bench", "--json", "--backend", "vertex", "--project", "avatar-test", "--bucket", bucket],
    { env: { PATH: process.env.PATH, HOME: cache, NO_COLOR: "1", AVATAR_FACE_CHECK: "0" /* colour fields, no faces: face work is bench/faces.mjs */, AVATAR_GCS_ENDPOINT: emulator.endpoint, AVATAR_BENCH_RSS_FILE: rssFile }, encoding: "utf8", timeout: 300_000, maxBuffer: 64 * MB },
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`avatar upload exited ${result.status}: ${result.stdout}${result.stderr}`);
  const data = JSON.parse(result.stdout).data;
  if (data.status !== "uploaded") throw new Error(`expected an upload, got ${data.status}`);
  const usage = JSON.parse(readFileSync(rssFile, "utf8"));
  rmSync(rssFile, { force: true });
  return { seconds, rss: usage.maxRSS * 1024, cpu: usage.cpu / 1e6, data };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const verdict = (ok) => (ok ? "PASS" : "MISS");

mkdirSync(cache, { recursive: true });
writeFileSync(
  rssHook,
  `import { writeFileSync } from "node:fs";\nprocess.on("exit", () => { const u = process.resourceUsage(); if (process.env.AVATAR_BENCH_RSS_FILE) writeFileSync(process.env.AVATAR_BENCH_RSS_FILE, JSON.stringify({ maxRSS: u.maxRSS, cpu: u.userCPUTime + u.systemCPUTime })); });\n`,
);

const twenty = await fixtures(join(cache, "twenty-12mp"), 20, (i) => jpeg(5000 + i, 4000, 3000, { privateExif: true, orientation: i % 4 === 0 ? 6 : 1 }));
const many = await fixtures(join(cache, "five-hundred"), 500, (i) => jpeg(20_000 + i, 1600, 1200, { privateExif: true }));
const fifty = subset(many, join(cache, "fifty"), 50);

const emulator = await startGcsEmulator();
let failed = false;
try {
  let bucket = 0;
  const fresh = async () => {
    const name = `bench-${++bucket}`;
    await emulator.createBucket(name);
    return name;
  };
  // Warm the file cache once, then time fresh processes.
  upload(emulator, twenty, await fresh());
  const timed = [];
  for (let i = 0; i < runs; i++) timed.push(upload(emulator, twenty, await fresh()));
  const wall = median(timed.map((t) => t.seconds));
  const uploaded = timed[0].data.bytes;
  const naive = await naiveZipSize(twenty);
  const ratio = naive / uploaded;
  const rss20 = Math.max(...timed.map((t) => t.rss));
  const r50 = upload(emulator, fifty, await fresh());
  const r500 = upload(emulator, many, await fresh());

  const flat = r500.rss <= r50.rss + 25 * MB;
  const wallOk = wall <= 3;
  const ratioOk = ratio >= 5;
  const rssOk = Math.max(rss20, r500.rss) <= 250 * MB && flat;
  console.log(`machine          ${availableParallelism()} cores, load average ${loadavg()[0].toFixed(2)}`);
  console.log(`wall time        20 x 12-MP JPEGs, prepare + zip + upload: median ${wall.toFixed(2)} s of ${runs} (${timed.map((t) => t.seconds.toFixed(2)).join(", ")})  target <= 3 s: ${verdict(wallOk)}`);
  console.log(`                 CPU time of the CLI (user + system, all threads): median ${median(timed.map((t) => t.cpu)).toFixed(2)} s`);
  console.log(`bytes uploaded   ${(uploaded / MB).toFixed(2)} MB vs plain zip of originals ${(naive / MB).toFixed(2)} MB: ${ratio.toFixed(1)}x fewer  target >= 5x: ${verdict(ratioOk)}`);
  console.log(`peak RSS         20 x 12 MP ${(rss20 / MB).toFixed(0)} MB; 50 photos ${(r50.rss / MB).toFixed(0)} MB (${r50.seconds.toFixed(1)} s); 500 photos ${(r500.rss / MB).toFixed(0)} MB (${r500.seconds.toFixed(1)} s)  target <= 250 MB and flat: ${verdict(rssOk)}`);
  if (!(wallOk && ratioOk && rssOk)) console.log("(MISS is reported, not fatal: timings depend on the machine and its load.)");
} catch (error) {
  failed = true;
  console.error(error instanceof Error ? error.message : error);
} finally {
  await emulator.stop();
}
process.exit(failed ? 1 : 0);
