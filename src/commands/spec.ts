// A command is data (name, help, options) plus a run function over the injected context.
// Command files import only core and types statically: heavy modules load inside run().
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import type { CommandResult } from "../ui/output.ts";

export interface ArgSpec {
  name: string;
  description: string;
  required?: boolean;
  /** Takes the rest of the arguments (last argument only). */
  variadic?: boolean;
}

export interface OptionSpec {
  /** commander flags, e.g. "--steps <n>" or "-n, --name <name>". */
  flags: string;
  description: string;
  default?: string | boolean;
  choices?: readonly string[];
  /** Parse the value as a number (validated: a non-number is exit 2). */
  number?: "int" | "float";
}

export interface CommandInput {
  args: string[];
  options: Readonly<Record<string, unknown>>;
}

export interface CommandSpec {
  name: string;
  summary: string;
  description?: string;
  args?: readonly ArgSpec[];
  options?: readonly OptionSpec[];
  examples: readonly string[];
  run(ctx: Context, input: CommandInput): Promise<CommandResult>;
}

export function defineCommand(spec: CommandSpec): CommandSpec {
  return spec;
}

/** For v1 commands whose issue has not landed yet: a clear exit 2 instead of a stub that pretends. */
export function notAvailableYet(name: string, summary: string, examples: readonly string[], args?: readonly ArgSpec[]): CommandSpec {
  return defineCommand({
    name,
    summary,
    args: args?.map((a) => ({ ...a, required: false })),
    examples,
    async run() {
      throw new AvatarError("NOT_AVAILABLE", `avatar ${name} is not available yet in this version.`, {
        hint: "Run `avatar --help` to see what works today.",
      });
    },
  });
}
