// The one place libpg-query (the newest grammar line) is imported: with the WebAssembly tier-up
// turned off before it compiles (see wasm-tiering.ts). Import libpg-query only from here, and the
// older lines only after this module (parser.ts).
import "./wasm-tiering.ts";

export { fingerprintSync, loadModule, normalizeSync, parseSync } from "libpg-query";
