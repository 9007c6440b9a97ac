#!/usr/bin/env node
// Gate on the Node version before anything else loads: the Google clients need Node >= 22.12.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(`avatar needs Node.js 22.12 or newer; this is ${process.version}.\nhint: install Node 22 LTS or newer (https://nodejs.org), or run it through npx in this repo.\n`);
  process.exit(2);
}
// The bundle is CommonJS (see .config/rolldown.config.mjs); boot runs it from a V8 code cache.
const require = process.getBuiltinModule("node:module").createRequire(import.meta.url);
let loader;
try {
  loader = require("../dist/boot.cjs");
} catch (error) {
  if (error?.code !== "MODULE_NOT_FOUND") throw error;
  process.stderr.write("error: this checkout of avatar is not built yet.\nhint: run `npm ci` (it builds) or `npm run build`.\n");
  process.exit(1);
}
await loader.boot(process.argv.slice(2));
