// First use of the local backend: the Python environment is set up once and announced once.
// A stand-in python (AVATAR_PYTHON) plays `python -m venv`, `pip install uv` and `uv pip install`,
// so the real set-up code runs in a second; the demo then stops at the selfies it cannot draw.
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli, tempDir } from "../support/cli.ts";

const FAKE_PYTHON = `#!/bin/sh
case "$1" in
  -c) echo 3.11.9 ;;
  -m) case "$2" in
        venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
        pip) printf '#!/bin/sh\\nexit 0\\n' > "$(dirname "$0")/uv" && chmod +x "$(dirname "$0")/uv" ;;
        *) echo "stand-in python: no module $2" >&2; exit 1 ;;
      esac ;;
  *) exit 1 ;;
esac
`;

describe("the local backend's first use", () => {
  it("says 'Python environment ready' once in the demo", async () => {
    const home = tempDir("avatar-pyenv-");
    const python = join(home, "python3.11");
    writeFileSync(python, FAKE_PYTHON);
    chmodSync(python, 0o755);
    const venv = join(home, "venv");
    const { code, stderr } = await runCli(["demo", "--no-input"], { env: cleanEnv(home, { AVATAR_PYTHON: python, AVATAR_VENV: venv, CI: "1" }), cwd: home });
    expect(existsSync(join(venv, ".avatar-env.json"))).toBe(true); // the environment was set up, by the real code
    expect(stderr).toMatch(/First use of the local backend/);
    expect(stderr.match(/Python environment ready/g), stderr).toHaveLength(1);
    expect(code).toBe(1); // the stand-in cannot draw the synthetic selfies (Python): the demo stops there
    expect(stderr).toMatch(/Drawing the demo's synthetic selfies failed/);
  });
});
