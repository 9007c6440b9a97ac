// Google errors (gRPC codes and HTTP statuses) → AvatarError with a hint that says what to do.
import type { EndpointType } from "../../core/endpoint-types.ts";
import { AvatarError, type ErrorCode } from "../../core/errors.ts";
import * as vertexNames from "../../core/vertex-names.ts";

interface GoogleLikeError {
  code?: number | string;
  message?: string;
  details?: string;
}

/**
 * The CLI needs only object permissions on the bucket (it never reads bucket metadata outside
 * `init`/`doctor`, which list objects instead): roles/storage.objectAdmin holds storage.objects.*.
 * Creating a bucket (`avatar init`) needs storage.buckets.create: roles/storage.admin.
 */
export const STORAGE_ROLE_HINT =
  "Your account needs roles/storage.objectAdmin on the bucket (and roles/aiplatform.user on the project); creating a bucket needs roles/storage.admin. Check --project and --bucket too.";

const grpcToHttp: Record<number, number> = { 3: 400, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 14: 503, 16: 401 };

function classify(status: number): { code: ErrorCode; hint: string } {
  switch (status) {
    case 400:
      return { code: "BAD_INPUT", hint: "The request was rejected as invalid; check names, regions and flags." };
    case 401:
      return { code: "AUTH", hint: "Run `gcloud auth application-default login`, or check GOOGLE_APPLICATION_CREDENTIALS." };
    case 403:
      return { code: "PERMISSION", hint: STORAGE_ROLE_HINT };
    case 404:
      return { code: "NOT_FOUND", hint: "Check the project, region and name; `avatar list` shows what exists." };
    case 409:
      return { code: "ALREADY_EXISTS", hint: "It already exists; pick another name or reuse it." };
    case 429:
      return { code: "QUOTA", hint: "Quota or rate limit exhausted; wait a minute and try again, or raise the quota on the Quotas page of the Cloud Console." };
    case 503:
      return { code: "UNAVAILABLE", hint: "The service is unreachable right now; check the network and try again." };
    default:
      return { code: "REMOTE_FAILED", hint: "Re-run with --verbose for details." };
  }
}

export function mapGoogleError(error: unknown, doing: string): AvatarError {
  if (error instanceof AvatarError) return error;
  const e = (error ?? {}) as GoogleLikeError;
  const raw = typeof e.code === "number" ? e.code : Number(e.code);
  const status = Number.isFinite(raw) ? (raw < 100 ? (grpcToHttp[raw] ?? 0) : raw) : 0;
  const netCode = typeof e.code === "string" ? e.code : "";
  if (!status && ["ECONNREFUSED", "ENOTFOUND", "ETIMEDOUT", "ECONNRESET", "EAI_AGAIN"].includes(netCode)) {
    return new AvatarError("UNAVAILABLE", `Network error while ${doing}: ${netCode}.`, {
      cause: error,
      hint: "Check the network connection (and AVATAR_GCS_ENDPOINT if you use an emulator).",
    });
  }
  const { code, hint } = classify(status);
  const message = (e.details || e.message || String(error)).split("\n")[0];
  return new AvatarError(code, `Failed while ${doing}: ${message}`, { cause: error, hint });
}

// ------------------------------------------------------------------------------------------------
// Vertex AI (gRPC) errors and failed long-running operations.

export interface VertexErrorContext {
  /** What was being done, for the message: "creating the training job". */
  doing: string;
  /** Which GPU quota applies to a RESOURCE_EXHAUSTED. */
  kind?: "training" | "serving";
  gpu?: "l4" | "t4";
  /** A Spot training job: it draws on the preemptible quota, not the on-demand one. */
  spot?: boolean;
  region?: string;
  project?: string;
}

interface VertexLikeError {
  code?: number | string;
  message?: string;
  details?: string;
  reason?: string;
  domain?: string;
  errorInfoMetadata?: Record<string, string>;
}

const grpcNames: Record<number, string> = {
  1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
  16: "UNAUTHENTICATED",
};

function quotaHint(context: VertexErrorContext, info: VertexLikeError): string {
  const { gpuQuotaName, L4_REGIONS } = vertexNames;
  const gpu = context.gpu ?? "l4";
  const metric = info.errorInfoMetadata?.quota_metric ?? info.errorInfoMetadata?.quota_limit;
  const spot = context.kind === "training" && context.spot === true;
  const named = context.kind ? gpuQuotaName(context.kind, gpu, { spot }) : `${gpuQuotaName("training", gpu)} / ${gpuQuotaName("serving", gpu)}`;
  const quota = metric ?? named;
  const region = context.region ?? "your region";
  const other = L4_REGIONS.find((r) => r !== context.region) ?? "us-east4";
  const page = context.project ? `https://console.cloud.google.com/iam-admin/quotas?project=${context.project}` : "the Quotas page of the Cloud Console";
  // Spot VMs have a quota of their own: a way out of an on-demand quota error, never of a Spot one.
  const spotWay = context.kind === "training" && !spot && !/preemptible/.test(quota) ? ", or --spot (Spot VMs draw on their own preemptible quota)" : "";
  const onDemandWay = spot || /preemptible/.test(quota) ? ", or train without --spot (on-demand has its own quota)" : "";
  return `Quota ${quota} is exhausted in ${region}: request more on ${page} (filter "${quota}"), or use a region that has ${gpu.toUpperCase()} GPUs, e.g. --region ${other}${spotWay}${onDemandWay}.`;
}

