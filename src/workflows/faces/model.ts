// The face model every command uses: detect faces in an RGB image and describe each one (box,
// score, 68 landmarks, an L2-normalised 128-d identity embedding). One per process, cached.
import { normalizeEmbedding, type Face, type RgbImage } from "../../core/faces.ts";
import { loadAccurateDetector, loadFaceLibrary, type FaceApi, type LibraryFace } from "./library.ts";

export type { Face, RgbImage } from "../../core/faces.ts";

export interface DetectOptions {
  /**
   * "fast" (default): the Tiny Face Detector at 224 px, then at 416 px when that finds nothing;
   * ~0.1 s a photo on one core with landmarks and embedding. Made for selfies, portraits and
   * samples (faces of a tenth of the image or more); may miss small faces in a crowd.
   * "accurate": SSD MobileNet v1 at 512 px, ~4x slower; for group photos and counting people.
   * "auto": fast, then accurate when fast finds no face (costs more only on faceless images).
   */
  detector?: "fast" | "accurate" | "auto";
  /** Faces scoring below this are not reported (default 0.3 for fast, whose scores run low; 0.5 for accurate). */
  minScore?: number;
}

export interface FaceModel {
  /** Faces in the image, largest first; boxes in integer pixels of the input. */
  detect(image: RgbImage, options?: DetectOptions): Promise<Face[]>;
}

let cached: Promise<FaceModel> | undefined;

export function loadFaceModel(): Promise<FaceModel> {
  cached ??= loadFaceLibrary().then(
    (faceapi) => createFaceModel(faceapi),
    (error: unknown) => {
      cached = undefined;
      throw error;
    },
  );
  return cached;
}

function createFaceModel(faceapi: FaceApi): FaceModel {
  // The backend is one WebAssembly instance: run one image at a time so concurrent callers
  // (prepare decodes several photos at once) queue instead of interleaving their tensors.
  let queue: Promise<unknown> = Promise.resolve();
  const detect = (image: RgbImage, options: DetectOptions = {}): Promise<Face[]> => {
    const run = queue.then(async () => {
      const detector = options.detector ?? "fast";
      if (detector === "accurate") return detectNow(faceapi, image, "ssd", options.minScore ?? 0.5);
      // The tiny detector's scores swing with scale: a face it misses at one input size it usually finds at another.
      const minScore = options.minScore ?? 0.3;
      let faces = await detectNow(faceapi, image, 224, minScore);
      if (!faces.length) faces = await detectNow(faceapi, image, 416, minScore);
      if (!faces.length && detector === "auto") faces = await detectNow(faceapi, image, "ssd", options.minScore ?? 0.5);
      return faces;
    });
    queue = run.catch(() => undefined);
    return run;
  };
  return { detect };
}

async function detectNow(faceapi: FaceApi, image: RgbImage, detector: "ssd" | 224 | 416, minScore: number): Promise<Face[]> {
  const { data, width, height } = image;
  if (!(width > 0 && height > 0) || data.length !== width * height * 3) {
    throw new Error(`detect() needs RGB pixels (3 bytes each): got ${data.length} bytes for ${width}x${height}`);
  }
  if (detector === "ssd") await loadAccurateDetector(faceapi);
  const detectorOptions =
    detector === "ssd"
      ? new faceapi.SsdMobilenetv1Options({ minConfidence: minScore, maxResults: 50 })
      : new faceapi.TinyFaceDetectorOptions({ inputSize: detector, scoreThreshold: minScore });
  const tensor = faceapi.tf.tensor3d(data, [height, width, 3], "int32");
  try {
    const found = await faceapi.detectAllFaces(tensor, detectorOptions).withFaceLandmarks().withFaceDescriptors();
    return found
      .map((face) => toFace(face, width, height))
      .filter((face) => face.box[2] > face.box[0] && face.box[3] > face.box[1])
      .sort((a, b) => area(b.box) - area(a.box));
  } finally {
    tensor.dispose();
  }
}

function toFace(face: LibraryFace, width: number, height: number): Face {
  const { x, y, width: w, height: h } = face.detection.box;
  const clamp = (value: number, max: number) => Math.min(max, Math.max(0, value));
  return {
    box: [Math.floor(clamp(x, width)), Math.floor(clamp(y, height)), Math.ceil(clamp(x + w, width)), Math.ceil(clamp(y + h, height))],
    score: face.detection.score,
    embedding: normalizeEmbedding(face.descriptor),
    landmarks: face.landmarks.positions.map((point) => [point.x, point.y] as [number, number]),
  };
}

const area = (box: Face["box"]) => (box[2] - box[0]) * (box[3] - box[1]);
