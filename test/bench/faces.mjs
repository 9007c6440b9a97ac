// Face checks' cost in `avatar prepare`: 20 x 12-MP JPEGs of one real face (the face library's own
// sample photo, turned, mirrored and relit, upscaled to 4000x3000), through the built CLI in fresh
// processes, with face checks on and off. Target: face work adds at most 3 s on 2 cores. The
// fixtures are generated once and cached.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import sharp from "sharp";
import { cropRegion, PEOPLE } from "../support/faces.ts";

const root = new URL("../..", import.meta.url).pathname;
const cache = process.env.AVATAR_BENCH_CACHE ?? join(tmpdir(), "avatar-bench-faces-v2");
const runs = Number(process.env.BENCH_RUNS ?? 3);
const folder = join(cache, "twenty-12mp-faces");

async function fixtures() {
  if (existsSync(join(folder, ".complete"))) return;
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  // Person a with room around her (sample1, 800x600 around the face), then 5x: a 12-MP photo whose
  // face is ~1000 px, like a phone selfie.
  const base = await (await cropRegion({ sample: PEOPLE.a.sample, left: 1120, top: 20, width: 800, height: 600 })).png().toBuffer();
  for (let i = 0; i < 20; i++) {
    let image = sharp(await sharp(base).rotate(-12 + i * 1.3, { background: "#707070" }).toBuffer());
    if (i % 2) image = image.flop();
    image = image.modulate({ brightness: 0.8 + i * 0.02 });
    const photo = await image.resize(4000, 3000, { fit: "cover" }).jpeg({ quality: 90 }).toBuffer();
    writeFileSync(join(folder, `IMG_${String(i + 1).padStart(4, "0")}.JPG`), photo);
  }
  writeFileSync(join(folder, ".complete"), "");
}

// CPU time of the CLI (all threads), written at exit: on a loaded machine wall time says little.
const cpuHook = join(cache, "cpu-hook.mjs");
const cpuFile = join(cache, "cpu.txt");

function prepare(faceCheck) {
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, ["--import", pathToFileURL(cpuHook).href, join(root, "bin", "avatar.js"), "prepare", folder, "--json", "--base", "sdxl"], {
    env: { PATH: process.env.PATH, HOME: cache, NO_COLOR: "1", AVATAR_FACE_CHECK: faceCheck ? "1" : "0", AVATAR_BENCH_CPU_FILE: cpuFile },
    encoding: "utf8",
    timeout: 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`avatar prepare exited ${result.status}: ${result.stdout.slice(0, 2000)}${result.stderr.slice(-2000)}`);
  return { seconds, cpu: Number(readFileSync(cpuFile, "utf8")) / 1e6, data: JSON.parse(result.stdout).data };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

await fixtures();
writeFileSync(cpuHook, `import { writeFileSync } from "node:fs";\nprocess.on("exit", () => { const u = process.resourceUsage(); writeFileSync(process.env.AVATAR_BENCH_CPU_FILE, String(u.userCPUTime + u.systemCPUTime)); });\n`);
prepare(true); // warm the file cache and the compile cache
const on = [];
const off = [];
for (let i = 0; i < runs; i++) {
  off.push(prepare(false));
  on.push(prepare(true));
}
const kept = on[0].data.counts.kept;
const added = median(on.map((r) => r.seconds)) - median(off.map((r) => r.seconds));
const cpuAdded = median(on.map((r) => r.cpu)) - median(off.map((r) => r.cpu));
const ok = added <= 3 && kept === 20;
console.log(`machine          ${availableParallelism()} cores, load average ${loadavg()[0].toFixed(2)}`);
console.log(`prepare          20 x 12-MP JPEGs, face checks off: median ${median(off.map((r) => r.seconds)).toFixed(2)} s (${off.map((r) => r.seconds.toFixed(2)).join(", ")})`);
console.log(`                 face checks on (SDXL 1024 crops): median ${median(on.map((r) => r.seconds)).toFixed(2)} s (${on.map((r) => r.seconds.toFixed(2)).join(", ")}); ${kept}/20 kept`);
console.log(`face work adds   ${added.toFixed(2)} s wall  target <= 3 s: ${ok ? "PASS" : "MISS"}`);
console.log(`                 CPU time (user + system, all threads): off ${median(off.map((r) => r.cpu)).toFixed(2)} s, on ${median(on.map((r) => r.cpu)).toFixed(2)} s: +${cpuAdded.toFixed(2)} s`);
if (!ok) console.log("(MISS is reported, not fatal: timings depend on the machine and its load.)");