/** A Google API error from a Vertex call (gRPC status codes) → an AvatarError with a hint. */
export function mapVertexError(error: unknown, context: VertexErrorContext): AvatarError {
  if (error instanceof AvatarError) return error;
  const e = (error ?? {}) as VertexLikeError;
  const text = (e.details || e.message || String(error)).split("\n")[0]!.replace(/^\d+ [A-Z_]+: /, "");
  if (/Could not load the default credentials|Could not refresh access token|invalid_grant|reauth/i.test(text)) {
    return new AvatarError("AUTH", `No usable Google credentials while ${context.doing}: ${text}`, {
      cause: error,
      hint: "Run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS), then try again.",
    });
  }
  const code = typeof e.code === "number" ? e.code : Number.NaN;
  const message = `Vertex AI refused ${context.doing}: ${text}`;
  const project = context.project ? ` --project ${context.project}` : "";
  switch (code) {
    case 3:
      return new AvatarError("BAD_INPUT", message, { cause: error, hint: "The request was invalid; check the flags (region, GPU, names). `--dry-run` prints the exact request." });
    case 4:
      return new AvatarError("UNAVAILABLE", `Vertex AI did not answer in time while ${context.doing}: ${text}`, { cause: error, hint: "Try again; `avatar status` shows whether it happened anyway." });
    case 5:
      return new AvatarError("NOT_FOUND", `Not found while ${context.doing}: ${text}`, { cause: error, hint: "Check --project and --region; `avatar list` shows what exists." });
    case 6:
      return new AvatarError("ALREADY_EXISTS", `Already exists while ${context.doing}: ${text}`, { cause: error, hint: "Another run may have created it at the same time; run the command again to reuse it." });
    case 7: {
      const disabled = e.reason === "SERVICE_DISABLED" || /has not been used|is disabled/i.test(text);
      return new AvatarError("PERMISSION", `Permission denied while ${context.doing}: ${text}`, {
        cause: error,
        hint: disabled
          ? `Enable the API: gcloud services enable aiplatform.googleapis.com${project}`
          : "Your account needs roles/aiplatform.user on the project (and roles/storage.objectAdmin on the bucket); check --project too.",
      });
    }
    case 8:
      return new AvatarError("QUOTA", `Quota or capacity exhausted while ${context.doing}: ${text}`, { cause: error, hint: quotaHint(context, e) });
    case 9:
      return new AvatarError("REMOTE_FAILED", `Vertex AI cannot do that now (${context.doing}): ${text}`, { cause: error, hint: "The resource is not in a state that allows it; `avatar status <name>` shows its state." });
    case 14:
      return new AvatarError("UNAVAILABLE", `Vertex AI is unreachable while ${context.doing}: ${text}`, {
        cause: error,
        hint: "Check the network connection and try again (and AVATAR_VERTEX_ENDPOINT if you use a local fake).",
      });
    case 16:
      return new AvatarError("AUTH", `Not authenticated while ${context.doing}: ${text}`, { cause: error, hint: "Run `gcloud auth application-default login`, or check GOOGLE_APPLICATION_CREDENTIALS." });
    default: {
      const name = grpcNames[code];
      return new AvatarError("REMOTE_FAILED", `Vertex AI failed while ${context.doing}: ${name ? `${name}: ` : ""}${text}`, { cause: error, hint: "Re-run with --verbose for details." });
    }
  }
}

/** A long-running operation that ended with an error (google.rpc.Status) → an AvatarError. */
export function mapOperationError(status: { code?: number | null; message?: string | null } | null | undefined, context: VertexErrorContext): AvatarError {
  const code = Number(status?.code ?? 2);
  const text = status?.message || "no message";
  if (code === 8) return new AvatarError("QUOTA", `Quota or capacity exhausted while ${context.doing}: ${text}`, { hint: quotaHint(context, {}) });
  if (code === 7 || code === 16) return mapVertexError({ code, details: text }, context);
  return new AvatarError("REMOTE_FAILED", `Vertex AI failed while ${context.doing}: ${text}`, {
    hint: context.kind === "serving" ? "Check the serving logs (`avatar logs <name> --serving`) and the model's handler with `avatar serve --check <model-dir>`." : "Re-run with --verbose for details.",
  });
}

// ------------------------------------------------------------------------------------------------
// predict: what the serving container said, as real Vertex passes it on.

