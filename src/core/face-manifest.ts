// faces.json, the dataset's face manifest: the face box of every stored image that has one, so the
// trainer can weight the loss by a soft face mask. Exact shape (the trainer reads it):
//   {"schema":1,"images":{"0001.jpg":{"width":W,"height":H,"box":[x0,y0,x1,y1]},…}}
// Boxes are integer pixels of the stored image; entries sorted by name; an image without a known
// face is absent; compact JSON, so the same faces give the same bytes (and dataset hash).
import type { FaceBox } from "./faces.ts";

export const FACES_ENTRY = "faces.json";
export const FACES_SCHEMA = 1;

export interface FaceManifestImage {
  entry: string;
  width: number;
  height: number;
  box: FaceBox;
}

export function facesManifest(images: readonly FaceManifestImage[]): string {
  const sorted = [...images].sort((a, b) => (a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0));
  const entries: Record<string, { width: number; height: number; box: FaceBox }> = {};
  for (const { entry, width, height, box } of sorted) {
    if (entry in entries) throw new Error(`facesManifest: ${entry} twice`);
    if (!box.every(Number.isInteger) || box[0] < 0 || box[1] < 0 || box[2] > width || box[3] > height || box[2] <= box[0] || box[3] <= box[1]) {
      throw new Error(`facesManifest: box ${JSON.stringify(box)} is not inside ${entry} (${width}x${height})`);
    }
    entries[entry] = { width, height, box: [box[0], box[1], box[2], box[3]] };
  }
  return JSON.stringify({ schema: FACES_SCHEMA, images: entries });
}
