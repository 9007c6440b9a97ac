// The commander program: global flags, one subcommand per CommandSpec, help with examples.
import { Command, InvalidArgumentError, Option } from "commander";
import type { CommandInput, CommandSpec, OptionSpec } from "./commands/spec.ts";

export const globalOptions: readonly OptionSpec[] = [
  { flags: "--backend <backend>", description: "where to run: local (default) or vertex", choices: ["local", "vertex"] },
  { flags: "--project <id>", description: "Google Cloud project id" },
  { flags: "--region <region>", description: "Google Cloud region, e.g. us-central1" },
  { flags: "--bucket <name>", description: "Cloud Storage bucket for datasets and models" },
  { flags: "--config <path>", description: "path to avatar.config.json (default: searched upward from here)" },
  { flags: "--json", description: "print one JSON envelope on stdout; implies --no-input" },
  { flags: "--no-input", description: "never prompt; fail with the flag to pass instead" },
  { flags: "-y, --yes", description: "answer yes to confirmations" },
  { flags: "--dry-run", description: "print the requests that would change remote state, change nothing" },
  { flags: "-v, --verbose", description: "more detail, and stack traces for unexpected errors" },
  { flags: "-q, --quiet", description: "only results and errors" },
];

function parseNumber(kind: "int" | "float", flag: string) {
  return (value: string) => {
    const parsed = Number(value);
    if (value.trim() === "" || !Number.isFinite(parsed) || (kind === "int" && !Number.isInteger(parsed))) {
      throw new InvalidArgumentError(`${flag} needs ${kind === "int" ? "a whole number" : "a number"}, got "${value}".`);
    }
    return parsed;
  };
}

function toOption(spec: OptionSpec): Option {
  const option = new Option(spec.flags, spec.description);
  if (spec.choices) option.choices(spec.choices);
  if (spec.default !== undefined) option.default(spec.default);
  if (spec.number) option.argParser(parseNumber(spec.number, option.long ?? spec.flags));
  return option;
}

export type Runner = (spec: CommandSpec, input: CommandInput, globals: Record<string, unknown>) => Promise<void>;

export interface ProgramOutput {
  writeOut(text: string): void;
  writeErr(text: string): void;
}

export function buildProgram(version: string, commands: readonly CommandSpec[], runner: Runner, output: ProgramOutput): Command {
  const program = new Command("avatar")
    // Before any subcommand exists: commander copies these settings into each one it creates.
    .exitOverride()
    .configureOutput({ writeOut: output.writeOut, writeErr: output.writeErr, outputError: (text, write) => write(text) })
    .description("Turn a folder of selfies into a personal image model inside your own Google Cloud project.")
    .version(version, "-V, --version", "print the version")
    .showSuggestionAfterError(true)
    .showHelpAfterError("(run `avatar --help` for usage)")
    .configureHelp({ sortSubcommands: false })
    .addHelpText("after", "\nStart with `avatar demo` (no cloud needed), or `avatar init` for Google Cloud.");
  for (const option of globalOptions) program.addOption(toOption(option));

  for (const spec of commands) {
    const command = program.command(spec.name).summary(spec.summary).description(spec.description ?? spec.summary);
    for (const arg of spec.args ?? []) {
      const label = `${arg.name}${arg.variadic ? "..." : ""}`;
      command.argument(arg.required ? `<${label}>` : `[${label}]`, arg.description);
    }
    for (const option of spec.options ?? []) command.addOption(toOption(option));
    command.addHelpText("after", `\nExamples:\n${spec.examples.map((e) => `  $ ${e}`).join("\n")}\n`);
    command.action(async (...received: unknown[]) => {
      const self = received[received.length - 1] as Command;
      const args = (received.slice(0, spec.args?.length ?? 0) as (string | string[] | undefined)[])
        .flat()
        .filter((a): a is string => a !== undefined);
      await runner(spec, { args, options: self.opts() }, self.optsWithGlobals());
    });
  }
  return program;
}
