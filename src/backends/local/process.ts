// Child processes for the local backend: line-by-line output, cancellation, a tail kept for errors.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines of stderr, for error messages. */
  tail: string[];
}

export function runProcess(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"],
      signal: options.signal,
    });
    const tail: string[] = [];
    const follow = (stream: NodeJS.ReadableStream, name: "stdout" | "stderr") =>
      createInterface({ input: stream }).on("line", (line) => {
        if (name === "stderr") {
          tail.push(line);
          if (tail.length > 20) tail.shift();
        }
        options.onLine?.(line, name);
      });
    follow(child.stdout, "stdout");
    follow(child.stderr, "stderr");
    child.on("error", (error) => {
      if ((error as NodeJS.ErrnoException).code === "ABORT_ERR") resolve({ code: null, signal: "SIGTERM", tail });
      else reject(error);
    });
    child.on("close", (code, signal) => resolve({ code, signal, tail }));
  });
}
