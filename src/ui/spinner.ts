// Spinners animate only on a TTY (ora); elsewhere each state change is one static line,
// so CI logs read like a transcript instead of a mess of carriage returns.
import type { OutStream } from "./streams.ts";
import type { Style } from "./style.ts";
import { formatDuration } from "./format.ts";

export interface Spinner {
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
  warn(text?: string): void;
  stop(): void;
}

interface OraLike {
  text: string;
  start(): OraLike;
  succeed(text?: string): OraLike;
  fail(text?: string): OraLike;
  warn(text?: string): OraLike;
  stop(): OraLike;
}

export interface SpinnerOptions {
  stream: OutStream;
  style: Style;
  animate: boolean;
  silent: boolean;
  now?: () => number;
}

export async function startSpinner(text: string, options: SpinnerOptions): Promise<Spinner> {
  const now = options.now ?? Date.now;
  const started = now();
  const timed = (t: string) => `${t} ${options.style.dim(`(${formatDuration(now() - started)})`)}`;
  if (options.silent) {
    return { update() {}, succeed() {}, fail() {}, warn() {}, stop() {} };
  }
  if (options.animate) {
    const { default: ora } = await (await import("./terminal-packages.ts")).importOra();
    const spinner = ora({ text, stream: options.stream as NodeJS.WritableStream }).start() as unknown as OraLike;
    let current = text;
    return {
      update: (t) => {
        current = t;
        spinner.text = t;
      },
      succeed: (t) => void spinner.succeed(timed(t ?? current)),
      fail: (t) => void spinner.fail(t ?? current),
      warn: (t) => void spinner.warn(t ?? current),
      stop: () => void spinner.stop(),
    };
  }
  const write = (line: string) => options.stream.write(`${line}\n`);
  let current = text;
  write(`- ${text}`);
  return {
    update: (t) => {
      if (t !== current) write(`- ${t}`);
      current = t;
    },
    succeed: (t) => write(`${options.style.green("✔")} ${timed(t ?? current)}`),
    fail: (t) => write(`${options.style.red("✖")} ${t ?? current}`),
    warn: (t) => write(`${options.style.yellow("⚠")} ${t ?? current}`),
    stop: () => {},
  };
}
