// Synthetic "selfies" for `avatar demo`: drawn faces on varied backgrounds, different enough that the
// near-duplicate filter keeps them all. Deterministic for a seed.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";

function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

function selfieSvg(seed: number, size: number): string {
  const r = random(seed * 7919 + 17);
  const hue = Math.floor(r() * 360);
  const hue2 = (hue + 90 + Math.floor(r() * 180)) % 360;
  const skin = ["#f1c27d", "#e0ac69", "#c68642", "#8d5524", "#ffdbac"][Math.floor(r() * 5)];
  const cx = size * (0.35 + r() * 0.3);
  const cy = size * (0.4 + r() * 0.2);
  const rx = size * (0.16 + r() * 0.08);
  const ry = rx * (1.2 + r() * 0.2);
  const shapes = Array.from({ length: 6 }, () => {
    const x = r() * size;
    const y = r() * size;
    const s = size * (0.05 + r() * 0.2);
    return `<rect x="${x.toFixed(0)}" y="${y.toFixed(0)}" width="${s.toFixed(0)}" height="${(s * (0.5 + r())).toFixed(0)}" fill="hsl(${Math.floor(r() * 360)},60%,${30 + Math.floor(r() * 50)}%)" opacity="0.8" transform="rotate(${Math.floor(r() * 90)} ${x.toFixed(0)} ${y.toFixed(0)})"/>`;
  }).join("");
  const eye = (dx: number) => `<ellipse cx="${(cx + dx * rx * 0.4).toFixed(1)}" cy="${(cy - ry * 0.15).toFixed(1)}" rx="${(rx * 0.12).toFixed(1)}" ry="${(rx * 0.08).toFixed(1)}" fill="#2b1d0e"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">
<defs><linearGradient id="g" x1="0" y1="0" x2="${r().toFixed(2)}" y2="1"><stop offset="0" stop-color="hsl(${hue},70%,60%)"/><stop offset="1" stop-color="hsl(${hue2},60%,25%)"/></linearGradient></defs>
<rect width="100%" height="100%" fill="url(#g)"/>${shapes}
<ellipse cx="${cx.toFixed(1)}" cy="${(cy + ry * 1.9).toFixed(1)}" rx="${(rx * 1.9).toFixed(1)}" ry="${(ry * 1.1).toFixed(1)}" fill="hsl(${Math.floor(r() * 360)},50%,40%)"/>
<ellipse cx="${cx.toFixed(1)}" cy="${(cy - ry * 0.35).toFixed(1)}" rx="${(rx * 1.1).toFixed(1)}" ry="${(ry * 0.8).toFixed(1)}" fill="hsl(${Math.floor(r() * 40)},40%,${10 + Math.floor(r() * 30)}%)"/>
<ellipse cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" rx="${rx.toFixed(1)}" ry="${ry.toFixed(1)}" fill="${skin}"/>
${eye(-1)}${eye(1)}
<path d="M ${(cx - rx * 0.35).toFixed(1)} ${(cy + ry * 0.4).toFixed(1)} Q ${cx.toFixed(1)} ${(cy + ry * (0.5 + r() * 0.3)).toFixed(1)} ${(cx + rx * 0.35).toFixed(1)} ${(cy + ry * 0.4).toFixed(1)}" stroke="#7a2e2e" stroke-width="${(rx * 0.06).toFixed(1)}" fill="none"/>
</svg>`;
}

/** Writes `count` JPEG selfies of `size` px into dir; returns their paths. */
export async function writeSyntheticSelfies(dir: string, count: number, seed = 1, size = 640): Promise<string[]> {
  const { default: sharp } = await import("sharp");
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const file = join(dir, `selfie-${String(i + 1).padStart(2, "0")}.jpg`);
    await sharp(Buffer.from(selfieSvg(seed + i, size))).jpeg({ quality: 90 }).toFile(file);
    files.push(file);
  }
  return files;
}
