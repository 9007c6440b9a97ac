// The face model in a worker thread (dist/face-worker.cjs; started by worker-model.ts). Inference is
// synchronous WebAssembly, so on the main thread it stalls everything else prepare does; here it
// runs on its own core while the main thread and libuv's threads decode, crop and write photos.
// The model starts loading as soon as the thread starts; requests queue behind it.
import { enableCompileCache } from "node:module";
import { parentPort } from "node:worker_threads";
import type { FaceModel } from "./model.ts";
import type { DetectRequest, WorkerReply } from "./worker-model.ts";

const port = parentPort;
if (!port) throw new Error("worker-entry runs only as a worker thread (see worker-model.ts).");
const reply = (message: WorkerReply) => port.postMessage(message);
const text = (error: unknown) => (error instanceof Error ? error.message : String(error));

// A worker does not share the main thread's compile cache (src/boot.ts): without its own, the face
// library's ~1.3 MB of JavaScript is compiled afresh in every run. Enabled before the library loads.
enableCompileCache();
const model: Promise<FaceModel> = import("./model.ts").then(({ loadFaceModel }) => loadFaceModel());
model.then(
  () => reply({ kind: "ready" }),
  (error: unknown) => reply({ kind: "load-failed", message: text(error) }),
);

port.on("message", (request: DetectRequest) => {
  model
    .then((loaded) => loaded.detect(request.image, request.options))
    .then(
      (faces) => reply({ kind: "faces", id: request.id, faces }),
      (error: unknown) => reply({ kind: "failed", id: request.id, message: text(error) }),
    );
});
