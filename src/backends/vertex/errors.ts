// Google errors (gRPC codes and HTTP statuses) → AvatarError with a hint that says what to do.
import { AvatarError, type ErrorCode } from "../../core/errors.ts";
import * as vertexNames from "../../core/vertex-names.ts";

interface GoogleLikeError {
  code?: number | string;
  message?: string;
  details?: string;
}

const grpcToHttp: Record<number, number> = { 3: 400, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 14: 503, 16: 401 };

function classify(status: number): { code: ErrorCode; hint: string } {
  switch (status) {
    case 400:
      return { code: "BAD_INPUT", hint: "The request was rejected as invalid; check names, regions and flags." };
    case 401:
      return { code: "AUTH", hint: "Run `gcloud auth application-default login`, or check GOOGLE_APPLICATION_CREDENTIALS." };
    case 403:
      return { code: "PERMISSION", hint: "Your account lacks a permission (e.g. roles/aiplatform.user, roles/storage.admin) or the API is not enabled." };
    case 404:
      return { code: "NOT_FOUND", hint: "Check the project, region and name; `avatar list` shows what exists." };
    case 409:
      return { code: "ALREADY_EXISTS", hint: "It already exists; pick another name or reuse it." };
    case 429:
      return { code: "QUOTA", hint: "Quota or capacity exhausted: request more GPU quota, try another region that has the GPU, or use --spot." };
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
  const quota = metric ?? (context.kind ? gpuQuotaName(context.kind, gpu) : `custom_model_training_nvidia_${gpu}_gpus / custom_model_serving_nvidia_${gpu}_gpus`);
  const region = context.region ?? "your region";
  const other = L4_REGIONS.find((r) => r !== context.region) ?? "us-east4";
  const page = context.project ? `https://console.cloud.google.com/iam-admin/quotas?project=${context.project}` : "the Quotas page of the Cloud Console";
  return `Quota ${quota} is exhausted in ${region}: request more on ${page} (filter "${quota}"), or use a region that has L4 GPUs, e.g. --region ${other}${context.kind === "training" ? ", or --spot (Spot VMs have their own quota)" : ""}.`;
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
