// A command is data (name, help, options) plus a run function over the injected context.
// Command files import only core and types statically: heavy modules load inside run().
import type { Context } from "../context.ts";
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
