// A contact sheet: every generated image in one grid, so a person sees a batch at a glance.
export async function writeContactSheet(images: readonly string[], outFile: string, options: { tile?: number; columns?: number } = {}): Promise<string> {
  const { default: sharp } = await import("sharp");
  const tile = options.tile ?? 256;
  const gap = 8;
  const columns = Math.max(1, Math.min(options.columns ?? 4, images.length));
  const rows = Math.ceil(images.length / columns);
  const tiles = await Promise.all(
    images.map((file) => sharp(file).resize(tile, tile, { fit: "contain", background: "#202020" }).jpeg({ quality: 88 }).toBuffer()),
  );
  await sharp({
    create: { width: columns * tile + (columns + 1) * gap, height: rows * tile + (rows + 1) * gap, channels: 3, background: "#111111" },
  })
    .composite(tiles.map((input, i) => ({ input, left: gap + (i % columns) * (tile + gap), top: gap + Math.floor(i / columns) * (tile + gap) })))
    .jpeg({ quality: 88 })
    .toFile(outFile);
  return outFile;
}
