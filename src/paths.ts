// Locations inside the installed package. This module runs from src/ under vitest and from dist/
// or dist/chunks/ once bundled, so the root is found, not assumed: the nearest package.json above.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`avatar is installed without its package.json (looked above ${from})`);
  }
}

export const packageRoot = findPackageRoot(import.meta.dirname);
export const handlersDir = join(packageRoot, "handlers");
export const trainerDir = join(packageRoot, "templates", "trainer");
export const venvRequirements = join(packageRoot, "templates", "venv", "requirements.txt");
