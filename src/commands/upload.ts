import { defineCommand } from "./spec.ts";
import { faceInput, prepareInput, prepareOptions, prepareReport, shellArg } from "./prepare.ts";
import { formatBytes } from "../ui/format.ts";
import { usageError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

export const uploadCommand = defineCommand({
  name: "upload",
  summary: "Prepare a folder and upload it as a dataset",
  description:
    "Prepares the photos like `avatar prepare`, zips the normalised JPEGs and stores the zip as <root>/<name>/datasets/<sha256>.zip in the bucket (vertex) or the local store. The name is the hash of the normalised photos: uploading the same photos again sends nothing. With --dry-run, prepares and reports the URI without uploading.",
  args: [{ name: "dir", description: "folder of photos", required: true }],
  options: [
    { flags: "-n, --name <name>", description: "avatar name (lowercase letters, digits, dashes)" },
    ...prepareOptions,
    { flags: "--store <dir>", description: "local backend: where datasets and models are kept" },
  ],
  examples: [
    "avatar upload ./selfies --name alice",
    "avatar upload ./selfies --name alice --backend vertex --bucket my-proj-avatar --json",
    "avatar upload ./selfies --name alice --dry-run",
  ],
  async run(ctx, { args, options }) {
    if (typeof options.name !== "string" || options.name === "") {
      throw usageError("avatar upload needs --name.", "Pass the avatar's name, e.g. --name alice.");
    }
    const name = validateAvatarName(options.name);
    const { uploadDataset } = await import("../workflows/upload.ts");
    const input = prepareInput(args, options);
    const faces = await faceInput(ctx, typeof options.base === "string" ? options.base : undefined);
    const result = await uploadDataset(ctx, { ...input, ...faces, name, dryRun: ctx.flags.dryRun });
    const human = prepareReport(result.prepare);
    human.push("");
    switch (result.status) {
      case "uploaded":
        human.push(`Uploaded ${result.uri} (${formatBytes(result.bytes)}, ${result.images} photos)`);
        break;
      case "exists":
        human.push(`Already uploaded: ${result.uri} (nothing uploaded)`);
        break;
      case "dry-run":
        human.push(
          `Dry run: would upload ${result.uri} (${formatBytes(result.bytes)}, ${result.images} photos)${result.exists ? "; it already exists, so nothing would be sent" : ""}`,
        );
        break;
    }
    human.push(`dataset ${result.uri}`);
    human.push(`sha256  ${result.sha256}`);
    return {
      data: result,
      human,
      next:
        result.status === "dry-run"
          ? `avatar upload ${shellArg(input.dir)} --name ${name}`
          : `avatar train ${shellArg(input.dir)} --name ${name}`,
    };
  },
});
