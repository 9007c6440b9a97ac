// Faces: the lazily loaded face library (library.ts), the cached model (model.ts) and photos on
// disk (detect-file.ts). Pure rules and math live in core/faces.ts.
export { loadFaceModel, type DetectOptions, type Face, type FaceModel, type RgbImage } from "./model.ts";
export { detectFile, type FileFaces } from "./detect-file.ts";
