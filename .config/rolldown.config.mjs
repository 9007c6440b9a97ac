// Bundles the CLI into CommonJS under dist/ (`npm run build`; tsc only type-checks). Why: a cold
// `avatar --help` through the ESM loader (a module per file, an ESM facade per builtin) cost ~2.5x a
// bare `node -e 0` here. Now:
//   dist/startup.cjs  everything every invocation runs: the modules src/main.ts imports statically
//                     (commander, commands, config, output), one file so dist/boot.cjs can run
//                     it from one V8 code cache;
//   dist/chunks/*     workflows, backends and the rest, loaded by import() when a command needs them;
//   dist/boot.cjs     the loader bin/avatar.js calls (src/boot.ts);
//   dist/avatar.cjs   the entry, re-exporting startup.cjs (main, run);
//   dist/face-worker.cjs  the face model's worker thread (src/workflows/faces/worker-entry.ts), which
//                     prepare starts by path (worker-model.ts), so it needs a file of its own.
// Packages other than commander stay in node_modules and load only when a command needs them.
import { defineConfig } from "rolldown";

const inlined = new Set(["commander"]);
const packageName = (id) => (id.startsWith("@") ? id.split("/").slice(0, 2).join("/") : id.split("/")[0]);

// commander's builtins, served without the bundler's interop copy: commander takes fs, path and
// process as default imports, and copying every property of each into a namespace object costs
// ~1 ms of every start-up; `process.getBuiltinModule` hands over the module itself. child_process
// is imported only for executable subcommands, which avatar never uses; loading it (and node:net
// behind it) is ~2 ms, so it becomes a proxy that loads the real module on first use.
const commanderBuiltins = new Set(["node:fs", "node:path", "node:process", "node:child_process"]);
const fromCommander = (id, importer) => commanderBuiltins.has(id) && importer?.includes("/node_modules/commander/");
const commanderBuiltinsPlugin = {
  name: "commander-builtins",
  resolveId: (source, importer) => (fromCommander(source, importer) ? `\0commander:${source}` : null),
  load(id) {
    if (!id.startsWith("\0commander:")) return null;
    const builtin = JSON.stringify(id.slice("\0commander:".length));
    return builtin === '"node:child_process"'
      ? `export default new Proxy({}, { get: (_, key) => process.getBuiltinModule(${builtin})[key] });\n`
      : `export default process.getBuiltinModule(${builtin});\n`;
  },
};

// The start-up graph: every module src/main.ts reaches through static imports. Recorded while
// parsing; read when chunks are formed (after every module is parsed).
const staticImports = new Map();
const recordGraph = {
  name: "record-static-imports",
  moduleParsed: (info) => void staticImports.set(info.id, info.importedIds),
};
let startupGraph;
function inStartupGraph(id) {
  if (!startupGraph) {
    startupGraph = new Set();
    const pending = [...staticImports.keys()].filter((key) => key.endsWith("/src/main.ts"));
    while (pending.length) {
      const next = pending.pop();
      if (startupGraph.has(next)) continue;
      startupGraph.add(next);
      pending.push(...(staticImports.get(next) ?? []));
    }
  }
  return startupGraph.has(id);
}

// dist/boot.cjs compiles startup.cjs through node:vm, where import() of a package prints an
// experimental-feature warning: such imports belong in a lazily loaded chunk instead.
const startupImportsNoPackageDynamically = {
  name: "startup-imports-no-package-dynamically",
  generateBundle(_, bundle) {
    const startup = bundle["startup.cjs"];
    const packages = startup?.dynamicImports.filter((target) => !(target in bundle)) ?? [];
    if (packages.length) {
      this.error(`startup.cjs would import() ${packages.join(", ")}; move it to a lazily imported module (see src/ui/terminal-packages.ts).`);
    }
  },
};

export default defineConfig({
  input: { avatar: "src/main.ts", boot: "src/boot.ts", "face-worker": "src/workflows/faces/worker-entry.ts" },
  platform: "node",
  plugins: [commanderBuiltinsPlugin, recordGraph, startupImportsNoPackageDynamically],
  external: (id, importer) => {
    if (id.startsWith(".") || id.startsWith("/") || id.startsWith("\0")) return false;
    if (fromCommander(id, importer)) return false; // served by commanderBuiltinsPlugin
    return !inlined.has(packageName(id));
  },
  output: {
    dir: "dist",
    format: "cjs",
    entryFileNames: "[name].cjs",
    chunkFileNames: (chunk) => (chunk.name === "startup" ? "startup.cjs" : "chunks/[name]-[hash].cjs"),
    codeSplitting: { groups: [{ name: "startup", test: inStartupGraph }] },
    sourcemap: true,
    cleanDir: true,
  },
});
