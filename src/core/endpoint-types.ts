// The two kinds of public Vertex endpoint an avatar is served from, and what each lets through.
// Pure: the vertex backend routes and checks predictions with it, dry runs and tests read it.
//
// Sources: Vertex docs "Choose an endpoint type" and "Get online inferences" (research
// 2026-12-refresh.md §7); the v1 protos (Endpoint.dedicated_endpoint_enabled / _dns,
// ClientConnectionConfig.inference_timeout); python-aiplatform's Endpoint.predict.
import { AvatarError } from "./errors.ts";

/**
 * dedicated: its own DNS name, 10 MB payloads, an inference timeout we set (default 600 s, at
 * most 3600 s). shared: `{region}-aiplatform.googleapis.com`, 1.5 MB, 60 s, for projects where
 * dedicated endpoints are not available.
 */
export type EndpointType = "dedicated" | "shared";

export interface EndpointLimits {
  /** Request and response payload, bytes. */
  payloadBytes: number;
  /** Vertex ends an inference after this long. */
  inferenceSeconds: number;
}

/**
 * The inference timeout avatar sets on a dedicated endpoint: room for PNG at 1024 px and several
 * images per request on a T4 (SDXL ~1.4 s per step at 1024 px), well under the 3600 s maximum.
 */
export const DEDICATED_INFERENCE_TIMEOUT_S = 300;

export const ENDPOINT_LIMITS: Readonly<Record<EndpointType, EndpointLimits>> = {
  // "1.5 MB": whether 10^6 or 2^20 bytes is not documented; the stricter reading.
  shared: { payloadBytes: 1_500_000, inferenceSeconds: 60 },
  dedicated: { payloadBytes: 10_000_000, inferenceSeconds: DEDICATED_INFERENCE_TIMEOUT_S },
};

/** The type of an Endpoint resource as Vertex returns it. */
export const endpointTypeOf = (endpoint: { dedicatedEndpointEnabled?: boolean | null }): EndpointType =>
  endpoint.dedicatedEndpointEnabled ? "dedicated" : "shared";

/**
 * Endpoint.dedicatedEndpointDns → a host name. The proto comment shows the form
 * `https://{endpoint_id}.{region}-{uid}.prediction.vertexai.goog`; the Python SDK and Google's
 * samples use the field as a bare host (`https://{dns}/v1/…`). Both are accepted.
 */
export function dedicatedHost(dns: string | null | undefined): string | undefined {
  const host = (dns ?? "").trim().replace(/^https?:\/\//, "").replace(/\/+$/, "");
  return /^[A-Za-z0-9.-]+$/.test(host) ? host : undefined;
}

/** The REST predict URL users can call (curl, other SDKs): dedicated endpoints answer only at their DNS name. */
export function predictUrl(endpointName: string, type: EndpointType, region: string, dns?: string | null): string {
  const host = type === "dedicated" ? (dedicatedHost(dns) ?? "<dedicated DNS name, not assigned yet>") : `${region}-aiplatform.googleapis.com`;
  return `https://${host}/v1/${endpointName}:predict`;
}

/** Why this deploy cannot reuse the avatar's endpoint: an endpoint's type is fixed when it is created. */
export function endpointTypeMismatch(name: string, existing: EndpointType, wanted: EndpointType): AvatarError {
  const hint =
    existing === "shared"
      ? `Pass --shared-endpoint to keep using it, or run \`avatar down ${name}\` first, then \`avatar deploy ${name}\` for a dedicated one.`
      : `Deploy without --shared-endpoint to keep using it, or run \`avatar down ${name}\` first, then \`avatar deploy ${name} --shared-endpoint\`.`;
  return new AvatarError("BAD_INPUT", `${name}'s endpoint is ${existing}, and an endpoint keeps the type it was created with; this deploy asks for a ${wanted} one.`, { hint });
}

// ---------------------------------------------------------------------------------------------
// The response-size estimate, the same as handler.py's (_size_refusal): a shared endpoint's 1.5 MB
// limit cannot be left to the handler, whose limits are fixed at register for dedicated endpoints.

/** Encoded bytes per pixel before base64, for photos (handler.py BYTES_PER_PIXEL). */
const BYTES_PER_PIXEL = { jpeg: 0.45, png: 2.0 } as const;
const BASE64_GROWTH = 4 / 3;
const PREDICTION_OVERHEAD_BYTES = 300;

export function estimatedResponseBytes(images: number, width: number, height: number, format: "jpeg" | "png"): number {
  return images * (width * height * BYTES_PER_PIXEL[format] * BASE64_GROWTH + PREDICTION_OVERHEAD_BYTES);
}

interface PredictBodyLike {
  instances?: unknown;
  parameters?: { num_images?: unknown; width?: unknown; height?: unknown; format?: unknown } | null;
}

/**
 * Why a prediction's response would be over a shared endpoint's limit, or undefined. Without an
 * explicit width and height the size is the model's default (avatar.json), unknown here: Vertex's
 * own refusal of a response that is too big covers that case.
 */
export function sharedResponseProblem(body: unknown): string | undefined {
  const b = (body ?? {}) as PredictBodyLike;
  const p = b.parameters ?? {};
  const width = Number(p.width);
  const height = Number(p.height);
  if (!Number.isFinite(width) || !Number.isFinite(height)) return undefined;
  const format = p.format === "png" ? "png" : "jpeg";
  const images = (Array.isArray(b.instances) ? b.instances.length : 1) * (Number(p.num_images) || 1);
  const bytes = estimatedResponseBytes(images, width, height, format);
  const limit = ENDPOINT_LIMITS.shared.payloadBytes;
  if (bytes <= limit) return undefined;
  return `${images === 1 ? "an image" : `${images} images`} of ${width}x${height} as ${format.toUpperCase()} ${images === 1 ? "comes" : "come"} to about ${(bytes / 1e6).toFixed(1)} MB, over the ${limit / 1e6} MB a shared endpoint returns`;
}
