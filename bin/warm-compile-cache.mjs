// Fills Node's compile cache with every shipped module (`node bin/warm-compile-cache.mjs DIR`):
// TypeScript sources stripped of their types, and V8 code for them and for node_modules. A process
// whose modules all come from the cache never loads Node's type stripper (a WebAssembly compiler
// that stays resident, ~17 MB). The cache is keyed by Node version, user id and file path, so the
// image runs this as the user and at the paths the sidecar runs with.
import { readdirSync } from "node:fs";
import module from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: node bin/warm-compile-cache.mjs CACHE_DIR\n");
  process.exit(2);
}
const { status, message } = module.enableCompileCache(dir);
if (status === module.constants.compileCacheStatus.FAILED) {
  process.stderr.write(`compile cache: ${message}\n`);
  process.exit(1);
}

/** Shipped TypeScript modules (tests excluded) under the given source folders. */
function sources(folder) {
  return readdirSync(join(root, folder), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".test.ts"))
    .map((e) => join(e.parentPath, e.name));
}

// Maintainer scripts that run when imported; no shipped process loads them.
const SCRIPTS = new Set(["sidecar/src/masking/detectors/catalogue/update.ts"]);
const files = ["sidecar/src", "cli/src", "api/src", "injector/src", "init/src"]
  .flatMap(sources)
  .filter((f) => !SCRIPTS.has(relative(root, f)));
let failed = 0;
for (const file of files) {
  try {
    await import(pathToFileURL(file).href);
  } catch (e) {
    failed++;
    process.stderr.write(`compile cache: ${relative(root, file)}: ${e instanceof Error ? e.message : e}\n`);
  }
}
module.flushCompileCache();
process.stdout.write(`compile cache: ${files.length - failed} of ${files.length} modules in ${dir}\n`);
process.exit(failed ? 1 : 0);
