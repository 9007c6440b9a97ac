// The face model behind a worker thread, for prepare: detection (~85 ms a photo of synchronous
// WebAssembly, plus ~0.7 s to load and warm up) then overlaps with the decoding and cropping the
// main thread drives, instead of stalling it. The thread runs the built dist/face-worker.cjs
// (src/workflows/faces/worker-entry.ts), found from the package root; where there is no build
// (tests importing src/ without one) the model runs on the main thread as before.
// The worker never keeps the process alive: it is referenced only while a request is outstanding,
// and close() ends it.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { Face, RgbImage } from "../../core/faces.ts";
import { loadFaceModel, type DetectOptions, type FaceModel } from "./model.ts";

export interface DetectRequest {
  id: number;
  image: RgbImage;
  options: DetectOptions;
}

export type WorkerReply =
  | { kind: "ready" }
  | { kind: "load-failed"; message: string }
  | { kind: "faces"; id: number; faces: Face[] }
  | { kind: "failed"; id: number; message: string };

export interface FaceModelHandle {
  /** Where detection runs. */
  thread: "worker" | "main";
  /** Settles once the model is loaded (rejects with the reason when it cannot load). */
  model: Promise<FaceModel>;
  /** Ends the worker (a no-op for the main-thread model, which stays cached for the process). */
  close(): Promise<void>;
}

/** Starts loading the face model now: in a worker thread when the build has one, else here. */
export function startFaceModel(): FaceModelHandle {
  const file = workerFile();
  if (!file) return { thread: "main", model: loadFaceModel(), close: async () => undefined };
  return startWorker(file);
}

/** dist/face-worker.cjs under the package root (the folder above this file with package.json). */
function workerFile(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) {
      const file = join(dir, "dist", "face-worker.cjs");
      return existsSync(file) ? file : undefined;
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function startWorker(file: string): FaceModelHandle {
  const worker = new Worker(file);
  const pending = new Map<number, { resolve(faces: Face[]): void; reject(error: Error): void }>();
  let nextId = 1;
  let stopped: Error | undefined;
  // Referenced while the model loads or a request waits: otherwise an idle worker would hold the process open.
  let outstanding = 1;
  const hold = () => {
    if (outstanding++ === 0) worker.ref();
  };
  const release = () => {
    if (--outstanding === 0) worker.unref();
  };

  let loaded!: (model: FaceModel) => void;
  let failed!: (error: Error) => void;
  const model = new Promise<FaceModel>((resolve, reject) => {
    loaded = resolve;
    failed = reject;
  });
  let loading = true;
  const stop = (error: Error) => {
    if (stopped) return;
    stopped = error;
    if (loading) {
      loading = false;
      failed(error);
    }
    for (const request of pending.values()) request.reject(error);
    pending.clear();
    worker.unref();
  };

  const detect = (image: RgbImage, options: DetectOptions = {}): Promise<Face[]> => {
    if (stopped) return Promise.reject(stopped);
    const id = nextId++;
    // A copy the worker owns (moved, not cloned): the caller's buffer may be a slice of a larger one.
    const data = new Uint8Array(image.data);
    const request: DetectRequest = { id, image: { data, width: image.width, height: image.height }, options };
    return new Promise<Face[]>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      hold();
      worker.postMessage(request, [data.buffer]);
    });
  };

  worker.on("message", (message: WorkerReply) => {
    if (message.kind === "ready" || message.kind === "load-failed") {
      if (!loading) return;
      release();
      if (message.kind === "load-failed") return stop(new Error(message.message));
      loading = false;
      loaded({ detect });
      return;
    }
    const request = pending.get(message.id);
    if (!request) return;
    pending.delete(message.id);
    release();
    if (message.kind === "faces") request.resolve(message.faces);
    else request.reject(new Error(message.message));
  });
  worker.on("error", (error) => stop(error));
  worker.on("exit", (code) => stop(new Error(`the face model's worker thread stopped (exit code ${code})`)));

  return {
    thread: "worker",
    model,
    close: async () => {
      stop(new Error("the face model was closed"));
      await worker.terminate();
    },
  };
}
