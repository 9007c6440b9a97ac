// The one module family that writes to the terminal. Results go to stdout, everything else to stderr.
// With --json, stdout carries exactly one envelope: {"ok":true,"data":…} or {"ok":false,"error":…}.
import { inspect } from "node:util";
import { AvatarError } from "../core/errors.ts";
import { startProgress, type Progress } from "./progress.ts";
import { startSpinner, type Spinner } from "./spinner.ts";
import { colorEnabled, type Streams } from "./streams.ts";
import { makeStyle, type Style } from "./style.ts";

export interface CommandResult<T = unknown> {
  data: T;
  /** Lines for a person, printed to stdout when not --json. */
  human?: string[];
  /** The command to run next, printed last. */
  next?: string;
}

export interface OutputOptions {
  streams: Streams;
  env: Readonly<Record<string, string | undefined>>;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
}

export class Output {
  readonly style: Style;
  readonly #options: OutputOptions;
  readonly #animate: boolean;

  constructor(options: OutputOptions) {
    this.#options = options;
    const stderr = options.streams.stderr;
    this.style = makeStyle(colorEnabled(stderr, options.env));
    this.#animate = Boolean(stderr.isTTY) && !options.env.CI;
  }

  get json(): boolean {
    return this.#options.json;
  }

  #err(line: string): void {
    this.#options.streams.stderr.write(`${line}\n`);
  }

  info(message: string): void {
    if (!this.#options.quiet) this.#err(message);
  }

  success(message: string): void {
    if (!this.#options.quiet) this.#err(`${this.style.green("✔")} ${message}`);
  }

  warn(message: string): void {
    this.#err(`${this.style.yellow("warning:")} ${message}`);
  }

  /** Shown only with --verbose. */
  detail(message: string): void {
    if (this.#options.verbose) this.#err(this.style.dim(message));
  }

  spinner(text: string): Promise<Spinner> {
    return startSpinner(text, {
      stream: this.#options.streams.stderr,
      style: this.style,
      animate: this.#animate,
      silent: this.#options.quiet,
    });
  }

  progress(label: string, total: number | undefined, unit: "bytes" | "steps" = "bytes"): Progress {
    return startProgress(label, total, {
      stream: this.#options.streams.stderr,
      animate: this.#animate,
      silent: this.#options.quiet,
      unit,
    });
  }

  /** One result line printed as it comes (a followed log). Not with --json: the envelope carries them. */
  line(text: string): void {
    if (!this.#options.json) this.#options.streams.stdout.write(`${text}\n`);
  }

  result(result: CommandResult): void {
    const stdout = this.#options.streams.stdout;
    if (this.#options.json) {
      stdout.write(`${JSON.stringify({ ok: true, data: result.data ?? null })}\n`);
      return;
    }
    for (const line of result.human ?? []) stdout.write(`${line}\n`);
    if (result.next) stdout.write(`\nNext: ${this.style.cyan(result.next)}\n`);
  }

  error(error: unknown): void {
    const known = error instanceof AvatarError;
    const code = known ? error.code : "INTERNAL";
    const message = known ? error.message : `Unexpected error: ${error instanceof Error ? error.message : String(error)}`;
    const hint = known
      ? error.hint
      : this.#options.verbose
        ? undefined
        : "This is a bug in avatar. Re-run with --verbose for the stack trace and report it.";
    if (this.#options.json) {
      const body: Record<string, unknown> = { code, message };
      if (hint) body.hint = hint;
      if (known && error.details) body.details = error.details;
      this.#options.streams.stdout.write(`${JSON.stringify({ ok: false, error: body })}\n`);
    } else {
      this.#err(`${this.style.red("error:")} ${message}`);
      if (hint) this.#err(`${this.style.dim("hint:")} ${hint}`);
    }
    if (this.#options.verbose && (!known || error.cause)) {
      this.#err(this.style.dim(inspect(known ? error.cause : error)));
    }
  }
}
