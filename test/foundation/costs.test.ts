// The rates table and the estimates built from it (pure), the cost confirmation's three paths,
// alias rules, and the README's "one avatar + 40 images" arithmetic.
import { describe, expect, it } from "vitest";
import { validateAlias } from "../../src/core/alias.ts";
import {
  batchEstimate, billingText, deployEstimate, endpointBilling, estimateLine, formatHours, formatUsd, trainingEstimate,
} from "../../src/core/costs.ts";
import { AvatarError, ExitCode } from "../../src/core/errors.ts";
import { PRICES_AS_OF, PRICING_URL, rates, usdPerHour } from "../../src/core/rates.ts";
import { SMOKE_APPROX_USD_PER_HOUR } from "../../src/core/smoke-spec.ts";
import type { Context } from "../../src/context.ts";
import { billingNow, confirmCost, trainingCost } from "../../src/workflows/costs.ts";

describe("rates", () => {
  it("derive each machine's hourly price from the recorded list prices", () => {
    // g2-standard-8 = 8 vCPU + 32 GiB + 1 L4 at Compute Engine's us-central1 prices, × Vertex's 1.15.
    expect(rates.l4.onDemand).toBeCloseTo((8 * 0.024988 + 32 * 0.002927 + 0.56004) * 1.15, 6);
    expect(rates.l4.onDemand).toBeCloseTo(0.9816, 4);
    expect(rates.l4.spot).toBeCloseTo(0.3917, 4);
    // n1-standard-8 = 2 × Vertex's n1-standard-4, plus Vertex's T4.
    expect(rates.t4.onDemand).toBeCloseTo(2 * 0.21849885 + 0.4025, 6);
    for (const r of Object.values(rates)) expect(r.spot).toBeLessThanOrEqual(r.onDemand);
    expect(rates.t4.spot / rates.t4.onDemand).toBeCloseTo(rates.l4.spot / rates.l4.onDemand, 6);
    expect(usdPerHour("l4", true)).toBe(rates.l4.spot);
    expect(SMOKE_APPROX_USD_PER_HOUR).toBeCloseTo(0.154, 3);
    expect(PRICES_AS_OF).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(PRICING_URL).toBe("https://cloud.google.com/vertex-ai/pricing");
  });
});

