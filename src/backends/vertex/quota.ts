// One read of the project's Vertex AI quotas from the Cloud Quotas API (REST with undici, the
// Application Default Credentials the other clients use). There is no Cloud Quotas client among our
// dependencies, and one paged GET does not need one. AVATAR_QUOTA_ENDPOINT (a base URL) points it at
// a local fake instead: then no credentials are asked for, like AVATAR_VERTEX_ENDPOINT.
// What the answer means is decided in core/quota-checks.ts (facts and sources there).
import { AvatarError } from "../../core/errors.ts";
import { QUOTA_SERVICE, type QuotaInfoLike } from "../../core/quota-checks.ts";

const SCOPE = "https://www.googleapis.com/auth/cloud-platform";
/** Vertex AI has a few hundred quotas: a handful of pages; more means something is off. */
const MAX_PAGES = 20;
const TIMEOUT_MS = 20_000;

export interface QuotaReadOptions {
  project: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Metrics without the service prefix, e.g. custom_model_training_nvidia_l4_gpus. */
  metrics: readonly string[];
  signal?: AbortSignal;
}

interface GoogleErrorBody {
  error?: { code?: number; message?: string; status?: string; details?: { reason?: string }[] };
}

async function authHeaders(env: QuotaReadOptions["env"]): Promise<Record<string, string>> {
  if (env.AVATAR_QUOTA_ENDPOINT) return {};
  const { GoogleAuth } = await import("google-gax");
  // getRequestHeaders, not only a token: it also carries x-goog-user-project when the ADC file
  // names a quota project (user credentials need one for some APIs).
  const headers = await new GoogleAuth({ scopes: [SCOPE] }).getRequestHeaders();
  return Object.fromEntries(headers.entries());
}

function refusal(status: number, body: GoogleErrorBody, project: string): AvatarError {
  const message = body.error?.message?.split("\n")[0] ?? `HTTP ${status}`;
  const disabled = body.error?.details?.some((d) => d.reason === "SERVICE_DISABLED") || /has not been used|is disabled/i.test(message);
  if (disabled) return new AvatarError("PERMISSION", `The Cloud Quotas API is not enabled: ${message}`, { hint: `gcloud services enable cloudquotas.googleapis.com --project ${project}` });
  if (status === 401) return new AvatarError("AUTH", `Not authenticated for the Cloud Quotas API: ${message}`, { hint: "Run `gcloud auth application-default login`." });
  if (status === 403) return new AvatarError("PERMISSION", `Reading quotas was refused: ${message}`, { hint: "Reading quotas needs cloudquotas.quotas.get (roles/cloudquotas.viewer, or Owner/Viewer of the project)." });
  return new AvatarError("REMOTE_FAILED", `The Cloud Quotas API answered ${status}: ${message}`, { hint: "Try again later; the quota page of the Cloud Console shows the same values." });
}

/** The QuotaInfos of the wanted metrics, by metric (without the service prefix). */
export async function readVertexQuotas(options: QuotaReadOptions): Promise<Map<string, QuotaInfoLike[]>> {
  const { request } = await import("undici");
  const base = (options.env.AVATAR_QUOTA_ENDPOINT || "https://cloudquotas.googleapis.com").replace(/\/+$/, "");
  const parent = `projects/${encodeURIComponent(options.project)}/locations/global/services/${QUOTA_SERVICE}`;
  const wanted = new Set(options.metrics.map((m) => `${QUOTA_SERVICE}/${m}`));
  const found = new Map<string, QuotaInfoLike[]>();
  let headers: Record<string, string>;
  try {
    headers = await authHeaders(options.env);
  } catch (error) {
    throw new AvatarError("AUTH", `No usable Google credentials for the Cloud Quotas API: ${(error as Error).message.split("\n")[0]}`, {
      cause: error,
      hint: "Run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS).",
    });
  }
  let pageToken = "";
  for (let page = 0; page < MAX_PAGES; page++) {
    const url = `${base}/v1/${parent}/quotaInfos?pageSize=500${pageToken ? `&pageToken=${encodeURIComponent(pageToken)}` : ""}`;
    const signal = options.signal ? AbortSignal.any([options.signal, AbortSignal.timeout(TIMEOUT_MS)]) : AbortSignal.timeout(TIMEOUT_MS);
    let status: number;
    let body: { quotaInfos?: QuotaInfoLike[]; nextPageToken?: string } & GoogleErrorBody;
    try {
      const response = await request(url, { headers: { ...headers, accept: "application/json" }, signal });
      status = response.statusCode;
      body = (await response.body.json().catch(() => ({}))) as typeof body;
    } catch (error) {
      if (options.signal?.aborted) throw new AvatarError("INTERRUPTED", "Interrupted while reading quotas.");
      throw new AvatarError("UNAVAILABLE", `The Cloud Quotas API did not answer: ${(error as Error).message}`, { cause: error, hint: "Check the network (and AVATAR_QUOTA_ENDPOINT if you use a fake)." });
    }
    if (status !== 200) throw refusal(status, body, options.project);
    for (const info of body.quotaInfos ?? []) {
      if (!info.metric || !wanted.has(info.metric)) continue;
      const metric = info.metric.slice(QUOTA_SERVICE.length + 1);
      found.set(metric, [...(found.get(metric) ?? []), info]);
    }
    pageToken = body.nextPageToken ?? "";
    if (!pageToken) break;
  }
  return found;
}
