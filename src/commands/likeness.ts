import { defineCommand } from "./spec.ts";
import { table } from "../ui/format.ts";

export const likenessCommand = defineCommand({
  name: "likeness",
  summary: "Score how much images look like an avatar's person (face identity), against its training photos or a folder",
  description:
    "Finds the largest face in each image and compares its identity embedding with the faces of the reference photos: the avatar's newest dataset in the store (the photos it was trained on), or a folder of photos when the first argument is a folder. Prints one line per image: its likeness (cosine of face-identity embeddings: about 0.93 and above reads as the same person, 0.90 and below as someone else; see the README) and whether a face was found. Runs on this machine; nothing is uploaded.",
  args: [
    { name: "source", description: "avatar name, or a folder of the person's photos", required: true },
    { name: "images", description: "image files to score", required: true, variadic: true },
  ],
  examples: ["avatar likeness alice avatars/alice/20261201-101500/*.jpg", "avatar likeness ./selfies photo.jpg other.jpg --json"],
  async run(ctx, { args }) {
    const [source, ...images] = args as [string, ...string[]];
    const { likenessOfImages } = await import("../workflows/likeness.ts");
    const result = await likenessOfImages(ctx, { source, images });
    const rows = result.images.map((i) => [i.likeness === null ? "–" : i.likeness.toFixed(2), i.face ? (i.faces > 1 ? `face (largest of ${i.faces})` : "face") : "no face", i.file.split(/[\\/]/).at(-1)!]);
    const from = result.source.kind === "avatar" ? `${result.source.name}'s training photos (${result.source.uri})` : result.source.uri;
    return {
      data: result,
      human: [`Likeness to ${result.source.faces} face${result.source.faces === 1 ? "" : "s"} in ${result.source.photos} photo${result.source.photos === 1 ? "" : "s"}: ${from}`, ...table([["likeness", "face", "image"], ...rows])],
    };
  },
});
