// Every question avatar asks goes through here. In a non-interactive run (no TTY, CI, --no-input,
// --json) a question with a default takes it; one without fails with exit 2 naming the flag to pass.
import { AvatarError } from "../core/errors.ts";
import type { Streams } from "./streams.ts";

export interface Choice<T extends string> {
  value: T;
  name?: string;
  description?: string;
}

export interface Prompts {
  readonly interactive: boolean;
  text(question: { message: string; flag: string; default?: string; validate?: (value: string) => string | undefined }): Promise<string>;
  select<T extends string>(question: { message: string; flag: string; choices: readonly Choice<T>[]; default?: T }): Promise<T>;
  /** Non-interactive: true with --yes, otherwise an error naming --yes (never a silent "no" to a destructive step). */
  confirm(question: { message: string; default?: boolean }): Promise<boolean>;
}

export interface PromptOptions {
  streams: Streams;
  interactive: boolean;
  yes: boolean;
}

function missing(flag: string, message: string): AvatarError {
  return new AvatarError("USAGE", `Missing a value: ${message.replace(/[?:]\s*$/, "")}.`, {
    hint: `Pass ${flag}, or run in a terminal without --no-input to be asked.`,
  });
}

export function isInteractive(streams: Streams, env: Readonly<Record<string, string | undefined>>, flags: { input: boolean; json: boolean }): boolean {
  return Boolean(streams.stdin.isTTY) && !env.CI && flags.input && !flags.json;
}

/** Ctrl-C inside a prompt reaches inquirer as a key press (raw mode), not as SIGINT: it rejects
 * with ExitPromptError, which is an interrupt (exit 130), not a bug. */
async function asked<T>(prompt: Promise<T>): Promise<T> {
  try {
    return await prompt;
  } catch (error) {
    if (error instanceof Error && error.name === "ExitPromptError") throw new AvatarError("INTERRUPTED", "Interrupted; nothing was changed.");
    throw error;
  }
}

export function createPrompts(options: PromptOptions): Prompts {
  const io = { input: options.streams.stdin, output: options.streams.stderr as NodeJS.WritableStream };
  const load = async () => (await import("./terminal-packages.ts")).importPrompts();
  return {
    interactive: options.interactive,
    async text(question) {
      if (!options.interactive) {
        if (question.default !== undefined) return question.default;
        throw missing(question.flag, question.message);
      }
      const { input } = await load();
      return asked(
        input(
          {
            message: question.message,
            default: question.default,
            validate: (value: string) => question.validate?.(value) ?? true,
          },
          io,
        ),
      );
    },
    async select(question) {
      if (!options.interactive) {
        if (question.default !== undefined) return question.default;
        throw missing(question.flag, question.message);
      }
      const { select } = await load();
      return asked(select({ message: question.message, choices: [...question.choices], default: question.default }, io));
    },
    async confirm(question) {
      if (options.yes) return true;
      if (!options.interactive) {
        throw new AvatarError("USAGE", `Needs confirmation: ${question.message}`, {
          hint: "Pass --yes to confirm in a non-interactive run.",
        });
      }
      const { confirm } = await load();
      return asked(confirm({ message: question.message, default: question.default ?? false }, io));
    },
  };
}
