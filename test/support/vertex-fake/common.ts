// Shared pieces of the Vertex fake: the package's protos, gRPC errors, resource names, labels,
// machine specs, protobuf Values, and small process/file helpers. Nothing here holds state.
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { grpc, protobuf } from "google-gax";
import * as protoLoader from "@grpc/proto-loader";
import { V1, type FakeFailure } from "./methods.ts";

export { checkFailure, SERVICES, STATUS_CODES, UNARY_METHODS, V1, type FakeFailure } from "./methods.ts";

const require = createRequire(import.meta.url);
export const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const protosJson = require("@google-cloud/aiplatform/build/protos/protos.json");
// google-gax's exports map hides its protos directory from require(): go by file path.
const statusJson = JSON.parse(readFileSync(join(dirname(require.resolve("google-gax")), "..", "protos", "status.json"), "utf8"));

const root = protobuf.Root.fromJSON(protosJson);
const statusRoot = protobuf.Root.fromJSON(statusJson);

/** The gRPC package as the clients see it (same loader options as google-gax). */
export const pkg = grpc.loadPackageDefinition(protoLoader.fromJSON(protosJson, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true })) as any;

export type Any = { typeUrl: string; value: Buffer };
export function pack(type: string, value: object): Any {
  const T = root.lookupType(type);
  const problem = T.verify(T.fromObject(value) as never);
  if (problem) throw new Error(`fake: ${type}: ${problem}`);
  return { typeUrl: `type.googleapis.com/${type}`, value: Buffer.from(T.encode(T.fromObject(value)).finish()) };
}

/** The project venv's python (AVATAR_VENV, else the default location the CLI uses). */
export function venvPython(): string {
  const venv = process.env.AVATAR_VENV || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "avatar", "venv");
  return join(venv, "bin", "python");
}

// ------------------------------------------------------------------------------------------------
// errors

export type ErrorInfo = Pick<FakeFailure, "reason" | "domain" | "metadata">;

export class RpcError extends Error {
  readonly code: number;
  readonly info: ErrorInfo | undefined;

  constructor(code: number, message: string, info?: ErrorInfo) {
    super(message);
    this.code = code;
    this.info = info;
  }
}

export const S = grpc.status;
export const invalid = (message: string) => new RpcError(S.INVALID_ARGUMENT, message);
export const notFound = (message: string) => new RpcError(S.NOT_FOUND, message);

/** Any error → an RpcError (a stray exception is the fake's own bug: INTERNAL with its stack). */
export function asRpcError(error: unknown): RpcError {
  return error instanceof RpcError ? error : new RpcError(S.INTERNAL, `fake: ${(error as Error)?.stack ?? String(error)}`);
}

export function toServiceError(error: unknown): grpc.ServiceError {
  const e = asRpcError(error);
  const metadata = new grpc.Metadata();
  if (e.info?.reason) {
    const ErrorInfo = statusRoot.lookupType("google.rpc.ErrorInfo");
    const Status = statusRoot.lookupType("google.rpc.Status");
    const info = ErrorInfo.encode(ErrorInfo.fromObject({ reason: e.info.reason, domain: e.info.domain ?? "aiplatform.googleapis.com", metadata: e.info.metadata ?? {} })).finish();
    const status = Status.encode(Status.fromObject({ code: e.code, message: e.message, details: [{ type_url: "type.googleapis.com/google.rpc.ErrorInfo", value: info }] })).finish();
    metadata.set("grpc-status-details-bin", Buffer.from(status));
  }
  return Object.assign(new Error(e.message), { code: e.code, details: e.message, metadata }) as grpc.ServiceError;
}

// ------------------------------------------------------------------------------------------------
// resource names, labels, filters, machines

export interface ParsedName {
  project: string;
  region: string;
  collection?: string;
  id?: string;
  version?: string;
}

export function parseName(name: string, collection?: string): ParsedName {
  const m = /^projects\/([^/]+)\/locations\/([^/]+)(?:\/([A-Za-z]+)\/([^/@]+)(?:@(.+))?)?$/.exec(name ?? "");
  if (!m || (collection && m[3] !== collection)) throw invalid(`Invalid resource name "${name}"${collection ? ` (expected …/${collection}/…)` : ""}.`);
  return { project: m[1]!, region: m[2]!, collection: m[3], id: m[4], version: m[5] };
}

const LABEL_KEY = /^[a-z][a-z0-9_-]{0,62}$/;
const LABEL_VALUE = /^[a-z0-9_-]{0,63}$/;
export function checkLabels(labels: Record<string, string> | undefined): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!LABEL_KEY.test(k)) throw invalid(`Label key "${k}" is invalid: keys start with a lowercase letter, use [a-z0-9_-], ≤ 63 characters.`);
    if (!LABEL_VALUE.test(v)) throw invalid(`Label value "${v}" of "${k}" is invalid: [a-z0-9_-], ≤ 63 characters.`);
  }
}

