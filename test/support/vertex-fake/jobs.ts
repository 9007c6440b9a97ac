// JobService: a CustomJob runs its container command with the project venv's python, against a
// directory laid out like the job's Cloud Storage FUSE mount (/gcs/<bucket>/…), synced with the bucket.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { createInterface } from "node:readline";
import { checkLabels, checkMachine, invalid, labelFilter, md5, notFound, parseName, RpcError, S, sleep, stopChild, timestamp, walk } from "./common.ts";
import type { Ctx, Handler, JobRecord } from "./types.ts";

const terminal = (state: string) => ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"].includes(state);

function setJobState(job: JobRecord, state: string, error?: { code: number; message: string }) {
  job.resource.state = state;
  job.resource.updateTime = timestamp();
  if (state === "JOB_STATE_RUNNING") job.resource.startTime ??= timestamp();
  if (terminal(state)) job.resource.endTime = timestamp();
  if (error) job.resource.error = { code: error.code, message: error.message, details: [] };
}

const logsUrl = (ctx: Ctx, job: JobRecord) => `https://console.cloud.google.com/logs/viewer?project=${ctx.projectNumber}&resource=ml_job%2Fjob_id%2F${job.id}`;

/** Names of the complete checkpoints (checkpoint-<step>/COMPLETE, as templates/trainer writes them) in a dir. */
function completeCheckpoints(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => /^checkpoint-\d+$/.test(n) && existsSync(join(dir, n, "COMPLETE")));
  } catch {
    return [];
  }
}

type Attempt = { kind: "exit"; code: number | null } | { kind: "preempted" } | { kind: "cancelled" };

