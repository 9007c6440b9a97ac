// Google errors (gRPC codes and HTTP statuses) → AvatarError with a hint that says what to do.
import { AvatarError, type ErrorCode } from "../../core/errors.ts";

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