describe("estimates", () => {
  it("training: start-up plus steps × seconds per step, matching the README's job times", () => {
    const l4 = trainingEstimate({ gpu: "l4", pipeline: "sdxl", steps: 1000, spot: false });
    expect(l4.hours).toEqual({ low: 0.75, high: 1.5 }); // README: 45–90 min
    expect(l4.usd.low).toBeCloseTo(0.75 * rates.l4.onDemand, 3);
    const t4 = trainingEstimate({ gpu: "t4", pipeline: "sd15", steps: 800, spot: false });
    expect(t4.hours.low * 60).toBeCloseTo(15, 1); // README: 15–25 min
    expect(t4.hours.high * 60).toBeCloseTo(25, 1);
    const spot = trainingEstimate({ gpu: "l4", pipeline: "sdxl", steps: 1000, spot: true });
    expect(spot.usd.high).toBeLessThan(l4.usd.high / 2);
    // A base that is no preset counts as SDXL, the slower.
    expect(trainingEstimate({ gpu: "t4", steps: 800, spot: false }).pipeline).toBe("sdxl");
    expect(estimateLine(spot, "alice")).toBe(
      `Training alice on g2-standard-8 + 1× NVIDIA L4, Spot: ≈ 45–90 min, ≈ $0.29–0.59 (estimate: 1000 steps at 2.4–4.8 s/step + 5–10 min start-up; list prices of ${PRICES_AS_OF}, ${PRICING_URL})`,
    );
    expect(estimateLine(trainingEstimate({ gpu: "t4", pipeline: "sdxl", steps: 1000, spot: false }), "a")).toMatch(/≈ 2\.2–4\.3 h/);
  });

  it("deploy: per hour and per day from when it serves, ready in 15–25 min", () => {
    const e = deployEstimate({ gpu: "t4" });
    expect(e).toMatchObject({ kind: "deploy", spot: false, machineType: "n1-standard-8", readyInMinutes: { low: 15, high: 25 } });
    expect(e.usdPerDay).toBeCloseTo(rates.t4.onDemand * 24, 2);
    expect(estimateLine(e, "bob")).toMatch(/^Serving bob on n1-standard-8 \+ 1× NVIDIA T4, on-demand: ready in ≈ 15–25 min, then ≈ \$0\.84\/h \(≈ \$20\.15\/day\) until `avatar down bob`/);
  });

  it("batch: start-up plus images × seconds per image, scaled by steps and size", () => {
    const e = batchEstimate({ gpu: "l4", pipeline: "sdxl", images: 40 });
    expect(e.hours.low).toBeCloseTo(5 / 60 + (40 * 8) / 3600, 3);
    expect(e.hours.high).toBeCloseTo(15 / 60 + (40 * 15) / 3600, 3);
    expect(e.usd.high).toBeCloseTo(e.hours.high * rates.l4.onDemand, 2);
    expect(batchEstimate({ gpu: "l4", pipeline: "sdxl", images: 40, steps: 15 }).secondsPerImage).toEqual({ low: 4, high: 7.5 });
    expect(batchEstimate({ gpu: "l4", pipeline: "sdxl", images: 1, width: 512, height: 512 }).secondsPerImage).toEqual({ low: 2, high: 3.75 });
    expect(batchEstimate({ gpu: "l4", pipeline: "sdxl", images: 40, spot: true }).usdPerHour).toBeCloseTo(rates.l4.spot, 4);
    expect(estimateLine(e, "alice")).toMatch(/^Batch job for alice on g2-standard-8 \+ 1× NVIDIA L4, on-demand: 40 images in ≈ 10–25 min, ≈ \$0\.17–0\.41, no endpoint left running/);
  });

  it("one avatar on a Spot L4 + a 40-image pack as a batch job: the README's arithmetic", () => {
    const train = trainingEstimate({ gpu: "l4", pipeline: "sdxl", steps: 1000, spot: true });
    const pack = batchEstimate({ gpu: "l4", pipeline: "sdxl", images: 40 });
    const low = train.usd.low + pack.usd.low;
    const high = train.usd.high + pack.usd.high;
    expect([Number(train.usd.low.toFixed(2)), Number(train.usd.high.toFixed(2))]).toEqual([0.29, 0.59]);
    expect([Number(pack.usd.low.toFixed(2)), Number(pack.usd.high.toFixed(2))]).toEqual([0.17, 0.41]);
    expect([Number(low.toFixed(2)), Number(high.toFixed(2))]).toEqual([0.46, 1.0]);
    // Under $0.50 only at the low end; with the pack on Spot too (batch Spot: v1beta1 only) the range is lower.
    const spotPack = batchEstimate({ gpu: "l4", pipeline: "sdxl", images: 40, spot: true });
    expect(Number((train.usd.low + spotPack.usd.low).toFixed(2))).toBe(0.36);
    expect(Number((train.usd.high + spotPack.usd.high).toFixed(2))).toBe(0.75);
  });
});

describe("billing so far", () => {
  const now = new Date("2026-12-01T12:00:00Z");
  it("hours since the model was deployed × its GPU's hourly rate", () => {
    const b = endpointBilling({ gpu: "l4", deployedAt: "2026-12-01T10:00:00Z" }, now)!;
    expect(b).toMatchObject({ since: "2026-12-01T10:00:00Z", hours: 2 });
    expect(b.usdSoFar).toBeCloseTo(2 * rates.l4.onDemand, 3);
    expect(billingText(b)).toBe("deployed 2h00m ago, ≈ $1.96 so far at list price (≈ $0.98/h)");
    expect(endpointBilling({ deployedAt: "2026-12-01T10:00:00Z" }, now)).toBeUndefined();
    expect(endpointBilling({ gpu: "l4" }, now)).toBeUndefined();
  });

  it("what bills now: serving endpoints and running training jobs (not queued ones)", () => {
    const job = (state: "running" | "queued", spot: boolean) => ({ id: "1", name: "a", runId: "r", state, labels: {}, createdAt: "", modelUri: "", gpu: "l4" as const, spot });
    const endpoint = { id: "e", name: "a", state: "ready" as const, labels: {}, createdAt: "", gpu: "t4", modelVersion: "1" };
    const total = billingNow([{ endpoint, runs: [job("running", true), job("queued", false)] }, { runs: [] }]);
    expect(total).toMatchObject({ endpoints: 1, trainingJobs: 1 });
    expect(total.usdPerHour).toBeCloseTo(rates.t4.onDemand + rates.l4.spot, 4);
    expect(billingNow([{ endpoint: { ...endpoint, modelVersion: undefined }, runs: [] }]).usdPerHour).toBe(0);
  });

  it("formats durations and dollars for people", () => {
    expect([formatHours(0.25), formatHours(2.5), formatHours(50)]).toEqual(["15m", "2h30m", "2d2h"]);
    expect([formatUsd(0.9816), formatUsd(0.004), formatUsd(0), formatUsd(23.56)]).toEqual(["$0.98", "$0.004", "$0.00", "$23.56"]);
  });
});

