import { defineCommand } from "./spec.ts";
import { configKeys, explainSource } from "../core/config.ts";
import { table } from "../ui/format.ts";

export const configCommand = defineCommand({
  name: "config",
  summary: "Show the resolved config and where each value came from",
  examples: ["avatar config", "avatar config --json --backend vertex"],
  async run(ctx) {
    const values = Object.fromEntries(
      configKeys.map((key) => [key, { value: ctx.config.values[key] ?? null, source: explainSource(ctx.config, key) }]),
    );
    return {
      data: { file: ctx.config.file ?? null, values },
      human: table(configKeys.map((key) => [key, String(ctx.config.values[key] ?? "-"), ctx.out.style.dim(explainSource(ctx.config, key))])),
    };
  },
});
