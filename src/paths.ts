// Locations inside the installed package (works from src/ under vitest and from dist/ when built).
import { fileURLToPath } from "node:url";
import { join } from "node:path";

export const packageRoot = fileURLToPath(new URL("..", import.meta.url));
export const handlersDir = join(packageRoot, "handlers");
export const trainerDir = join(packageRoot, "templates", "trainer");
export const venvRequirements = join(packageRoot, "templates", "venv", "requirements.txt");
