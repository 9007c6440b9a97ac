// The context every command and workflow receives: resolved config, output, prompts, cancellation.
// Built once per invocation by main; tests build their own with injected streams and env.
import type { ResolvedConfig } from "./core/config.ts";
import type { Output } from "./ui/output.ts";
import type { Prompts } from "./ui/prompts.ts";
import type { Streams } from "./ui/streams.ts";

export interface GlobalFlags {
  json: boolean;
  /** False with --no-input. */
  input: boolean;
  yes: boolean;
  dryRun: boolean;
  verbose: boolean;
  quiet: boolean;
  config?: string;
}

export interface Context {
  readonly config: ResolvedConfig;
  readonly flags: Readonly<GlobalFlags>;
  readonly out: Output;
  readonly prompts: Prompts;
  readonly streams: Streams;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Aborted on Ctrl-C; long waits pass it on. */
  readonly signal: AbortSignal;
  /**
   * Records something that keeps running (and billing) outside this process, so an interrupt can say so.
   * Returns a function that removes the note once the thing is done or stopped.
   */
  keepsRunning(note: string): () => void;
}
