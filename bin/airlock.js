#!/usr/bin/env node
// Entry point of the `airlock` command. Sources are TypeScript run by Node's built-in type
// stripping (Node.js >= 24); an older Node re-runs the command under the cached Node 24.
import { enableCompileCache, ensureNode24 } from "./node24.js";

ensureNode24("airlock", import.meta.url);
enableCompileCache();
const { main } = await import("../cli/src/main.ts");
process.exitCode = await main(process.argv.slice(2));
