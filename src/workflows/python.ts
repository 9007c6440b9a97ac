// The local backend's Python environment, created on first use with a spinner (one line per phase in CI).
import type { Context } from "../context.ts";
import { ensurePythonEnv } from "../backends/local/python-env.ts";
import type { Spinner } from "../ui/spinner.ts";

/**
 * The venv's python, set up on first call (later calls share it). `announce: false` when the caller
 * says "ready" itself (the demo's phase line): the set-up spinner then ends without a line of its own.
 */
export function pythonProvider(ctx: Pick<Context, "config" | "env" | "out" | "signal">, options: { announce?: boolean } = {}): () => Promise<string> {
  let ready: Promise<string> | undefined;
  return () => {
    ready ??= (async () => {
      // Phases arrive synchronously while the spinner loads asynchronously: chain them.
      let spinner: Promise<Spinner> | undefined;
      const onPhase = (phase: string) => {
        if (spinner) {
          spinner = spinner.then((s) => (s.update(phase), s));
          return;
        }
        ctx.out.warn("First use of the local backend: setting up its Python environment (about 3 GB; reused afterwards).");
        spinner = ctx.out.spinner(phase);
      };
      try {
        const { python, created } = await ensurePythonEnv({
          dir: ctx.config.values.venv,
          env: ctx.env,
          signal: ctx.signal,
          onPhase,
          onLine: (line) => ctx.out.detail(line),
        });
        if (created) {
          const done = await spinner;
          if (options.announce === false) done?.stop();
          else done?.succeed("Python environment ready");
        }
        return python;
      } catch (error) {
        (await spinner)?.fail("Python environment set-up failed");
        throw error;
      }
    })();
    return ready;
  };
}
