// The ESM-only terminal packages, imported from here rather than from spinner.ts and prompts.ts:
// those run from dist/startup.cjs, which dist/boot.cjs compiles through node:vm, where import()
// of a package warns that it is experimental. This module is a chunk of its own, loaded by the
// ordinary module loader, so its import() is plain. The build fails if one creeps back in.
export const importOra = () => import("ora");
export const importPrompts = () => import("@inquirer/prompts");
