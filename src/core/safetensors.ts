// The safetensors file format, read and written without torch: an 8-byte little-endian header
// length N, N bytes of JSON ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {string: string}}), then the raw tensor bytes, offsets relative to the end of the header.
// Pure: buffers in, buffers out.

/** Bytes per element of each safetensors dtype. */
const DTYPE_SIZE: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** Headers beyond this are refused as not ours (the reference implementation caps them at 100 MB). */
const MAX_HEADER = 100_000_000;

export interface Tensor {
  dtype: string;
  shape: number[];
  /** The tensor's raw little-endian bytes (a view into the file when parsed). */
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const elements = (shape: readonly number[]) => shape.reduce((n, d) => n * d, 1);

/** Parses a whole file; throws SafetensorsError with what is wrong when it is not a valid one. */
export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 8) throw new SafetensorsError("is shorter than a safetensors header");
  const size = view.getBigUint64(0, true);
  if (size > BigInt(Math.min(MAX_HEADER, bytes.byteLength - 8))) throw new SafetensorsError("has a header length past the end of the file");
  const headerEnd = 8 + Number(size);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, headerEnd)));
  } catch {
    throw new SafetensorsError("has a header that is not JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw new SafetensorsError("has a header that is not a JSON object");
  const dataLength = bytes.byteLength - headerEnd;
  const tensors = new Map<string, Tensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Object.values(entry).some((v) => typeof v !== "string")) {
        throw new SafetensorsError("has __metadata__ that is not a map of strings");
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const itemSize = typeof dtype === "string" ? DTYPE_SIZE[dtype] : undefined;
    if (itemSize === undefined) throw new SafetensorsError(`has tensor "${name}" of unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(`has tensor "${name}" with a bad shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new SafetensorsError(`has tensor "${name}" with bad data_offsets`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) throw new SafetensorsError(`has tensor "${name}" whose bytes lie outside the file`);
    if (end - begin !== elements(shape) * itemSize) throw new SafetensorsError(`has tensor "${name}" whose byte length does not match its shape`);
    tensors.set(name, { dtype: dtype as string, shape: [...(shape as number[])], data: bytes.subarray(headerEnd + begin, headerEnd + end) });
  }
  return { tensors, metadata };
}

/**
 * Serialises tensors (in name order) with optional string metadata, as the chunks of the file:
 * the length + header, then each tensor's bytes (views, not copies). The header is padded with
 * spaces to a multiple of 8 bytes, as the reference implementation does, so tensor data stays aligned.
 */
export function safetensorsChunks(tensors: ReadonlyMap<string, Tensor>, metadata: Readonly<Record<string, string>> = {}): Uint8Array[] {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const itemSize = DTYPE_SIZE[t.dtype];
    if (itemSize === undefined) throw new SafetensorsError(`tensor "${name}" has unknown dtype ${t.dtype}`);
    if (t.data.byteLength !== elements(t.shape) * itemSize) throw new SafetensorsError(`tensor "${name}" has ${t.data.byteLength} bytes for shape [${t.shape.join(", ")}]`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const head = Buffer.allocUnsafe(8 + headerBytes.byteLength);
  head.writeBigUInt64LE(BigInt(headerBytes.byteLength), 0);
  headerBytes.copy(head, 8);
  return [head, ...names.map((name) => tensors.get(name)!.data)];
}

/** The whole file in one buffer (see safetensorsChunks). */
export function serializeSafetensors(tensors: ReadonlyMap<string, Tensor>, metadata: Readonly<Record<string, string>> = {}): Buffer {
  return Buffer.concat(safetensorsChunks(tensors, metadata));
}

/** A float32 tensor of shape [] holding one number (how kohya files store `.alpha`). */
export function scalarF32(value: number): Tensor {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setFloat32(0, value, true);
  return { dtype: "F32", shape: [], data };
}
