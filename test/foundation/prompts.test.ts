// The prompt module against a scripted terminal: a PassThrough that claims to be a TTY.
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { AvatarError, ExitCode } from "../../src/core/errors.ts";
import { createPrompts } from "../../src/ui/prompts.ts";
import type { Streams } from "../../src/ui/streams.ts";

function terminal() {
  const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => stdin });
  const stderr = Object.assign(new PassThrough(), { isTTY: true, columns: 80 });
  let shown = "";
  stderr.on("data", (chunk) => (shown += chunk));
  const streams = { stdin, stdout: new PassThrough(), stderr } as unknown as Streams;
  return { stdin, streams, shown: () => shown };
}

describe("prompts", () => {
  it("takes an answer typed at the terminal", async () => {
    const { stdin, streams, shown } = terminal();
    const prompts = createPrompts({ streams, interactive: true, yes: false });
    const answer = prompts.text({ message: "Project id?", flag: "--project" });
    setTimeout(() => stdin.write("my-proj\r"), 50);
    await expect(answer).resolves.toBe("my-proj");
    expect(shown()).toContain("Project id?");
  });

  it("Ctrl-C in a prompt is an interrupt (exit 130), not an unexpected error", async () => {
    const { stdin, streams } = terminal();
    const prompts = createPrompts({ streams, interactive: true, yes: false });
    const answer = prompts.select({ message: "Where?", flag: "--backend", choices: [{ value: "local", name: "local" }] });
    setTimeout(() => stdin.write("\x03"), 50);
    const error = await answer.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AvatarError);
    expect((error as AvatarError).exitCode).toBe(ExitCode.interrupted);
  });

  it("without a terminal, a missing value names the flag to pass", async () => {
    const { streams } = terminal();
    const prompts = createPrompts({ streams, interactive: false, yes: false });
    const error = await prompts.text({ message: "Project id?", flag: "--project" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AvatarError);
    expect((error as AvatarError).exitCode).toBe(ExitCode.usage);
    expect((error as AvatarError).hint).toContain("--project");
  });
});
