// What a machine costs per hour on Vertex AI (custom training and prediction, us-central1, USD,
// list prices): the table every cost line, estimate and "so far" figure is computed from.
// Estimates, not quotes. Other regions, committed-use discounts and negotiated prices differ, and
// Spot prices move (up to once a day). Check https://cloud.google.com/vertex-ai/pricing.
//
// Where each number comes from (looked up 2026-12; the newest source read is dated 2026-10-07):
// - Vertex custom training n1-standard-4: $0.21849885/h, transcribed verbatim from
//   cloud.google.com/vertex-ai/pricing on 2026-10-07 (api-evangelist/google-vertex-ai,
//   plans/google-vertex-ai-plans-pricing.yml). n1-standard-8 is twice that (two n1-standard-4s).
// - Vertex training NVIDIA_TESLA_T4: $0.4025/h (public code citing vertex-ai/pricing#training;
//   research/vertex-node.md §4). Both are Compute Engine's price × 1.15 (n1-standard-4 $0.19/h,
//   T4 $0.35/h on Compute Engine): that factor is Vertex's markup, applied below where Vertex's
//   own row was not found.
// - Compute Engine us-central1 for G2 (on-demand / Spot): vCPU $0.024988 / $0.010000, GiB of RAM
//   $0.002927 / $0.001171, NVIDIA L4 $0.560040 / $0.223100 per hour, "verified against Cloud
//   Billing Catalog API on 2026-04-15" (a Google LLC FoldRun cost module in public code).
//   g2-standard-8 (8 vCPU, 32 GiB, 1 L4) is $0.8536/h on Compute Engine, ≈ $0.98/h on Vertex
//   (× 1.15), which matches the L4 anecdote of research/2026-12-refresh.md §7 ("about $0.64/h"
//   for the L4 itself: 0.560040 × 1.15 = 0.644) and an unattributed "vertex_ai_prediction
//   g2-standard-8: 0.98" table in public code.
// - Prediction: Vertex bills deployed and batch prediction nodes per node-hour at the same
//   figures as training for these machines (n1-standard-4 $0.219/h and T4 $0.4025/h in both
//   tables in public code); we use one rate for both. ESTIMATE for g2: the prediction page row
//   itself was not found.
// - Spot on Vertex: Compute Engine's Spot price × 1.15. ESTIMATE: Vertex's Spot rows were not
//   found. T4 Spot: no source found at all; ESTIMATE from the L4 machine's measured Spot /
//   on-demand ratio (0.40), within Google's stated 60–91 % Spot discount.
// - e2-standard-4 (the doctor's CPU smoke job): Compute Engine $0.134/h × 1.15. ESTIMATE.
import type { Gpu } from "./config.ts";

export const PRICING_URL = "https://cloud.google.com/vertex-ai/pricing";
/** The date of the newest price source read (the table itself was assembled 2026-12). */
export const PRICES_AS_OF = "2026-10-07";
export const PRICES_REGION = "us-central1";

/** Vertex's price over Compute Engine's for the same machine (0.21849885 / 0.19, 0.4025 / 0.35). */
export const VERTEX_MARKUP = 1.15;

const computeEngine = {
  g2Cpu: 0.024988, g2CpuSpot: 0.01, g2RamGib: 0.002927, g2RamGibSpot: 0.001171,
  l4: 0.56004, l4Spot: 0.2231, e2Standard4: 0.134,
};
const vertex = { n1Standard4: 0.21849885, t4: 0.4025 };

export interface MachineRate {
  machineType: string;
  accelerator?: "NVIDIA_L4" | "NVIDIA_TESLA_T4";
  /** USD per hour, machine and GPU together. */
  onDemand: number;
  /** USD per hour on Spot VMs (an estimate; Spot prices move). */
  spot: number;
  /** How the figures were found or derived. */
  source: string;
}

const g2Standard8 = (cpu: number, ram: number, gpu: number) => (8 * cpu + 32 * ram + gpu) * VERTEX_MARKUP;
const l4OnDemand = g2Standard8(computeEngine.g2Cpu, computeEngine.g2RamGib, computeEngine.l4);
const l4Spot = g2Standard8(computeEngine.g2CpuSpot, computeEngine.g2RamGibSpot, computeEngine.l4Spot);
const t4OnDemand = 2 * vertex.n1Standard4 + vertex.t4;

export const rates: Readonly<Record<Gpu | "cpu", MachineRate>> = {
  l4: {
    machineType: "g2-standard-8", accelerator: "NVIDIA_L4", onDemand: l4OnDemand, spot: l4Spot,
    source: "Compute Engine us-central1 G2 + L4 SKUs (2026-04-15) × Vertex markup 1.15",
  },
  t4: {
    machineType: "n1-standard-8", accelerator: "NVIDIA_TESLA_T4", onDemand: t4OnDemand, spot: t4OnDemand * (l4Spot / l4OnDemand),
    source: "Vertex n1-standard-4 (2026-10-07) × 2 + Vertex T4; Spot: an estimate at the L4 machine's Spot ratio",
  },
  cpu: {
    machineType: "e2-standard-4", onDemand: computeEngine.e2Standard4 * VERTEX_MARKUP, spot: computeEngine.e2Standard4 * VERTEX_MARKUP,
    source: "Compute Engine e2-standard-4 × Vertex markup 1.15 (an estimate)",
  },
};

/** USD per hour of a machine preset, on Spot or not. */
export function usdPerHour(machine: Gpu | "cpu", spot = false): number {
  return spot ? rates[machine].spot : rates[machine].onDemand;
}
