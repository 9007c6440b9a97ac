// In-process context for workflow tests: real Output over captured streams.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Output } from "../../src/ui/output.ts";
import type { Streams } from "../../src/ui/streams.ts";

export interface TestCtx {
  cwd: string;
  out: Output;
  signal: AbortSignal;
  stderr(): string;
}

export function testCtx(cwd: string, signal: AbortSignal = new AbortController().signal): TestCtx {
  let err = "";
  const streams: Streams = {
    stdin: Readable.from([]),
    stdout: { write: () => true },
    stderr: {
      write: (chunk: string | Uint8Array) => {
        err += String(chunk);
        return true;
      },
    },
  };
  const out = new Output({ streams, env: { NO_COLOR: "1" }, json: false, quiet: false, verbose: false });
  return { cwd, out, signal, stderr: () => err };
}

/** A temp dir for a whole describe block (removed by the returned cleanup). */
export function scratchDir(prefix = "avatar-ds-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