export function jobService(ctx: Ctx, unary: (method: string, handler: Handler) => unknown) {
  /** The FUSE dir → bucket: new or changed files up, files gone from the dir deleted. Temp files (.name) stay local. */
  async function syncUp(fuse: string, known: Map<string, string>): Promise<void> {
    const seen = new Set<string>();
    for (const path of walk(fuse)) {
      const rel = relative(fuse, path).split("/");
      const [bucket, ...rest] = rel;
      if (!bucket || rest.length === 0 || rest.at(-1)!.startsWith(".")) continue;
      const key = `${bucket}/${rest.join("/")}`;
      let body: Buffer;
      try {
        body = readFileSync(path);
      } catch {
        continue; // renamed or removed while we looked
      }
      seen.add(key);
      const hash = md5(body);
      if (known.get(key) === hash) continue;
      await ctx.storage.bucket(bucket).file(rest.join("/")).save(body, { resumable: false });
      known.set(key, hash);
    }
    for (const key of [...known.keys()]) {
      if (seen.has(key)) continue;
      const [bucket, ...rest] = key.split("/");
      await ctx.storage.bucket(bucket!).file(rest.join("/")).delete({ ignoreNotFound: true });
      known.delete(key);
    }
  }

  /** One run of the job's command: mount, run, sync back. A preemption stops it with SIGTERM. */
  async function attempt(job: JobRecord, n: number): Promise<Attempt> {
    const pool = job.resource.jobSpec.workerPoolSpecs[0];
    const container = pool.containerSpec;
    const fuse = mkdtempSync(join(ctx.work, `job-${job.id}-${n}-gcs-`));
    const known = new Map<string, string>(); // "<bucket>/<object>" → md5 of what the bucket holds
    try {
      // What the job names in the bucket: /gcs/<bucket>/<path> in its command and args, and its base
      // output dir. A path that is a "directory" (a prefix with objects under it, no placeholder
      // objects needed) comes down with everything under it, as Cloud Storage FUSE shows implicit
      // directories; whether Vertex's mount does so for objects written through the JSON API is
      // unconfirmed (research: vertex-real-behaviour.md, "Training FUSE").
      const strings: string[] = [...container.command, ...container.args];
      const wanted: { bucket: string; prefix: string }[] = [];
      for (const s of strings) for (const m of s.matchAll(/\/gcs\/([a-z0-9][a-z0-9._-]*)\/([^\s'"]*)/g)) wanted.push({ bucket: m[1]!, prefix: m[2]!.replace(/\/+$/, "") });
      const base = job.resource.jobSpec.baseOutputDirectory?.outputUriPrefix || "";
      if (base) wanted.push(ctx.parseGs(base));
      for (const w of wanted) {
        const names = await ctx.listObjects(w.bucket, w.prefix);
        for (const [name, hash] of await ctx.download(w.bucket, names, join(fuse, w.bucket))) known.set(`${w.bucket}/${name}`, hash);
        // The mount shows the bucket even where nothing exists yet.
        mkdirSync(join(fuse, w.bucket), { recursive: true });
      }
      if (job.cancelRequested || ctx.isClosed()) return { kind: "cancelled" };
      const mount = (s: string) => s.replace(/(^|[\s'"=])\/gcs\//g, `$1${fuse}/`);
      const command = container.command.length ? container.command.map(mount) : [];
      if (command.length === 0) throw new RpcError(S.INVALID_ARGUMENT, "fake: the training image has no entrypoint; the job must pass a command.");
      const args: string[] = container.args.map(mount);
      const baseDir = base.replace(/\/$/, "");
      const env: Record<string, string> = {
        PATH: `${dirname(ctx.python)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        HOME: process.env.HOME ?? tmpdir(),
        ...Object.fromEntries((container.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value])),
        ...(base ? { AIP_MODEL_DIR: `${baseDir}/model/`, AIP_CHECKPOINT_DIR: `${baseDir}/checkpoints/`, AIP_TENSORBOARD_LOG_DIR: `${baseDir}/logs/` } : {}),
        CLOUD_ML_JOB_ID: job.id,
        AVATAR_GCS_FUSE_ROOT: fuse,
        ...ctx.options.env,
      };

      // Where the trainer keeps checkpoints: AIP_CHECKPOINT_DIR and any --checkpoint-dir it is given.
      const local = (path: string) => {
        if (path.startsWith("gs://")) {
          const { bucket, prefix } = ctx.parseGs(path);
          return join(fuse, bucket, prefix);
        }
        return path.startsWith(`${fuse}/`) ? path : undefined;
      };
      const checkpointDirs = new Set<string>();
      if (base) checkpointDirs.add(local(`${baseDir}/checkpoints`)!);
      args.forEach((a, i) => {
        const value = a === "--checkpoint-dir" ? args[i + 1] : a.startsWith("--checkpoint-dir=") ? a.slice("--checkpoint-dir=".length) : undefined;
        const dir = value ? local(value) : undefined;
        if (dir) checkpointDirs.add(dir);
      });
      const before = new Set([...checkpointDirs].flatMap((d) => completeCheckpoints(d).map((n) => join(d, n))));
      const fresh = new Set<string>();

      const child = spawn(command[0]!, [...command.slice(1), ...args], { cwd: fuse, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
      job.child = child;
      for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on("line", (l) => job.log.push(l));
      let preempted = false;
      // Files written through the mount reach the bucket as they are closed: sync while it runs.
      let syncing = Promise.resolve();
      const sync = () => (syncing = syncing.then(() => syncUp(fuse, known)).catch(() => undefined));
      const tick = () => {
        void sync();
        const plan = job.preempt;
        if (!plan || plan.fired) return;
        for (const d of checkpointDirs) for (const n of completeCheckpoints(d)) if (!before.has(join(d, n))) fresh.add(join(d, n));
        if (fresh.size < plan.afterCheckpoints) return;
        // A Spot VM being reclaimed: the worker gets SIGTERM, and SIGKILL after the grace period
        // (Compute Engine gives a preempted VM 30 s).
        plan.fired = true;
        preempted = true;
        job.log.push(`fake: preempting workerpool0-0 after ${fresh.size} new checkpoint(s): SIGTERM`);
        void stopChild(child, ctx.settings.preemptGraceMs);
      };
      const timer = setInterval(tick, 400);
      const code = await new Promise<number | null>((resolve) => {
        child.on("error", (e) => (job.log.push(`exec error: ${e.message}`), resolve(127)));
        child.on("exit", (c, signal) => resolve(c ?? (signal ? 128 + (({ SIGTERM: 15, SIGKILL: 9, SIGINT: 2 }) as Record<string, number>)[signal]! : null)));
      });
      clearInterval(timer);
      await sync();
      await syncing;
      return preempted ? { kind: "preempted" } : { kind: "exit", code };
    } finally {
      rmSync(fuse, { recursive: true, force: true });
    }
  }

  async function runJob(job: JobRecord): Promise<void> {
    await sleep(ctx.options.jobStartDelayMs ?? 300);
    if (job.cancelRequested || ctx.isClosed()) {
      setJobState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
      return;
    }
    setJobState(job, "JOB_STATE_RUNNING");
    const scheduling = job.resource.jobSpec.scheduling ?? {};
    // scheduling.restartJobOnWorkerRestart: "Restarts the entire CustomJob if a worker gets restarted"
    // (proto); disableRetries "overrides restart_job_on_worker_restart to false". That a preempted Spot
    // worker counts as such a restart (the job runs its command again and stays RUNNING) is how the
    // fake plays it; the exact Vertex behaviour on preemption is unconfirmed (research notes).
    const restart = scheduling.restartJobOnWorkerRestart === true && scheduling.disableRetries !== true;
    const timeoutSeconds = Number(scheduling.timeout?.seconds ?? 0);
    const killer = timeoutSeconds > 0 ? setTimeout(() => ((job.timedOut = true), void stopChild(job.child)), timeoutSeconds * 1000) : undefined;
    try {
      let outcome: Attempt;
      for (let n = 1; ; n++) {
        outcome = await attempt(job, n);
        if (outcome.kind !== "preempted" || !restart || job.cancelRequested || job.timedOut || ctx.isClosed()) break;
        job.log.push("fake: restarting the job on a new VM (scheduling.restartJobOnWorkerRestart)");
      }
      if (job.cancelRequested || outcome.kind === "cancelled") setJobState(job, "JOB_STATE_CANCELLED", { code: 1, message: "CANCELED" });
      else if (job.timedOut) setJobState(job, "JOB_STATE_FAILED", { code: 4, message: `Job exceeded the timeout of ${timeoutSeconds}s.` });
      else if (outcome.kind === "preempted") {
        // No public record of the exact error Vertex gives a CustomJob whose Spot VM was reclaimed was
        // found: the wording follows its non-zero-exit message, and the code is 14 (UNAVAILABLE) as
        // Google's Pipelines API reports a preempted VM ("14: VM … stopped unexpectedly", dsub #42).
        setJobState(job, "JOB_STATE_FAILED", {
          code: 14,
          message: `The replica workerpool0-0 was preempted: its Spot VM was reclaimed by Compute Engine. To find out more about why your job exited please check the logs: ${logsUrl(ctx, job)}`,
        });
      } else if (outcome.code === 0) setJobState(job, "JOB_STATE_SUCCEEDED");
      else {
        setJobState(job, "JOB_STATE_FAILED", {
          code: 3,
          message: `The replica workerpool0-0 exited with a non-zero status of ${outcome.code}. Termination reason: Error. To find out more about why your job exited please check the logs: ${logsUrl(ctx, job)}`,
        });
      }
    } catch (error) {
      job.log.push(`fake: ${(error as Error).message}`);
      setJobState(job, "JOB_STATE_FAILED", { code: (error as RpcError).code ?? 13, message: (error as Error).message });
    } finally {
      if (killer) clearTimeout(killer);
    }
  }

  const findJob = (name: string) => {
    const p = parseName(name, "customJobs");
    ctx.loc(p);
    const job = ctx.jobs.get(p.id!);
    if (!job) throw notFound(`CustomJob ${name} not found.`);
    return job;
  };

  return {
    CreateCustomJob: unary("CreateCustomJob", (req) => {
      const locName = ctx.location(req.parent);
      const spec = req.customJob;
      if (!spec?.displayName) throw invalid("custom_job.display_name is required.");
      checkLabels(spec.labels);
      const pools = spec.jobSpec?.workerPoolSpecs ?? [];
      if (pools.length === 0) throw invalid("custom_job.job_spec.worker_pool_specs is required.");
      checkMachine(pools[0].machineSpec);
      if (!pools[0].containerSpec?.imageUri) throw invalid("worker_pool_specs[0].container_spec.image_uri is required.");
      if (Number(pools[0].replicaCount) < 1) throw invalid("worker_pool_specs[0].replica_count must be ≥ 1.");
      const base = spec.jobSpec.baseOutputDirectory?.outputUriPrefix;
      if (base) ctx.parseGs(base);
      // scheduling.strategy (STANDARD, SPOT, …) and disableRetries are taken as given.
      const id = String(ctx.nextId());
      const resource = { ...spec, name: `${locName}/customJobs/${id}`, state: "JOB_STATE_PENDING", createTime: timestamp(), updateTime: timestamp() };
      const job: JobRecord = { id, resource, log: [], done: Promise.resolve() };
      if (ctx.settings.preempt) {
        job.preempt = { ...ctx.settings.preempt };
        ctx.settings.preempt = undefined;
      }
      job.done = runJob(job);
      ctx.track(job.done);
      ctx.jobs.set(id, job);
      return resource;
    }),
    GetCustomJob: unary("GetCustomJob", (req) => findJob(req.name).resource),
    ListCustomJobs: unary("ListCustomJobs", (req) => {
      const locName = ctx.location(req.parent);
      const match = labelFilter(req.filter ?? "");
      return { customJobs: [...ctx.jobs.values()].map((j) => j.resource).filter((r) => r.name.startsWith(locName) && match(r.labels ?? {})), nextPageToken: "" };
    }),
    CancelCustomJob: unary("CancelCustomJob", (req) => {
      const job = findJob(req.name);
      if (terminal(job.resource.state)) throw new RpcError(S.FAILED_PRECONDITION, `Cannot cancel CustomJob ${req.name} in state ${job.resource.state}.`);
      job.cancelRequested = true;
      if (job.resource.state === "JOB_STATE_RUNNING") {
        setJobState(job, "JOB_STATE_CANCELLING");
        void stopChild(job.child);
      }
      return {};
    }),
  };
}
