// Loads the face library: @vladmandic/face-api (MIT; detection, 68 landmarks and a 128-d identity
// embedding, the dlib ResNet-34 face-recognition model ported to TensorFlow.js) on TensorFlow.js's
// WebAssembly backend. Everything comes from node_modules: the weights ship inside face-api's
// package (model/), the .wasm binaries inside @tensorflow/tfjs-backend-wasm's (dist/); nothing is
// downloaded at install or at run time, and nothing native is built. Loaded only by commands that
// look at faces, so `avatar --help` never pays for it (~1.3 MB of JS and ~12 MB of weights).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** The part of face-api this project uses (the package's own typings are ~4,000 lines). */
export interface FaceApi {
  tf: {
    setBackend(name: string): Promise<boolean>;
    ready(): Promise<void>;
    getBackend(): string;
    tensor3d(values: Uint8Array | Int32Array, shape: [number, number, number], dtype: "int32"): { dispose(): void };
    engine(): { startScope(): void; endScope(): void };
  };
  nets: Record<"tinyFaceDetector" | "ssdMobilenetv1" | "faceLandmark68Net" | "faceRecognitionNet", { loadFromDisk(dir: string): Promise<void> }>;
  TinyFaceDetectorOptions: new (options: { inputSize: number; scoreThreshold: number }) => unknown;
  SsdMobilenetv1Options: new (options: { minConfidence: number; maxResults: number }) => unknown;
  detectAllFaces(input: unknown, options: unknown): {
    withFaceLandmarks(): { withFaceDescriptors(): Promise<LibraryFace[]> };
  };
}

export interface LibraryFace {
  detection: { score: number; box: { x: number; y: number; width: number; height: number } };
  landmarks: { positions: { x: number; y: number }[] };
  descriptor: Float32Array;
}

const require = createRequire(import.meta.url);
/** A dependency's folder in node_modules. */
const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));
/** The weights ship in face-api's package. */
const modelDir = () => join(packageDir("@vladmandic/face-api"), "model");

let loading: Promise<FaceApi> | undefined;

/** face-api on the WASM backend with its detector, landmark and recognition weights: once per process. */
export function loadFaceLibrary(): Promise<FaceApi> {
  loading ??= load().catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

async function load(): Promise<FaceApi> {
  const wasmDir = join(packageDir("@tensorflow/tfjs-backend-wasm"), "dist") + "/";
  const wasm = require("@tensorflow/tfjs-backend-wasm") as { setWasmPaths(prefix: string, usePlatformFetch?: boolean): void };
  // usePlatformFetch=false: Emscripten reads the .wasm with fs (fetch() cannot read file paths).
  wasm.setWasmPaths(wasmDir, false);
  const faceapi = require("@vladmandic/face-api/dist/face-api.node-wasm.js") as FaceApi;
  if (!(await faceapi.tf.setBackend("wasm"))) throw new Error("TensorFlow.js could not start its WebAssembly backend.");
  await faceapi.tf.ready();
  const models = modelDir();
  await Promise.all([
    faceapi.nets.tinyFaceDetector.loadFromDisk(models),
    faceapi.nets.faceLandmark68Net.loadFromDisk(models),
    faceapi.nets.faceRecognitionNet.loadFromDisk(models),
  ]);
  return faceapi;
}

let ssdLoading: Promise<void> | undefined;

/** The SSD detector (5.4 MB of weights) loads on first use: most runs never need it. */
export function loadAccurateDetector(faceapi: FaceApi): Promise<void> {
  ssdLoading ??= faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir()).catch((error: unknown) => {
    ssdLoading = undefined;
    throw error;
  });
  return ssdLoading;
}
