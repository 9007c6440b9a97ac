// `npm run bench` on a fresh clone: the runner installs what the benchmarks need (fake-gcs-server,
// the Python environment) through the same helpers as the test command, before running any.
// The real runner and helpers run in a copy of their folder layout, with a stand-in `go` (records
// its arguments, "builds" the binary) and a stand-in bin/avatar.js (records the doctor call).
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot, spawnEnv, tempDir } from "../support/cli.ts";

const FAKE_GO = `#!/bin/sh
mkdir -p "$GOBIN" && echo "$@" >> "$GOBIN/../go-calls"
printf '#!/bin/sh\\n' > "$GOBIN/fake-gcs-server" && chmod +x "$GOBIN/fake-gcs-server"
`;
const FAKE_CLI = `require("node:fs").appendFileSync(require("node:path").join(__dirname, "..", "cli-calls"), process.argv.slice(2).join(" ") + " venv=" + process.env.AVATAR_VENV + "\\n");\n`;
const PROBE = `console.log(JSON.stringify({ gcs: process.env.AVATAR_FAKE_GCS, venv: process.env.AVATAR_VENV }));\n`;

function sandbox(): string {
  const root = tempDir("avatar-bench-");
  for (const dir of ["test/bench", "test/support", "bin", "fake-path"]) mkdirSync(join(root, dir), { recursive: true });
  for (const file of ["test/bench/run.mjs", "test/support/tools.mjs", "test/support/python-env.mjs"]) copyFileSync(join(repoRoot, file), join(root, file));
  writeFileSync(join(root, "test/bench/probe.mjs"), PROBE);
  writeFileSync(join(root, "bin/avatar.js"), FAKE_CLI);
  writeFileSync(join(root, "package.json"), "{}"); // bin/avatar.js stand-in runs as CommonJS
  writeFileSync(join(root, "fake-path/go"), FAKE_GO);
  chmodSync(join(root, "fake-path/go"), 0o755);
  return root;
}

describe("npm run bench", () => {
  it("builds fake-gcs-server and sets up Python before the benchmarks, once", () => {
    const root = sandbox();
    const env = spawnEnv({ PATH: `${join(root, "fake-path")}:${process.env.PATH}`, HOME: root, AVATAR_VENV: join(root, "venv") });
    const run = () => spawnSync(process.execPath, [join(root, "test/bench/run.mjs"), "probe"], { cwd: root, env, encoding: "utf8" });

    const first = run();
    expect(first.status, first.stderr).toBe(0);
    const binary = join(root, ".tools", "bin", "fake-gcs-server");
    expect(readFileSync(join(root, ".tools", "go-calls"), "utf8")).toBe("install github.com/fsouza/fake-gcs-server@v1.55.1\n");
    expect(readFileSync(join(root, "cli-calls"), "utf8")).toBe(`doctor --setup-python --quiet --no-input venv=${join(root, "venv")}\n`);
    const probe = JSON.parse(first.stdout.split("\n").find((l) => l.startsWith("{"))!);
    expect(probe).toEqual({ gcs: binary, venv: join(root, "venv") }); // what the benchmarks are handed

    const second = run();
    expect(second.status, second.stderr).toBe(0);
    expect(readFileSync(join(root, ".tools", "go-calls"), "utf8").split("\n").filter(Boolean)).toHaveLength(1); // built once
    expect(existsSync(binary)).toBe(true);
  });
});
