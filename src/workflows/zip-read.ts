// Reads the entries of a dataset zip held in memory (a few MB of normalised photos). The writer
// (zip.ts, archiver) streams its entries, so local headers carry no sizes (data descriptors follow
// the data): sizes and offsets come from the central directory. Stored and deflated entries.
import { inflateRawSync } from "node:zlib";
import { AvatarError } from "../core/errors.ts";

export interface ZipEntry {
  name: string;
  data: Buffer;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function corrupt(what: string, detail: string): AvatarError {
  return new AvatarError("BAD_INPUT", `${what} is not a readable zip (${detail}).`, { hint: "Upload the photos again (`avatar upload <dir> --name <name>`)." });
}

/** Every file entry (directories left out), in the zip's order. `what` names the zip in errors. */
export function readZipEntries(zip: Buffer, what: string): ZipEntry[] {
  // The end-of-central-directory record is in the last 22 + 65535 (comment) bytes.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw corrupt(what, "no end of central directory");
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let n = 0; n < count; n++) {
    if (at + 46 > zip.length || zip.readUInt32LE(at) !== CENTRAL) throw corrupt(what, `central directory entry ${n + 1}`);
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString("utf8", at + 46, at + 46 + nameLength);
    at += 46 + nameLength + extraLength + commentLength;
    if (name.endsWith("/")) continue;
    if (local + 30 > zip.length || zip.readUInt32LE(local) !== LOCAL) throw corrupt(what, `local header of ${name}`);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(start, start + compressed);
    if (raw.length !== compressed) throw corrupt(what, `${name} is cut short`);
    let data: Buffer;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) data = inflateRawSync(raw);
    else throw corrupt(what, `${name} uses compression method ${method}`);
    if (data.length !== size) throw corrupt(what, `${name} has ${data.length} bytes, expected ${size}`);
    entries.push({ name, data });
  }
  return entries;
}