/** The `{"error": "…"}` text a container put in its 400 body, when the message carries one. */
export function containerErrorText(text: string): string {
  const start = text.indexOf("{");
  if (start >= 0) {
    for (let end = text.lastIndexOf("}"); end > start; end = text.lastIndexOf("}", end - 1)) {
      try {
        const body = JSON.parse(text.slice(start, end + 1)) as { error?: unknown };
        if (typeof body.error === "string") return body.error;
        break;
      } catch {
        // not this closing brace
      }
    }
  }
  return text;
}

export interface PredictErrorContext extends VertexErrorContext {
  name: string;
  /** How long the call ran before it failed. */
  elapsedMs: number;
  /** The endpoint's own inference limit (60 s on a shared public endpoint). */
  limitSeconds: number;
  /** Shared (1.5 MB, 60 s) or dedicated (10 MB, the timeout avatar sets); default shared. */
  endpointType?: EndpointType;
}

/** What to do when a response is over the endpoint's payload limit. */
export function responseSizeHint(name: string, endpointType: EndpointType | undefined): string {
  const smaller = "Ask for --format jpeg (about a quarter of the size of PNG) or a smaller --width/--height";
  return endpointType === "dedicated"
    ? `${smaller}.`
    : `${smaller}; or serve from a dedicated endpoint (10 MB): \`avatar down ${name}\`, then \`avatar deploy ${name}\` without --shared-endpoint.`;
}

/**
 * A failed predict. Real Vertex answers a container's HTTP 400 (our handler's ValueError) and its
 * own 1.5 MB request limit with FAILED_PRECONDITION (9), not INVALID_ARGUMENT; only a message about
 * a missing deployed model means the avatar is not deployed. A response over the endpoint's limit
 * comes back as INVALID_ARGUMENT (3) "… Response size too large. Received at least n bytes …"
 * (python-aiplatform #190). A shared endpoint cuts inference at 60 s and answers UNAVAILABLE (14):
 * that is not a network problem. A dedicated endpoint asked through the shared host answers
 * FAILED_PRECONDITION "This endpoint is a dedicated endpoint … dedicated dns name '…'".
 */
export function mapPredictError(error: unknown, context: PredictErrorContext): AvatarError {
  if (error instanceof AvatarError) return error;
  const e = (error ?? {}) as VertexLikeError;
  const code = typeof e.code === "number" ? e.code : Number.NaN;
  const text = (e.details || e.message || String(error)).replace(/^\d+ [A-Z_]+: /, "");
  const { name } = context;
  const notDeployed = /no deployed model|not have any deployed model|has no deployed models?|is not deployed|no model (is )?deployed/i;
  if (code === 5 || ((code === 9 || code === 3) && notDeployed.test(text))) {
    return new AvatarError("NOT_FOUND", `${name} is not deployed: ${text}`, { cause: error, hint: `Run \`avatar deploy ${name}\` first.` });
  }
  if ((code === 9 || code === 3) && /response size too large/i.test(text)) {
    const limit = context.endpointType === "dedicated" ? "10 MB" : "1.5 MB";
    return new AvatarError("BAD_INPUT", `The images are larger than the ${context.endpointType ?? "shared"} endpoint returns (${limit}): ${text}`, { cause: error, hint: responseSizeHint(name, context.endpointType) });
  }
  if ((code === 9 || code === 3) && /dedicated endpoint|dedicated dns/i.test(text)) {
    return new AvatarError("REMOTE_FAILED", `${name}'s endpoint is dedicated and answers only at its own DNS name: ${text}`, {
      cause: error,
      hint: "The endpoint changed while this ran, or AVATAR_VERTEX_ENDPOINT sends predictions elsewhere; run the command again (`avatar status` shows the endpoint).",
    });
  }
  if ((code === 9 || code === 3) && /request size|payload size|exceeds? .*(MB|bytes)/i.test(text)) {
    return new AvatarError("BAD_INPUT", `The request is larger than the endpoint accepts: ${text}`, {
      cause: error,
      hint: "Send fewer instances or images per request (`avatar generate` splits its work; --num-images lower).",
    });
  }
  if (code === 9 || code === 3) {
    return new AvatarError("BAD_INPUT", `The model rejected the request: ${containerErrorText(text)}`, {
      cause: error,
      hint: "Check the generate options (steps 1-100, sizes 256-1536 in multiples of 8, …).",
    });
  }
  const overLimit = context.elapsedMs >= (context.limitSeconds - 5) * 1000 || /timed? ?out|timeout|took too long|deadline/i.test(text);
  if ((code === 14 || code === 4) && overLimit) {
    return new AvatarError("UNAVAILABLE", `The image took longer than the endpoint's ${context.limitSeconds} s limit: ${text}`, {
      cause: error,
      hint: "Use fewer steps (--steps), a smaller size (--width/--height), fewer images per request, or an L4 (--gpu l4).",
    });
  }
  return mapVertexError(error, context);
}
