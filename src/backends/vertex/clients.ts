// Construction of Google clients. AVATAR_GCS_ENDPOINT points the storage client at an emulator
// (apiEndpoint only: the storage client's emulator-host variable mangles JSON API paths in v8).
import type { Storage } from "@google-cloud/storage";
import { offlineClient, type Unchecked } from "./offline.ts";

export interface StorageOptions {
  project?: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Quick probes (doctor) want an answer, not exponential backoff. */
  maxRetries?: number;
}

export async function createStorage(options: StorageOptions): Promise<Storage> {
  const { Storage } = await import("@google-cloud/storage");
  const endpoint = options.env.AVATAR_GCS_ENDPOINT;
  return new Storage({
    projectId: options.project ?? (endpoint ? "avatar-test" : undefined),
    ...(endpoint ? { apiEndpoint: endpoint } : {}),
    retryOptions: { autoRetry: (options.maxRetries ?? 4) > 0, maxRetries: options.maxRetries ?? 4 },
  });
}

// ------------------------------------------------------------------------------------------------
// Vertex AI (v1, gRPC). Regional endpoint `${region}-aiplatform.googleapis.com`; AVATAR_VERTEX_ENDPOINT
// = host:port points every client at a local fake instead (insecure channel, no credentials), and
// AVATAR_VERTEX_DEDICATED_ENDPOINT = host:port the predictions of dedicated endpoints.

export type AiplatformModule = typeof import("@google-cloud/aiplatform");
type V1 = AiplatformModule["v1"];
export type JobServiceClient = InstanceType<V1["JobServiceClient"]>;
export type ModelServiceClient = InstanceType<V1["ModelServiceClient"]>;
export type EndpointServiceClient = InstanceType<V1["EndpointServiceClient"]>;
export type PredictionServiceClient = InstanceType<V1["PredictionServiceClient"]>;

export interface VertexClientOptions {
  region: string;
  env: Readonly<Record<string, string | undefined>>;
  /** A dry run without credentials: stand-ins that read nothing and record what they skipped. */
  offline?: Unchecked;
}

/** An emulator address from the environment: insecure channel options, or a CONFIG error. */
async function emulatorOptions(variable: string, value: string, universeDomain: string): Promise<Record<string, unknown>> {
  const match = /^(?:\[([0-9A-Fa-f:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value.trim());
  if (!match || Number(match[3]) > 65535) {
    const { AvatarError } = await import("../../core/errors.ts");
    throw new AvatarError("CONFIG", `${variable} "${value}" is not host:port.`, { hint: `e.g. ${variable}=127.0.0.1:8085, or unset it to use Vertex AI.` });
  }
  // gax's own grpc-js: another copy fails its `instanceof ChannelCredentials` check.
  const { grpc } = await import("google-gax");
  return { apiEndpoint: match[1] ?? match[2], port: Number(match[3]), sslCreds: grpc.credentials.createInsecure(), universeDomain };
}

/** Constructor options of every Vertex client (exported for tests). */
export async function vertexClientOptions(options: VertexClientOptions): Promise<Record<string, unknown>> {
  const universeDomain = options.env.GOOGLE_CLOUD_UNIVERSE_DOMAIN || "googleapis.com";
  const emulator = options.env.AVATAR_VERTEX_ENDPOINT;
  if (emulator) return emulatorOptions("AVATAR_VERTEX_ENDPOINT", emulator, universeDomain);
  // universeDomain given: the client does not probe the GCE metadata server for it (slow, warns off GCP).
  return { apiEndpoint: `${options.region}-aiplatform.googleapis.com`, universeDomain };
}

/**
 * Options of the PredictionServiceClient for a dedicated endpoint: its DNS name (port 443), which
 * answers only its own endpoint's predictions. AVATAR_VERTEX_DEDICATED_ENDPOINT = host:port sends
 * them to a local fake instead, with the DNS name kept as the call's authority (what the fake checks).
 */
export async function dedicatedPredictionOptions(host: string, options: VertexClientOptions): Promise<Record<string, unknown>> {
  const universeDomain = options.env.GOOGLE_CLOUD_UNIVERSE_DOMAIN || "googleapis.com";
  const emulator = options.env.AVATAR_VERTEX_DEDICATED_ENDPOINT;
  if (emulator) return { ...(await emulatorOptions("AVATAR_VERTEX_DEDICATED_ENDPOINT", emulator, universeDomain)), "grpc.default_authority": host };
  if (options.env.AVATAR_VERTEX_ENDPOINT) {
    const { AvatarError } = await import("../../core/errors.ts");
    throw new AvatarError("CONFIG", `AVATAR_VERTEX_ENDPOINT points the CLI at a local Vertex fake, but this endpoint is dedicated: its predictions go to ${host}.`, {
      hint: "Set AVATAR_VERTEX_DEDICATED_ENDPOINT=host:port as well (`npm run fakes` prints it), or deploy with --shared-endpoint.",
    });
  }
  return { apiEndpoint: host, universeDomain };
}

/** The four Vertex clients, each created on first use and closed together. */
export class VertexClients {
  readonly #options: VertexClientOptions;
  #module: Promise<AiplatformModule> | undefined;
  #clientOptions: Promise<Record<string, unknown>> | undefined;
  readonly #made = new Map<string, Promise<{ close(): Promise<void> }>>();

  constructor(options: VertexClientOptions) {
    this.#options = options;
  }

  module(): Promise<AiplatformModule> {
    this.#module ??= import("@google-cloud/aiplatform");
    return this.#module;
  }

  /** `dedicatedHost`: a PredictionServiceClient of its own for a dedicated endpoint's DNS name. */
  async #client<T extends { close(): Promise<void> }>(kind: "JobServiceClient" | "ModelServiceClient" | "EndpointServiceClient" | "PredictionServiceClient", dedicatedHost?: string): Promise<T> {
    const key = dedicatedHost ? `${kind}@${dedicatedHost}` : kind;
    let made = this.#made.get(key);
    if (!made) {
      const offline = this.#options.offline;
      made = (async () => {
        if (offline) return offlineClient(kind, offline) as T;
        const { v1 } = await this.module();
        this.#clientOptions ??= vertexClientOptions(this.#options);
        const Client = v1[kind] as unknown as new (options: Record<string, unknown>) => T;
        return new Client(dedicatedHost ? await dedicatedPredictionOptions(dedicatedHost, this.#options) : await this.#clientOptions);
      })();
      this.#made.set(key, made);
    }
    return (await made) as T;
  }

  jobs = () => this.#client<JobServiceClient>("JobServiceClient");
  models = () => this.#client<ModelServiceClient>("ModelServiceClient");
  endpoints = () => this.#client<EndpointServiceClient>("EndpointServiceClient");
  /** Shared endpoints predict through the regional host; a dedicated one only through its own DNS name. */
  prediction = (dedicatedHost?: string) => this.#client<PredictionServiceClient>("PredictionServiceClient", dedicatedHost);

  async close(): Promise<void> {
    const made = [...this.#made.values()];
    this.#made.clear();
    await Promise.all(made.map(async (m) => (await m.catch(() => undefined))?.close().catch(() => undefined)));
  }
}
