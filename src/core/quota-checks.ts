// The Vertex quotas a project needs, read from the Cloud Quotas API (cloudquotas.googleapis.com v1),
// as doctor checks. Pure: the vertex backend fetches the QuotaInfo objects, this decides.
//
// Facts this rests on (December 2026):
// - GET https://cloudquotas.googleapis.com/v1/{parent=projects/*/locations/*/services/*}/quotaInfos,
//   pageSize/pageToken, answer {quotaInfos: [QuotaInfo], nextPageToken}; location is always "global";
//   needs cloudquotas.quotas.get (docs.cloud.google.com/docs/quotas/reference/rest/v1/projects.locations.services.quotaInfos/list).
// - QuotaInfo has metric ("aiplatform.googleapis.com/…"), quotaId, dimensions (["region"]) and
//   dimensionsInfos ordered from the most specific to the least, each {dimensions: {region: …},
//   details: {value}, applicableLocations: [regions]}; an info with empty dimensions holds the
//   default for the regions it lists (REST reference "QuotaInfo" and the example answer on
//   docs.cloud.google.com/docs/quotas/view-ongoing-rollouts). value is int64: a string in JSON, and
//   left out when 0 (proto3 JSON).
// - gcloud reads Vertex serving quotas this same way (lib/googlecloudsdk/command_lib/ai/
//   model_garden_utils.py, _GetQuotaLimit): QuotaInfo CustomModelServing{L4,T4}GPUsPerProjectPerRegion
//   of aiplatform.googleapis.com, the dimensions info whose applicableLocations is the region,
//   `details.value or 0`; its metric map pairs them with custom_model_serving_nvidia_{l4,t4}_gpus.
// - Metrics: aiplatform.googleapis.com/custom_model_training_nvidia_{l4,t4}_gpus,
//   …_training_preemptible_nvidia_…_gpus (Spot), custom_model_serving_nvidia_…_gpus
//   (research/vertex-real-behaviour.md; the same names in GoogleCloudPlatform's Model Garden notebook
//   utilities), and custom_model_training_cpus for N1/E2 machines (quota errors quoted in public
//   projects). The training quota ids are not published anywhere found, so the list is matched by
//   metric, the documented part, not by quota id.
// - The console link form with service and metric filters is the one Vertex's own docs use
//   ("Go to Quotas" on the multimodal-embeddings page).
import type { Gpu } from "./config.ts";
import { SMOKE_MACHINE, SMOKE_MACHINE_CPUS } from "./smoke-spec.ts";
import type { SmokeCheck } from "./smoke-checks.ts";
import { gpuQuotaName } from "./vertex-names.ts";

export const QUOTA_SERVICE = "aiplatform.googleapis.com";

export interface QuotaNeed {
  /** Check name, e.g. quota-training-l4. */
  check: string;
  /** Metric without the service prefix, e.g. custom_model_training_nvidia_l4_gpus. */
  metric: string;
  need: number;
  /** What the quota is for, in words. */
  purpose: string;
  /** How bad too little of it is: Spot is optional, the rest blocks a command. */
  short: "fail" | "warn";
}

export function quotaNeeds(gpu: Gpu): QuotaNeed[] {
  const card = gpu.toUpperCase();
  return [
    { check: `quota-training-${gpu}`, metric: gpuQuotaName("training", gpu), need: 1, purpose: `training on one ${card}`, short: "fail" },
    { check: `quota-training-spot-${gpu}`, metric: gpuQuotaName("training", gpu, { spot: true }), need: 1, purpose: `training with --spot on one ${card}`, short: "warn" },
    { check: `quota-serving-${gpu}`, metric: gpuQuotaName("serving", gpu), need: 1, purpose: `serving on one ${card} (avatar deploy)`, short: "fail" },
    { check: "quota-training-cpus", metric: "custom_model_training_cpus", need: SMOKE_MACHINE_CPUS, purpose: `the smoke job's ${SMOKE_MACHINE}`, short: "fail" },
  ];
}

export interface DimensionsInfoLike {
  dimensions?: Record<string, string> | null;
  details?: { value?: string | number | null } | null;
  applicableLocations?: string[] | null;
}

export interface QuotaInfoLike {
  name?: string;
  quotaId?: string;
  metric?: string;
  dimensions?: string[] | null;
  dimensionsInfos?: DimensionsInfoLike[] | null;
}

/** The value of one dimensions info: absent means 0 (proto3 JSON); negative means unlimited. */
function valueOf(info: DimensionsInfoLike): number {
  const n = Number(info.details?.value ?? 0);
  if (!Number.isFinite(n)) return 0;
  return n < 0 ? Number.POSITIVE_INFINITY : n;
}

/**
 * The limit in `region`: per QuotaInfo, the first (most specific) dimensions info that names the
 * region or lists it among its locations; over several QuotaInfos of one metric, the smallest (each
 * is enforced). undefined when no info covers the region.
 */
export function quotaLimitIn(infos: readonly QuotaInfoLike[], region: string): number | undefined {
  let limit: number | undefined;
  for (const info of infos) {
    const applies = (info.dimensionsInfos ?? []).find((d) => {
      const named = d.dimensions?.region;
      if (named !== undefined) return named === region;
      const where = d.applicableLocations ?? [];
      return where.length === 0 || where.includes(region) || where.includes("global");
    });
    if (applies) limit = Math.min(limit ?? Number.POSITIVE_INFINITY, valueOf(applies));
  }
  return limit;
}

export function quotaConsoleLink(project: string, metric: string): string {
  return `https://console.cloud.google.com/iam-admin/quotas?project=${encodeURIComponent(project)}&service=${QUOTA_SERVICE}&metric=${encodeURIComponent(`${QUOTA_SERVICE}/${metric}`)}`;
}

/** One check per need, from the QuotaInfos found for its metric (key: metric without the service). */
export function quotaChecks(needs: readonly QuotaNeed[], found: ReadonlyMap<string, QuotaInfoLike[]>, project: string, region: string): SmokeCheck[] {
  return needs.map((need) => {
    const infos = found.get(need.metric) ?? [];
    const limit = infos.length ? quotaLimitIn(infos, region) : undefined;
    if (limit === undefined) {
      return {
        name: need.check,
        status: "warn",
        message: `${need.metric}: ${infos.length ? `no value for ${region}` : "not listed"} by the Cloud Quotas API`,
        hint: `Look it up on ${quotaConsoleLink(project, need.metric)}`,
      };
    }
    const shown = limit === Number.POSITIVE_INFINITY ? "unlimited" : String(limit);
    if (limit >= need.need) return { name: need.check, status: "ok", message: `${need.metric} = ${shown} in ${region} (${need.purpose} needs ${need.need})` };
    return {
      name: need.check,
      status: need.short,
      message: `${need.metric} = ${shown} in ${region}: ${need.purpose} needs ${need.need}`,
      hint: `Request at least ${need.need} for ${region} on ${quotaConsoleLink(project, need.metric)} (often granted within minutes to days), or use a region where the project has it.`,
    };
  });
}
