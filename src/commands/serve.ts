import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";

export const serveCommand = defineCommand({
  name: "serve",
  summary: "Run a model directory locally the way the Vertex serving container does",
  description:
    "Starts handlers/local_server.py (a stand-in for the Hugging Face inference container) on 127.0.0.1 with the model directory, waits until the handler has loaded, prints the URL and an example request, and serves until Ctrl-C. --check sends one prediction and exits: test the handler before a 20-minute deploy.",
  args: [{ name: "model-dir", description: "a run's model/ folder (weights + avatar.json)", required: true }],
  options: [
    { flags: "--port <port>", description: "port on 127.0.0.1 (0: any free port)", default: "8080", number: "int" },
    { flags: "--check", description: "send one prediction, report it and exit" },
    { flags: "--handler <file>", description: "use this handler.py instead of the model's (or the packaged one)" },
    { flags: "--steps <n>", description: "--check: denoising steps", default: "20", number: "int" },
  ],
  examples: ["avatar serve ~/.avatar/store/avatar/alice/runs/20261122-101500/model", "avatar serve ./model --check --json"],
  async run(ctx, { args, options }) {
    const port = Number(options.port);
    if (port < 0 || port > 65535) throw new AvatarError("BAD_INPUT", `--port ${port} is not a port number.`);
    const { stageModelDir, startServer, checkOnce, exampleBody } = await import("../workflows/serve.ts");
    const { pythonProvider } = await import("../workflows/python.ts");
    const staged = await stageModelDir(args[0]!, options.handler as string | undefined);
    const python = await pythonProvider(ctx)();
    const spinner = await ctx.out.spinner("Loading the model (the port opens once the handler is built)");
    let server: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      server = await startServer(ctx, python, staged.dir, options.check ? 0 : port, (line) => ctx.out.detail(line));
      spinner.succeed(`Serving at ${server.url}`);
      if (options.check) {
        const body = { ...exampleBody, parameters: { ...exampleBody.parameters, steps: Number(options.steps) } };
        const result = await checkOnce(server.url, body);
        return {
          data: { url: server.url, check: result, packagedHandler: staged.packagedHandler },
          human: [`Handler OK: one ${result.width}x${result.height} image (${Math.round(result.bytes / 1024)} kB) in ${(result.ms / 1000).toFixed(1)}s, seed ${result.seed}.`],
          next: "avatar deploy <name>",
        };
      }
      const curl = `curl -s -X POST ${server.url}/predict -H 'Content-Type: application/json' -d '${JSON.stringify(exampleBody)}'`;
      ctx.out.info(`Example request:\n  ${curl}\nPress Ctrl-C to stop.`);
      const stopOnAbort = () => void server?.stop();
      ctx.signal.addEventListener("abort", stopOnAbort, { once: true });
      const code = await server.exited;
      ctx.signal.removeEventListener("abort", stopOnAbort);
      if (!ctx.signal.aborted && code !== 0) throw new AvatarError("REMOTE_FAILED", `The model server stopped with exit code ${code}.`);
      return { data: { url: server.url, stopped: true }, human: ["Stopped the local server."] };
    } catch (error) {
      spinner.fail("The model server failed");
      throw error;
    } finally {
      await server?.stop();
      await staged.cleanup();
    }
  },
});
