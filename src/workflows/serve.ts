// avatar serve: run a model directory the way the serving container does, in the foreground.
// The directory is staged like `avatar register` ships it: the packaged handler.py and
// requirements.txt are added when the model directory has none of its own.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, readdir, rm, symlink, copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { MODEL_FILES } from "../core/run-keys.ts";
import { handlersDir } from "../paths.ts";

export interface StagedModel {
  dir: string;
  packagedHandler: boolean;
  cleanup(): Promise<void>;
}

export async function stageModelDir(modelDir: string, handler?: string): Promise<StagedModel> {
  const source = resolve(modelDir);
  if (!existsSync(source) || !statSync(source).isDirectory()) {
    throw new AvatarError("BAD_INPUT", `${source} is not a directory.`, { hint: "Pass a model directory with pytorch_lora_weights.safetensors and avatar.json." });
  }
  for (const file of [MODEL_FILES.weights, MODEL_FILES.manifest]) {
    if (!existsSync(join(source, file))) {
      throw new AvatarError("BAD_INPUT", `${source} has no ${file}.`, { hint: "Use the model/ folder of a finished training run (runs/<run-id>/model)." });
    }
  }
  if (handler && !existsSync(resolve(handler))) {
    throw new AvatarError("BAD_INPUT", `--handler ${resolve(handler)} does not exist.`, { hint: "Pass the path of a handler.py, or leave --handler out to use the model's own or the packaged one." });
  }
  const dir = await mkdtemp(join(tmpdir(), "avatar-serve-"));
  const names = await readdir(source);
  for (const name of names) await symlink(join(source, name), join(dir, name));
  const ownHandler = names.includes(MODEL_FILES.handler);
  if (handler) {
    await rm(join(dir, MODEL_FILES.handler), { force: true });
    await copyFile(resolve(handler), join(dir, MODEL_FILES.handler));
  } else if (!ownHandler) {
    await copyFile(join(handlersDir, MODEL_FILES.handler), join(dir, MODEL_FILES.handler));
  }
  if (!names.includes(MODEL_FILES.requirements)) await copyFile(join(handlersDir, MODEL_FILES.requirements), join(dir, MODEL_FILES.requirements));
  return { dir, packagedHandler: !ownHandler && !handler, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface RunningServer {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts handlers/local_server.py and resolves once it prints its ready line (the handler is built by then). */
export async function startServer(ctx: Context, python: string, modelDir: string, port: number, onLine: (line: string) => void): Promise<RunningServer> {
  const child = spawn(python, [join(handlersDir, "local_server.py"), "--model-dir", modelDir, "--port", String(port)], {
    // No shared endpoint in front: the handler's time limit is the check's 600 s client timeout.
    env: { AVATAR_PREDICT_TIMEOUT_S: "600", ...ctx.env, PYTHONUNBUFFERED: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
  const tail: string[] = [];
  const url = await new Promise<string>((done, fail) => {
    const watch = (stream: NodeJS.ReadableStream) =>
      createInterface({ input: stream }).on("line", (line) => {
        onLine(line);
        tail.push(line);
        if (tail.length > 8) tail.shift();
        const ready = /^ready url=(\S+)/.exec(line)?.[1];
        if (ready) done(ready);
      });
    watch(child.stdout!);
    watch(child.stderr!);
    void exited.then((code) =>
      fail(new AvatarError("BAD_INPUT", `The model server exited (code ${code}) before it was ready: ${tail.slice(-3).join(" / ")}`, {
        hint: "The handler could not load this model directory; the lines above (or --verbose) show why.",
      })),
    );
  });
  return {
    url,
    child,
    exited,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

export const exampleBody = { instances: [{ prompt: "a portrait photo of {avatar}" }], parameters: { steps: 20, seed: 42, num_images: 1 } };

export async function checkOnce(url: string, body: unknown): Promise<{ ms: number; bytes: number; width?: number; height?: number; seed?: number }> {
  const { request } = await import("undici");
  const started = performance.now();
  const response = await request(`${url}/predict`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), headersTimeout: 600_000, bodyTimeout: 600_000 });
  const text = await response.body.text();
  const ms = performance.now() - started;
  let parsed: { predictions?: { image_b64?: string; width?: number; height?: number; seed?: number }[]; error?: string };
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AvatarError("REMOTE_FAILED", `The server answered ${response.statusCode} with a non-JSON body.`);
  }
  if (response.statusCode !== 200) throw new AvatarError("BAD_INPUT", `The handler rejected the check request (${response.statusCode}): ${parsed.error ?? text}`);
  const first = parsed.predictions?.[0];
  if (!first?.image_b64) throw new AvatarError("REMOTE_FAILED", "The handler answered without predictions[0].image_b64.");
  const { default: sharp } = await import("sharp");
  const image = Buffer.from(first.image_b64, "base64");
  const meta = await sharp(image).metadata();
  return { ms, bytes: image.length, width: meta.width, height: meta.height, seed: first.seed };
}
