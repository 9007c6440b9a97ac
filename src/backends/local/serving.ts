// Local serving: handlers/local_server.py (the container stand-in) started detached per avatar on a
// free 127.0.0.1 port, recorded in <home>/endpoints/<name>.json; predict is HTTP with undici.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { AvatarError } from "../../core/errors.ts";
import { handlersDir } from "../../paths.ts";
import type { DeploySpec, EndpointInfo, PredictResponse, ServingService } from "../backend.ts";
import { isAlive, listRecords, readNewLines, readRecord, removeRecord, tailLines, writeRecord } from "./records.ts";

interface EndpointRecord extends EndpointInfo {
  pid?: number;
  logFile: string;
  healthRoute: string;
  predictRoute: string;
  modelDir: string;
}

export interface LocalServingOptions {
  dir: string;
  /** Absolute directory of a model's artifact URI (file://…). */
  modelDir: (artifactUri: string) => string;
  python: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  /** How long a model may take to load before the deploy fails. */
  startTimeoutMs?: number;
  /**
   * The GPU preset the user configured (--gpu, AVATAR_GPU, avatar.config.json), undefined when it
   * is only the default. Passed to the handler as AVATAR_GPU, which sizes its limits by it on a
   * CUDA machine (never beyond the card's memory); unset, the handler detects the card, and on a
   * CPU it uses CPU limits either way.
   */
  gpu?: "t4" | "l4";
}

/** predict's client timeout; also the handler's time limit (AVATAR_PREDICT_TIMEOUT_S) locally. */
const PREDICT_TIMEOUT_MS = 600_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The environment of the local serving container, as far as handler.py's limits go: AVATAR_GPU
 * only when configured (an inherited one is dropped otherwise), and no shared endpoint in front,
 * so the time limit is this client's timeout (unless set); the response limit stays 1.5 MB.
 */
export function handlerLimitsEnv(env: NodeJS.ProcessEnv, gpu: "t4" | "l4" | undefined): NodeJS.ProcessEnv {
  const { AVATAR_GPU: _inherited, ...rest } = env;
  return { AVATAR_PREDICT_TIMEOUT_S: String(PREDICT_TIMEOUT_MS / 1000), ...rest, ...(gpu ? { AVATAR_GPU: gpu } : {}) };
}

export class LocalServing implements ServingService {
  readonly #options: LocalServingOptions;

  constructor(options: LocalServingOptions) {
    this.#options = options;
  }

  #path(name: string): string {
    return join(this.#options.dir, `${name}.json`);
  }

  async #record(name: string): Promise<EndpointRecord | undefined> {
    const record = await readRecord<EndpointRecord>(this.#path(name));
    if (record && record.state !== "stopped" && !isAlive(record.pid)) {
      record.state = "stopped";
      delete record.pid;
    }
    return record;
  }

