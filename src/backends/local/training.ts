// Local training: the trainer as a Python child process, its record a JSON file, its log a file.
// The child is detached with output to the log, so `avatar status/logs` can re-attach from any
// process; an attached wait stops it on interrupt, and a re-run resumes from its checkpoint.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, writeSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { AvatarError } from "../../core/errors.ts";
import { parseTrainerLine, trainerArgs } from "../../core/trainer-args.ts";
import { trainerDir } from "../../paths.ts";
import type { LogOptions, TrainingJob, TrainingJobSpec, TrainingService, WaitOptions } from "../backend.ts";
import { isAlive, listRecords, readNewLines, readRecord, tailLines, writeRecord } from "./records.ts";

interface JobRecord extends TrainingJob {
  pid?: number;
  logFile: string;
  modelDir: string;
  exitCode?: number | null;
}

export interface LocalTrainingOptions {
  /** Where job records and logs live (<home>/jobs). */
  dir: string;
  /** Absolute directory of a store key. */
  storePath: (key: string) => string;
  storeUri: (key: string) => string;
  python: () => Promise<string>;
  env: NodeJS.ProcessEnv;
}

export class LocalTraining implements TrainingService {
  readonly #options: LocalTrainingOptions;
  readonly #children = new Map<string, ChildProcess>();

  constructor(options: LocalTrainingOptions) {
    this.#options = options;
  }

  #recordPath(id: string): string {
    return join(this.#options.dir, `${id}.json`);
  }

