#!/usr/bin/env node
// The `kubectl-airlock` executable: on PATH it makes `kubectl airlock ...` work (kubectl runs
// plugins named kubectl-<name>). Sources are TypeScript run by Node's type stripping (Node >= 24);
// an older Node re-runs the command under the cached Node 24.
import { enableCompileCache, ensureNode24 } from "./node24.js";

ensureNode24("kubectl-airlock", import.meta.url);
enableCompileCache();
const { main } = await import("../cli/src/commands/kubectl-airlock.ts");
process.exitCode = await main(process.argv.slice(2));
