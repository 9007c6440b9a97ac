// The face model in a worker thread (dist/face-worker.cjs; started by worker-model.ts). Inference is
// synchronous WebAssembly, so on the main thread it stalls everything else prepare does; here it
// runs on its own core while the main thread and libuv's threads decode, crop and write photos.
// The model starts loading as soon as the thread starts; requests queue behind it.
import { parentPort } from "node:worker_threads";
import { loadFaceModel } from "./model.ts";
import type { DetectRequest, WorkerReply } from "./worker-model.ts";

const port = parentPort;
if (!port) throw new Error("worker-entry runs only as a worker thread (see worker-model.ts).");
const reply = (message: WorkerReply) => port.postMessage(message);
const text = (error: unknown) => (error instanceof Error ? error.message : String(error));

const model = loadFaceModel();
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