/** The filter subset the fake understands: `labels.k="v"`, `labels.k=v`, `labels.k:*`, joined by AND. */
export function labelFilter(filter: string): (labels: Record<string, string>) => boolean {
  if (!filter.trim()) return () => true;
  const terms = filter.split(/\s+AND\s+/).map((term) => {
    const m = /^labels\.([a-z][a-z0-9_-]*)(?:=(?:"([^"]*)"|([a-z0-9_-]+))|(:\*))$/.exec(term.trim());
    if (!m) throw invalid(`fake: unsupported filter term "${term}" (the fake knows labels.k="v", labels.k=v, labels.k:*)`);
    return { key: m[1]!, value: m[2] ?? m[3], any: Boolean(m[4]) };
  });
  return (labels) => terms.every((t) => (t.any ? t.key in labels : labels[t.key] === t.value));
}

export interface MachineSpec {
  machineType?: string;
  acceleratorType?: string;
  acceleratorCount?: number;
}

const MACHINE_FOR_GPU: Record<string, RegExp> = { NVIDIA_L4: /^g2-standard-(4|8|12|16|32)$/, NVIDIA_TESLA_T4: /^n1-(standard|highmem|highcpu)-\d+$/ };

/** The accelerator of a machine spec, or undefined for a CPU-only machine. */
export function gpuOf(spec: MachineSpec | null | undefined): string | undefined {
  const gpu = spec?.acceleratorType;
  return gpu && gpu !== "ACCELERATOR_TYPE_UNSPECIFIED" ? gpu : undefined;
}

/**
 * GPU machines: the pairs Compute Engine allows (L4 comes attached to G2, T4 goes on N1), one GPU
 * per replica. CPU-only machines (e2-standard-4, n1-standard-4, …: a `doctor --smoke` job) are fine;
 * a G2 machine always carries its L4, so one without is refused.
 */
export function checkMachine(spec: MachineSpec | null | undefined): void {
  if (!spec?.machineType) throw invalid("machine_spec.machine_type is required.");
  const gpu = gpuOf(spec);
  if (gpu) {
    const machines = MACHINE_FOR_GPU[gpu];
    if (!machines) throw invalid(`fake: accelerator ${gpu} is not one the fake knows.`);
    if (!machines.test(spec.machineType)) throw invalid(`Accelerator ${gpu} is not supported with machine type ${spec.machineType}.`);
    if (spec.acceleratorCount !== 1) throw invalid(`fake: accelerator_count ${spec.acceleratorCount} (the fake serves 1 GPU per replica).`);
  } else if (spec.machineType.startsWith("g2-")) {
    throw invalid(`Machine type ${spec.machineType} needs accelerator NVIDIA_L4.`);
  }
}

export function timestamp(ms = Date.now()) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

// ------------------------------------------------------------------------------------------------
// protobuf Values

/** google.protobuf.Value (as proto-loader decodes it: `kind` + the field) → JSON. */
export function fromValue(v: any): unknown {
  switch (v?.kind) {
    case "numberValue":
      return v.numberValue;
    case "stringValue":
      return v.stringValue;
    case "boolValue":
      return v.boolValue;
    case "structValue":
      return Object.fromEntries(Object.entries(v.structValue?.fields ?? {}).map(([k, x]) => [k, fromValue(x)]));
    case "listValue":
      return (v.listValue?.values ?? []).map(fromValue);
    default:
      return null;
  }
}

export function toValue(x: unknown): object {
  if (x === null || x === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof x === "number") return { numberValue: x };
  if (typeof x === "string") return { stringValue: x };
  if (typeof x === "boolean") return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(toValue) } };
  return { structValue: { fields: Object.fromEntries(Object.entries(x as object).map(([k, v]) => [k, toValue(v)])) } };
}

// ------------------------------------------------------------------------------------------------
// files, objects, processes

/**
 * An object's bytes with a plain GET (alt=media). The storage client's streaming download adds
 * listeners per chunk on big objects and floods stderr with MaxListenersExceededWarning.
 */
export async function fetchObject(endpoint: string, bucket: string, name: string): Promise<Buffer> {
  const response = await fetch(`${endpoint}/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(name)}?alt=media`);
  if (!response.ok) throw new Error(`fake: GET gs://${bucket}/${name}: ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

export const md5 = (b: Buffer) => createHash("md5").update(b).digest("hex");

export function walk(dir: string): string[] {
  const out: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(path));
    else if (e.isFile()) out.push(path);
  }
  return out;
}

export const exited = (child: ChildProcess | undefined) => !child || child.exitCode !== null || child.signalCode !== null;

/** SIGTERM to the child's process group (sh → python, python → workers), SIGKILL after `graceMs`; resolves on exit. */
export function stopChild(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (!child || exited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    const kill = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        child.kill(signal);
      }
    };
    kill("SIGTERM");
    setTimeout(() => kill("SIGKILL"), graceMs).unref();
  });
}

/** Waits `ms`; an abort ends the wait early with the signal's reason. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
