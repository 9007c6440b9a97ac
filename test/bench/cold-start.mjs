// Cold start of `avatar --help` against a bare `node -e 0`, both in fresh processes.
// Target: median ≤ 1.5× node's own start-up and ≤ 150 ms.
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;
const runs = Number(process.env.BENCH_RUNS ?? 21);

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function time(args) {
  const samples = [];
  for (let i = 0; i < runs + 2; i++) {
    const start = process.hrtime.bigint();
    const result = spawnSync(process.execPath, args, { stdio: "ignore" });
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (result.status !== 0) throw new Error(`${args.join(" ")} exited ${result.status}`);
    if (i >= 2) samples.push(ms); // the first two warm the file cache
  }
  return median(samples);
}

const bare = time(["-e", "0"]);
const help = time([join(root, "bin", "avatar.js"), "--help"]);
const ratio = help / bare;
const pass = ratio <= 1.5 && help <= 150;
console.log(`node -e 0        median ${bare.toFixed(1)} ms`);
console.log(`avatar --help    median ${help.toFixed(1)} ms`);
console.log(`ratio            ${ratio.toFixed(2)}x  (target <= 1.5x and <= 150 ms): ${pass ? "PASS" : "MISS"}`);
