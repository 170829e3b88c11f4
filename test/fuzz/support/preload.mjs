// Loaded with `node --import` before the Jazzer.js CLI (test/fuzz/run.ts starts it):
//  1. TypeScript: Node strips types itself when it evaluates a .ts module, after the loader hooks
//     have run, so Jazzer.js's ESM instrumentation hook would see format "module-typescript" and
//     skip every file of ours. This hook (registered first, so it runs after Jazzer.js's in the
//     LIFO chain) hands it stripped JavaScript with format "module" instead.
//  2. The fuzzer addon: where the prebuilt one in @jazzer.js/fuzzer does not load (it needs a
//     newer glibc and libstdc++ than Debian 12 has), require it from the local build
//     (test/fuzz/native/build.sh) instead.

import { existsSync } from "node:fs";
import { createRequire, register, registerHooks } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

register(new URL("./strip-types-loader.mjs", import.meta.url));

const require = createRequire(import.meta.url);
const prebuilt = require.resolve(
  `@jazzer.js/fuzzer/prebuilds/fuzzer-${process.platform}-${process.arch}.node`,
);
const local = fileURLToPath(new URL("../native/build/Release/jazzer_fuzzer.node", import.meta.url));

function prebuiltLoads() {
  try {
    process.dlopen({ exports: {} }, prebuilt);
    return true;
  } catch {
    return false;
  }
}

if (!prebuiltLoads()) {
  if (!existsSync(local)) {
    console.error(
      "The prebuilt Jazzer.js fuzzer addon does not load on this system and no local build exists: run bash test/fuzz/native/build.sh",
    );
    process.exit(2);
  }
  const prebuiltUrl = pathToFileURL(prebuilt).href;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (specifier === prebuilt || specifier === prebuiltUrl)
        return { url: pathToFileURL(local).href, format: "addon", shortCircuit: true };
      return nextResolve(specifier, context);
    },
  });
}
