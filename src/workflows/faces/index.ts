// Faces: the lazily loaded face library (library.ts), the cached model (model.ts), the same model
// in a worker thread for prepare (worker-model.ts) and photos on disk (detect-file.ts). Pure rules
// and math live in core/faces.ts.
export { loadFaceModel, type DetectOptions, type Face, type FaceModel, type RgbImage } from "./model.ts";
export { startFaceModel, type FaceModelHandle } from "./worker-model.ts";
export { detectFile, type FileFaces } from "./detect-file.ts";
