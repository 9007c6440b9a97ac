// generate --batch: the prompt file rules.
import { describe, expect, it } from "vitest";
import { MAX_BATCH_PROMPTS, parsePromptFile } from "../../src/core/packs.ts";

describe("parsePromptFile", () => {
  it("takes one prompt per line, trimmed, skipping blank lines and # comments (LF or CRLF)", () => {
    expect(parsePromptFile("p.txt", "# studio set\r\n{avatar} in a suit \r\n\r\n  # not this\nan oil painting of {avatar}\n")).toEqual([
      "{avatar} in a suit",
      "an oil painting of {avatar}",
    ]);
  });

  it("refuses a file without prompts, a binary file and an oversized batch, naming the file", () => {
    const refusal = (text: string) => {
      try {
        parsePromptFile("p.txt", text);
      } catch (error) {
        return error as { code: string; exitCode: number; message: string };
      }
      throw new Error("accepted");
    };
    expect(refusal("# only a comment\n\n")).toMatchObject({ code: "BAD_INPUT", exitCode: 2, message: "p.txt has no prompts." });
    expect(refusal("\u0000\u0001PNG")).toMatchObject({ exitCode: 2, message: "p.txt is not a text file." });
    expect(refusal(Array.from({ length: MAX_BATCH_PROMPTS + 1 }, (_, i) => `prompt ${i}`).join("\n")).message).toMatch(/has 501 prompts; at most 500/);
    expect(parsePromptFile("p.txt", Array.from({ length: MAX_BATCH_PROMPTS }, (_, i) => `prompt ${i}`).join("\n"))).toHaveLength(MAX_BATCH_PROMPTS);
  });
});
