// The dataset zip, streamed: entries are fed to archiver one at a time from the spooled normalised
// JPEGs, each read only when archiver asks for it, so memory holds about one image however large the
// dataset. Fixed timestamps, permissions and order make the bytes identical for the same photos.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { ZipArchive } from "archiver";
import { AvatarError } from "../core/errors.ts";
import { MemoryPacer } from "./prepare-memory.ts";

/** Every entry carries this timestamp (DOS time has no time zone: UTC fields are used). */
export const ZIP_DATE = new Date(Date.UTC(2000, 0, 1, 0, 0, 0));
const ENTRY_MODE = 0o644;

export interface ZipImage {
  entry: string;
  /** The file to read. */
  file: string;
  /** Expected sha256 of the file: a spooled image changed behind our back fails the zip. */
  sha256: string;
}

function lazyVerified(image: ZipImage, pacer: MemoryPacer): Readable {
  return Readable.from(
    (async function* () {
      const data = await readFile(image.file);
      pacer.add(data.length);
      const sha = createHash("sha256").update(data).digest("hex");
      if (sha !== image.sha256) {
        throw new AvatarError("INTERNAL", `The prepared copy of ${image.entry} changed while the dataset was being zipped.`, {
          hint: "Run the command again.",
        });
      }
      yield data;
    })(),
    { objectMode: false },
  );
}

/** A small entry held in memory, written after the images (faces.json). */
export interface ZipExtra {
  entry: string;
  data: Buffer;
}

/** A readable zip of the images, in the given order, named by their entry names, then the extras. */
export function datasetZip(images: readonly ZipImage[], extras: readonly ZipExtra[] = []): Readable {
  const archive = new ZipArchive({ store: true, forceZip64: false, comment: "" });
  const pacer = new MemoryPacer();
  let next = 0;
  const feed = () => {
    if (next >= images.length + extras.length) {
      archive.finalize().catch((error: unknown) => archive.destroy(error as Error));
      return;
    }
    if (next >= images.length) {
      const extra = extras[next++ - images.length]!;
      // As a stream like the images, so every entry has the same layout (datasetZipSize counts on it).
      archive.append(Readable.from([extra.data], { objectMode: false }), { name: extra.entry, date: ZIP_DATE, mode: ENTRY_MODE });
      return;
    }
    const image = images[next++]!;
    const source = lazyVerified(image, pacer);
    // archiver pipes sources through a PassThrough, which does not forward errors: fail the archive.
    source.once("error", (error) => archive.destroy(error));
    archive.append(source, { name: image.entry, date: ZIP_DATE, mode: ENTRY_MODE });
  };
  archive.on("entry", feed);
  feed();
  return archive;
}
