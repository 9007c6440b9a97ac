// Entry point: load .env, build the program, run one command. The ONE place errors become exit codes.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CommanderError } from "commander";
import { commands } from "./commands/index.ts";
import type { CommandSpec, CommandInput } from "./commands/spec.ts";
import type { Context, GlobalFlags } from "./context.ts";
import { configRules, type ConfigKey } from "./core/config.ts";
import { AvatarError, ExitCode } from "./core/errors.ts";
import { loadConfig, loadDotenv } from "./load-config.ts";
import { packageRoot } from "./paths.ts";
import { buildProgram } from "./program.ts";
import { Output } from "./ui/output.ts";
import { createPrompts, isInteractive } from "./ui/prompts.ts";
import { processStreams, type Streams } from "./ui/streams.ts";

export interface MainDeps {
  streams?: Streams;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  signal?: AbortSignal;
  /** Shared with the SIGINT handler so an interrupt can say what keeps running remotely. */
  remoteNotes?: Set<string>;
}

/** The candidate with the smallest edit distance: a suggestion even for a far-off typo. */
function nearest(word: string, candidates: readonly string[]): string {
  const distance = (a: string, b: string) => {
    let row = Array.from({ length: b.length + 1 }, (_, i) => i);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) {
        next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
      row = next;
    }
    return row[b.length]!;
  };
  return [...candidates].sort((x, y) => distance(word, x) - distance(word, y))[0] ?? "--help";
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

// Config keys reachable as flags: the global ones plus --gpu/--base/--store/--home/--venv on commands that take them.
const flagToKey = Object.fromEntries(
  (Object.entries(configRules) as [ConfigKey, { flag: string }][]).map(([key, rule]) => [
    rule.flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()),
    key,
  ]),
) as Record<string, ConfigKey>;

function globalFlags(globals: Record<string, unknown>): GlobalFlags {
  return {
    json: globals.json === true,
    input: globals.input !== false && globals.json !== true,
    yes: globals.yes === true,
    dryRun: globals.dryRun === true,
    verbose: globals.verbose === true,
    quiet: globals.quiet === true,
    config: typeof globals.config === "string" ? globals.config : undefined,
  };
}

export async function main(argv: string[], deps: MainDeps = {}): Promise<number> {
  const streams = deps.streams ?? processStreams();
  const env = deps.env ?? process.env;
  const cwd = deps.cwd ?? process.cwd();
  const notes = deps.remoteNotes ?? new Set<string>();
  const early = {
    json: argv.includes("--json"),
    verbose: argv.includes("--verbose") || argv.includes("-v"),
  };
  let out = new Output({ streams, env, json: early.json, quiet: false, verbose: early.verbose });

  const runner = async (spec: CommandSpec, input: CommandInput, globals: Record<string, unknown>) => {
    const flags = globalFlags(globals);
    out = new Output({ streams, env, json: flags.json, quiet: flags.quiet, verbose: flags.verbose });
    const configFlags: Partial<Record<ConfigKey, string>> = {};
    for (const [flag, key] of Object.entries(flagToKey)) {
      const value = globals[flag];
      // `train --base` also takes a Hub id or a local directory; only a preset is the config value.
      if (key === "baseModel" && typeof value === "string" && !configRules.baseModel.choices!.includes(value)) continue;
      if (typeof value === "string") configFlags[key] = value;
    }
    // --no-face-check (prepare, upload, train) is a negated boolean: commander sets faceCheck=false.
    if (globals.faceCheck === false) configFlags.faceCheck = "off";
    const dotenv = loadDotenv(cwd, env);
    const config = loadConfig({ cwd, env, dotenv, flags: configFlags, configPath: flags.config });
    const interactive = isInteractive(streams, env, flags);
    const ctx: Context = {
      config,
      flags,
      out,
      prompts: createPrompts({ streams, interactive, yes: flags.yes }),
      streams,
      env,
      cwd,
      signal: deps.signal ?? new AbortController().signal,
      keepsRunning(note) {
        notes.add(note);
        return () => notes.delete(note);
      },
    };
    const result = await spec.run(ctx, input);
    out.result(result);
  };

  const program = buildProgram(packageVersion(), commands, runner, {
    writeOut: (text) => streams.stdout.write(text),
    writeErr: (text) => streams.stderr.write(early.json ? "" : text),
  });

  try {
    await program.parseAsync(argv, { from: "user" });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (["commander.helpDisplayed", "commander.version", "commander.help"].includes(error.code)) return ExitCode.ok;
      // commander already printed its message (with "Did you mean …?" when it finds a close name)
      // unless --json asked for an envelope; a far-off command name still gets the nearest suggestion.
      const suggestion =
        error.code === "commander.unknownCommand" && !error.message.includes("Did you mean")
          ? `Did you mean avatar ${nearest(argv.find((a) => !a.startsWith("-")) ?? "", commands.map((c) => c.name))}?`
          : undefined;
      if (early.json) out.error(new AvatarError("USAGE", error.message.replace(/^error:\s*/, ""), { hint: suggestion }));
      else if (suggestion) streams.stderr.write(`${suggestion}\n`);
      return ExitCode.usage;
    }
    if (deps.signal?.aborted && !(error instanceof AvatarError)) {
      out.error(new AvatarError("INTERRUPTED", "Interrupted."));
      return ExitCode.interrupted;
    }
    out.error(error);
    return error instanceof AvatarError ? error.exitCode : ExitCode.failure;
  }
}

/** Used by bin/avatar.js: wires the real process (signals, exit code). */
export async function run(argv: string[]): Promise<void> {
  // `avatar --help | head`: a reader that stops early is not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(ExitCode.ok);
    throw error;
  });
  // `avatar … 2>&1 | head`: messages nobody reads any more are dropped; the command goes on.
  process.stderr.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE" && error.code !== "ERR_STREAM_DESTROYED") throw error;
  });
  // Library warnings (the auth library's MetadataLookupWarning, the storage client's
  // MaxListenersExceededWarning) say nothing a user can act on: shown only with --verbose.
  const verbose = argv.includes("-v") || argv.includes("--verbose");
  process.removeAllListeners("warning");
  process.on("warning", (warning) => {
    if (verbose) process.stderr.write(`library warning: ${warning.name}: ${warning.message}\n`);
  });
  const controller = new AbortController();
  const remoteNotes = new Set<string>();
  let interrupts = 0;
  process.on("SIGINT", () => {
    interrupts++;
    controller.abort();
    const lines = ["", "Interrupted."];
    for (const note of remoteNotes) lines.push(`Still running: ${note}`);
    if (remoteNotes.size === 0) lines.push("Nothing keeps running remotely.");
    process.stderr.write(`${lines.join("\n")}\n`);
    // Give workflows a moment to clean up local children; a second Ctrl-C exits at once.
    if (interrupts > 1) process.exit(ExitCode.interrupted);
    setTimeout(() => process.exit(ExitCode.interrupted), 1500).unref();
  });
  process.exitCode = await main(argv, { signal: controller.signal, remoteNotes });
}
