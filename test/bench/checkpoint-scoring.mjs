// Checkpoint scoring (issue #12 §4): a run with 5 sampled checkpoints × 4 samples (512 px PNGs: real
// face crops from the face library's package photos, and noise) and a dataset of 10 training photos,
// in a local store. Measures (median of BENCH_RUNS runs, default 3):
//  - scoring: loading the face model, the 10 training faces and the 20 samples (the work register
//    adds), in a fresh process each run; target at most 5 s on 2 cores;
//  - the whole `avatar register --checkpoint auto` through the built CLI (Node start-up included),
//    and once more with the scores it kept (re-registering a run).
// The machine's load average is printed beside: on a shared machine the numbers are upper bounds.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { LocalStore } from "../../src/backends/local/store.ts";
import { noise, personViews, putDataset, putRun } from "../support/scripted-run.ts";

const root = new URL("../..", import.meta.url).pathname;
const runs = Number(process.env.BENCH_RUNS ?? 3);
const TARGET_S = 5;

const home = mkdtempSync(join(tmpdir(), "avatar-bench-scoring-"));
try {
  const [c, b, d] = await Promise.all([personViews("c"), personViews("b"), personViews("d")]);
  const store = new LocalStore(join(home, "store"));
  // Ten photos of the person, none of them a view used as a sample below (those would be copies).
  const variant = (image, f) => f(sharp(image)).png().toBuffer();
  const training = [
    c.plain, c.bright, c.rotP6, c.zoomOut,
    await variant(c.plain, (s) => s.greyscale()), await variant(c.plain, (s) => s.modulate({ brightness: 0.8 })),
    await variant(c.rotP6, (s) => s.modulate({ saturation: 0.5 })), await variant(c.zoomOut, (s) => s.modulate({ brightness: 1.1 })),
    await variant(c.bright, (s) => s.linear(1.2, -20)), await variant(c.plain, (s) => s.blur(1.2)),
  ];
  const sha = await putDataset(store, "bench", training);
  const checkpoints = {
    200: [b.plain, b.mirror, await noise(1, 512), c.rotM12],
    400: [c.mirrorRot, d.mirror, c.mirrorWarm, await noise(2, 512)],
    600: [c.mirror, c.mirrorRot, c.mirrorWarm, c.mirrorZoom],
    800: [d.zoomOut, c.mirror, b.rotM6, c.rotM12],
    1000: [c.plain, c.bright, c.zoomOut, c.mirror],
  };
  await putRun(store, { name: "bench", runId: "20261201-090000", datasetSha256: sha, checkpoints });
  // Scoring alone, in a fresh process per run (the face model is loaded once per process).
  const scoring = [];
  const scoringCpu = [];
  const script = `
    const { LocalStore } = await import(${JSON.stringify(join(root, "src/backends/local/store.ts"))});
    const { listCheckpoints, scoreCheckpoints } = await import(${JSON.stringify(join(root, "src/workflows/checkpoint-scores.ts"))});
    const store = new LocalStore(${JSON.stringify(join(home, "store"))});
    const quiet = { progress: () => ({ update() {}, done() {} }) };
    const started = performance.now();
    const cpu = process.cpuUsage();
    const checkpoints = await listCheckpoints({ store }, "bench", "20261201-090000");
    const scores = await scoreCheckpoints({ out: quiet }, { store }, "bench", checkpoints, ${JSON.stringify(sha)});
    const used = process.cpuUsage(cpu);
    console.log(JSON.stringify({ ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000, rows: scores.rows.length, faces: scores.references.faces }));`;
  for (let i = 0; i < runs; i++) {
    const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: root, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`scoring exited ${result.status}:\n${result.stderr}`);
    const measured = JSON.parse(result.stdout.trim().split("\n").at(-1));
    scoring.push(measured.ms / 1000);
    scoringCpu.push(measured.cpuMs / 1000);
  }
  const times = [];
  let data;
  const cache = join(home, "store", "avatar", "bench", "runs", "20261201-090000", "likeness-scores.json");
  for (let i = 0; i < runs; i++) {
    rmSync(cache, { force: true }); // register keeps the scores: measure scoring, not the cache
    const started = process.hrtime.bigint();
    const result = spawnSync(process.execPath, [join(root, "bin", "avatar.js"), "register", "--name", "bench", "--run", "20261201-090000", "--checkpoint", "auto", "--json"], {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home, AVATAR_STORE: join(home, "store"), NO_COLOR: "1" },
      encoding: "utf8",
    });
    times.push(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.status !== 0) throw new Error(`register exited ${result.status}:\n${result.stderr}\n${result.stdout}`);
    data = JSON.parse(result.stdout).data;
  }
  // Registering the same run again reads the kept scores: no face model, no detection.
  const again = process.hrtime.bigint();
  const cached = spawnSync(process.execPath, [join(root, "bin", "avatar.js"), "register", "--name", "bench", "--run", "20261201-090000", "--json"], {
    cwd: home,
    env: { PATH: process.env.PATH, HOME: home, AVATAR_STORE: join(home, "store"), NO_COLOR: "1" },
    encoding: "utf8",
  });
  if (cached.status !== 0) throw new Error(`register (cached) exited ${cached.status}:\n${cached.stderr}`);
  const cachedSeconds = Number(process.hrtime.bigint() - again) / 1e9;
  const medianOf = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const median = medianOf(scoring);
  console.log(`scored ${data.checkpoint.rows.length} checkpoints × 4 samples against ${data.checkpoint.references.faces} training faces: picked step ${data.checkpoint.step}`);
  console.log(`scoring (face model load + 10 training photos + 20 samples): ${scoring.map((t) => t.toFixed(2)).join(" s, ")} s; median ${median.toFixed(2)} s (target ≤ ${TARGET_S} s)`);
  console.log(`  CPU time of that scoring (user + system; the face model runs on one thread, so about the wall time on an idle core): median ${medianOf(scoringCpu).toFixed(2)} s`);
  console.log(`register --checkpoint auto, whole CLI process: ${times.map((t) => t.toFixed(2)).join(" s, ")} s; median ${medianOf(times).toFixed(2)} s`);
  console.log(`register again (scores kept in runs/<run>/likeness-scores.json): ${cachedSeconds.toFixed(2)} s`);
  console.log(`${availableParallelism()} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  if (median > TARGET_S) {
    console.log(`FAIL: over the ${TARGET_S} s target`);
    process.exitCode = 1;
  }
} finally {
  rmSync(home, { recursive: true, force: true });
}