describe("the cost confirmation", () => {
  const estimate = trainingEstimate({ gpu: "l4", pipeline: "sdxl", steps: 1000, spot: true });
  function context(flags: { yes?: boolean; dryRun?: boolean }, interactive: boolean, answer: boolean) {
    const asked: string[] = [];
    const said: string[] = [];
    const ctx = {
      flags: { yes: false, dryRun: false, ...flags },
      out: { info: (line: string) => said.push(line) },
      prompts: { interactive, confirm: async (q: { message: string }) => (asked.push(q.message), answer) },
    } as unknown as Context;
    return { ctx, asked, said };
  }

  it("a terminal is asked; 'no' starts nothing (exit 2, the hint names --yes)", async () => {
    const { ctx, asked, said } = context({}, true, false);
    const error = await confirmCost(ctx, estimate, "alice", "Train alice").catch((e: unknown) => e);
    expect(said).toEqual([estimateLine(estimate, "alice")]);
    expect(asked).toEqual(["Train alice (≈ $0.29–0.59)?"]);
    expect(error).toBeInstanceOf(AvatarError);
    expect((error as AvatarError).exitCode).toBe(ExitCode.usage);
    expect((error as AvatarError).hint).toContain("--yes");
    const yes = context({}, true, true);
    await expect(confirmCost(yes.ctx, estimate, "alice", "Train alice")).resolves.toBeUndefined();
  });

  it("a script, --yes and --dry-run proceed without a question (the line is still printed)", async () => {
    for (const [flags, interactive] of [[{}, false], [{ yes: true }, true], [{ dryRun: true }, true]] as const) {
      const { ctx, asked, said } = context(flags, interactive, false);
      await expect(confirmCost(ctx, estimate, "alice", "Train alice")).resolves.toBeUndefined();
      expect(asked).toEqual([]);
      expect(said).toHaveLength(1);
    }
  });

  it("the local backend costs nothing: no estimate, no line, no question", async () => {
    expect(trainingCost({ kind: "local" }, { base: "x/y", gpu: "l4", spot: false })).toBeUndefined();
    expect(trainingCost({ kind: "vertex" }, { base: "stabilityai/stable-diffusion-xl-base-1.0", gpu: "l4", spot: false })?.steps).toBe(1000);
    const { ctx, asked, said } = context({}, true, false);
    await confirmCost(ctx, undefined, "alice", "Train alice");
    expect([asked, said]).toEqual([[], []]);
  });
});

describe("aliases", () => {
  it("take Vertex's format and leave the CLI's run-<id> aliases alone (exit 2 otherwise)", () => {
    expect(validateAlias("prod")).toBe("prod");
    expect(validateAlias("release-2026")).toBe("release-2026");
    for (const bad of ["Prod", "3", "p", "prod-", "-prod", "run-20261122-101500", "a".repeat(129)]) {
      const error = (() => {
        try {
          validateAlias(bad);
        } catch (e) {
          return e;
        }
      })();
      expect(error, bad).toBeInstanceOf(AvatarError);
      expect((error as AvatarError).exitCode).toBe(ExitCode.usage);
    }
  });
});