  #public(record: EndpointRecord): EndpointInfo {
    const { pid: _pid, logFile: _log, healthRoute: _h, predictRoute: _p, modelDir: _m, ...info } = record;
    return info;
  }

  async deploy(spec: DeploySpec, options: { signal?: AbortSignal; onStage?: (stage: string) => void } = {}): Promise<{ endpoint: EndpointInfo; reused: boolean }> {
    const current = await this.#record(spec.name);
    if (current?.state === "ready" && current.modelVersion === spec.version.versionId && (await this.#healthy(current))) {
      return { endpoint: this.#public(current), reused: true };
    }
    if (current?.pid) await this.down(spec.name);
    const python = await this.#options.python();
    await mkdir(this.#options.dir, { recursive: true });
    const modelDir = this.#options.modelDir(spec.version.artifactUri);
    const healthRoute = `/v1/endpoints/${spec.name}/deployedModels/${spec.version.versionId}`;
    const predictRoute = `${healthRoute}:predict`;
    const logFile = join(this.#options.dir, `${spec.name}.log`);
    const fd = openSync(logFile, "w");
    options.onStage?.("starting the serving container");
    const child = spawn(python, [join(handlersDir, "local_server.py"), "--model-dir", modelDir], {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: {
        ...handlerLimitsEnv(this.#options.env, this.#options.gpu),
        PYTHONUNBUFFERED: "1",
        AIP_MODE: "PREDICTION",
        AIP_HTTP_PORT: "0",
        AIP_HEALTH_ROUTE: healthRoute,
        AIP_PREDICT_ROUTE: predictRoute,
        AIP_DEPLOYED_MODEL_ID: spec.version.versionId,
      },
    });
    closeSync(fd);
    child.unref();
    const record: EndpointRecord = {
      id: `local-${spec.name}`,
      name: spec.name,
      state: "deploying",
      labels: spec.labels,
      modelVersion: spec.version.versionId,
      runId: spec.version.runId,
      gpu: "local",
      createdAt: new Date().toISOString(),
      pid: child.pid,
      logFile,
      healthRoute,
      predictRoute,
      modelDir,
    };
    await writeRecord(this.#path(spec.name), record);
    try {
      record.url = await this.#waitReady(record, options);
    } catch (error) {
      await this.down(spec.name);
      throw error;
    }
    record.state = "ready";
    await writeRecord(this.#path(spec.name), record);
    options.onStage?.("ready");
    return { endpoint: this.#public(record), reused: false };
  }

  /** Follows the server log until its `ready url=…` line, then confirms health over HTTP. */
  async #waitReady(record: EndpointRecord, options: { signal?: AbortSignal; onStage?: (stage: string) => void }): Promise<string> {
    const deadline = Date.now() + (this.#options.startTimeoutMs ?? 600_000);
    let offset = 0;
    let partial = "";
    let staged = false;
    while (Date.now() < deadline) {
      if (options.signal?.aborted) throw new AvatarError("INTERRUPTED", "Deploy interrupted; the local endpoint was stopped.");
      const read = await readNewLines(record.logFile, offset, partial);
      offset = read.offset;
      partial = read.partial;
      for (const line of read.lines) {
        const url = /^ready url=(\S+)/.exec(line)?.[1];
        if (url) {
          record.url = url;
          if (await this.#healthy(record)) return url;
        }
      }
      if (!isAlive(record.pid)) {
        const tail = await tailLines(record.logFile, 5);
        throw new AvatarError("REMOTE_FAILED", `The local serving container exited while loading the model: ${tail.join(" / ")}`, {
          hint: `Check the model directory, or run \`avatar serve --check ${record.modelDir}\` for the handler's own error.`,
        });
      }
      if (!staged) {
        options.onStage?.("loading the model (handler constructed before the port opens)");
        staged = true;
      }
      await sleep(200);
    }
    throw new AvatarError("REMOTE_FAILED", "The local serving container did not become healthy in time.", { hint: `See ${record.logFile}.` });
  }

  async #healthy(record: EndpointRecord): Promise<boolean> {
    if (!record.url) return false;
    try {
      const { request } = await import("undici");
      const response = await request(`${record.url}${record.healthRoute}`, { method: "GET", headersTimeout: 5_000, bodyTimeout: 5_000 });
      await response.body.text();
      return response.statusCode === 200;
    } catch {
      return false;
    }
  }

  async list(filter: { name?: string } = {}): Promise<EndpointInfo[]> {
    const records = await listRecords<EndpointRecord>(this.#options.dir);
    const live = await Promise.all(records.filter((r) => !filter.name || r.name === filter.name).map((r) => this.#record(r.name)));
    return live.filter((r): r is EndpointRecord => r !== undefined).map((r) => this.#public(r));
  }

  async get(name: string): Promise<EndpointInfo | undefined> {
    const record = await this.#record(name);
    return record ? this.#public(record) : undefined;
  }

  async predict(name: string, body: unknown, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<PredictResponse> {
    const record = await this.#record(name);
    if (!record || record.state !== "ready" || !record.url) {
      throw new AvatarError("NOT_FOUND", `${name} is not deployed.`, { hint: `Run \`avatar deploy ${name}\` first.` });
    }
    const { request } = await import("undici");
    const timeout = options.timeoutMs ?? PREDICT_TIMEOUT_MS;
    const response = await request(`${record.url}${record.predictRoute}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: options.signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
    const text = await response.body.text();
    let parsed: { predictions?: Record<string, unknown>[]; error?: string };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new AvatarError("REMOTE_FAILED", `The endpoint answered ${response.statusCode} with a non-JSON body.`);
    }
    if (response.statusCode === 400) throw new AvatarError("BAD_INPUT", `The model rejected the request: ${parsed.error ?? text}`);
    if (response.statusCode !== 200 || !Array.isArray(parsed.predictions)) {
      throw new AvatarError("REMOTE_FAILED", `The endpoint answered ${response.statusCode}: ${parsed.error ?? text.slice(0, 200)}`);
    }
    return { predictions: parsed.predictions, deployedModelId: record.modelVersion };
  }

  async down(name: string): Promise<boolean> {
    const record = await readRecord<EndpointRecord>(this.#path(name));
    if (!record) return false;
    if (record.pid && isAlive(record.pid)) {
      try {
        process.kill(-record.pid, "SIGTERM");
      } catch {
        process.kill(record.pid, "SIGTERM");
      }
      for (let i = 0; i < 100 && isAlive(record.pid); i++) await sleep(100);
      if (isAlive(record.pid)) process.kill(record.pid, "SIGKILL");
    }
    await removeRecord(this.#path(name));
    return true;
  }

  async logs(name: string, options: { onLine: (line: string) => void; tail?: number }): Promise<void> {
    const record = await readRecord<EndpointRecord>(this.#path(name));
    if (!record) throw new AvatarError("NOT_FOUND", `${name} has no local endpoint.`, { hint: `Run \`avatar deploy ${name}\`.` });
    for (const line of await tailLines(record.logFile, options.tail ?? 10_000)) options.onLine(line);
  }
}