  async launch(spec: TrainingJobSpec): Promise<TrainingJob> {
    const id = `${spec.name}-${spec.runId}`;
    const existing = await this.get(id);
    if (existing?.state === "running") return existing;
    const python = await this.#options.python();
    await mkdir(this.#options.dir, { recursive: true });
    const modelDir = this.#options.storePath(spec.modelKey);
    await mkdir(modelDir, { recursive: true });
    await mkdir(this.#options.storePath(spec.checkpointKey), { recursive: true });
    const logFile = join(this.#options.dir, `${id}.log`);
    const args = trainerArgs({
      ...spec.trainer,
      dataset: this.#options.storePath(spec.datasetKey),
      outputDir: modelDir,
      checkpointDir: this.#options.storePath(spec.checkpointKey),
    });
    const fd = openSync(logFile, "a");
    if (existing) writeSync(fd, `--- resumed ${new Date().toISOString()}\n`);
    const child = spawn(python, ["-m", "avatar_trainer", ...args], {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: { ...this.#options.env, PYTHONPATH: trainerDir, PYTHONUNBUFFERED: "1" },
    });
    closeSync(fd);
    const record: JobRecord = {
      id,
      name: spec.name,
      runId: spec.runId,
      state: "running",
      labels: spec.labels,
      createdAt: existing?.createdAt ?? new Date().toISOString(),
      modelUri: this.#options.storeUri(spec.modelKey),
      pid: child.pid,
      logFile,
      modelDir,
    };
    await writeRecord(this.#recordPath(id), record);
    this.#children.set(id, child);
    child.on("exit", (code, signal) => {
      this.#children.delete(id);
      void this.#finish(id, code, signal);
    });
    child.unref();
    return this.#public(record);
  }

  async #finish(id: string, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const record = await readRecord<JobRecord>(this.#recordPath(id));
    if (!record || record.state !== "running") return;
    record.exitCode = code;
    record.endedAt = new Date().toISOString();
    if (code === 0) record.state = "succeeded";
    else if (signal) record.state = "interrupted";
    else {
      record.state = "failed";
      record.error = (await this.#errorLine(record)) ?? `the trainer exited with code ${code}`;
    }
    delete record.pid;
    await writeRecord(this.#recordPath(id), record);
  }

  /** The trainer's own `error: …` line, if it wrote one before exiting. */
  async #errorLine(record: JobRecord): Promise<string | undefined> {
    const tail = await tailLines(record.logFile, 30);
    // Only lines after the last resume count: an earlier attempt's error is history.
    const current = tail.slice(tail.findLastIndex((l) => l.startsWith("--- resumed")) + 1);
    return current.reverse().find((l) => l.startsWith("error:"))?.slice(6).trim();
  }

  /** A record says running but its process is gone (this CLI died): decide from what it left. */
  async #settle(record: JobRecord): Promise<JobRecord> {
    if (record.state !== "running" || isAlive(record.pid) || this.#children.has(record.id)) return record;
    const done = existsSync(join(record.modelDir, "avatar.json")) && existsSync(join(record.modelDir, "pytorch_lora_weights.safetensors"));
    const error = done ? undefined : await this.#errorLine(record);
    record.state = done ? "succeeded" : error ? "failed" : "interrupted";
    if (error) record.error = error;
    record.endedAt = new Date().toISOString();
    delete record.pid;
    await writeRecord(this.#recordPath(record.id), record);
    return record;
  }

  #public(record: JobRecord): TrainingJob {
    const { pid: _pid, logFile: _log, modelDir: _dir, exitCode: _code, ...job } = record;
    return job;
  }

  async get(id: string): Promise<TrainingJob | undefined> {
    const record = await readRecord<JobRecord>(this.#recordPath(id));
    return record ? this.#public(await this.#settle(record)) : undefined;
  }

  async list(filter: { name?: string } = {}): Promise<TrainingJob[]> {
    const records = await listRecords<JobRecord>(this.#options.dir);
    const settled = await Promise.all(records.filter((r) => !filter.name || r.name === filter.name).map((r) => this.#settle(r)));
    const jobs = await Promise.all(settled.map(async (r) => ({ ...this.#public(r), ...(r.state === "running" ? await this.#progress(r) : {}) })));
    return jobs.sort((a, b) => a.runId.localeCompare(b.runId));
  }

  /** A running job's newest `step=` line (what `avatar status` shows). */
  async #progress(record: JobRecord): Promise<Pick<TrainingJob, "progress">> {
    for (const line of (await tailLines(record.logFile, 20)).reverse()) {
      const parsed = parseTrainerLine(line);
      if (parsed?.kind === "step") return { progress: parsed.progress };
    }
    return {};
  }

  async wait(id: string, options: WaitOptions = {}): Promise<TrainingJob> {
    const record = await readRecord<JobRecord>(this.#recordPath(id));
    if (!record) throw new AvatarError("NOT_FOUND", `No local training job ${id}.`);
    const onLine = (line: string) => {
      options.onLine?.(line);
      const parsed = parseTrainerLine(line);
      if (parsed?.kind === "step") options.onProgress?.(parsed.progress);
      else if (parsed?.kind === "phase") options.onPhase?.(parsed.fields.phase ?? "");
    };
    return this.#follow(record, { offset: 0, partial: "" }, onLine, options.signal);
  }

  /** Delivers the log lines after `from` as the trainer writes them, until the job ends (or `signal`). */
  async #follow(record: JobRecord, from: { offset: number; partial: string }, onLine: (line: string) => void, signal?: AbortSignal): Promise<TrainingJob> {
    let { offset, partial } = from;
    let last: TrainingJob | undefined;
    for (;;) {
      const read = await readNewLines(record.logFile, offset, partial);
      ({ offset, partial } = read);
      for (const line of read.lines) onLine(line);
      if (last && last.state !== "running") return last;
      if (signal?.aborted) return (await this.get(record.id))!;
      last = await this.get(record.id);
      if (!last) throw new AvatarError("NOT_FOUND", `Local training job ${record.id} disappeared.`);
      // One more pass after the end so the last log lines are read.
      if (last.state === "running") await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  async cancel(id: string): Promise<void> {
    const record = await readRecord<JobRecord>(this.#recordPath(id));
    if (!record || record.state !== "running") return;
    const child = this.#children.get(id);
    if (record.pid && isAlive(record.pid)) {
      try {
        process.kill(-record.pid, "SIGTERM"); // the whole group: the trainer's own workers too
      } catch {
        process.kill(record.pid, "SIGTERM");
      }
    }
    if (child && child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once("exit", resolve));
    else {
      for (let i = 0; i < 50 && isAlive(record.pid); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      await this.#settle(record);
    }
  }

  async logs(id: string, options: LogOptions): Promise<void> {
    const record = await readRecord<JobRecord>(this.#recordPath(id));
    if (!record) throw new AvatarError("NOT_FOUND", `No local training job ${id}.`, { hint: "`avatar status <name>` lists the runs." });
    if (!options.follow) {
      for (const line of await tailLines(record.logFile, options.tail ?? 10_000)) options.onLine(line);
      return;
    }
    const sofar = await readNewLines(record.logFile, 0, "");
    for (const line of options.tail ? sofar.lines.slice(-options.tail) : sofar.lines) options.onLine(line);
    await this.#follow(record, sofar, options.onLine, options.signal);
  }
}
