// vitest global setup: command tests run the built CLI, so type-check and bundle once per run.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const run = (script: string, args: string[], stdout: "inherit" | "ignore") =>
    execFileSync(process.execPath, [`${root}node_modules/${script}`, ...args], { cwd: root, stdio: ["ignore", stdout, "inherit"] });
  run("typescript/bin/tsc", ["-p", "tsconfig.json"], "inherit"); // tsc reports type errors on stdout
  run("rolldown/bin/cli.mjs", ["-c", ".config/rolldown.config.mjs"], "ignore"); // a line per chunk
}
