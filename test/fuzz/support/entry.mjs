// The Jazzer.js CLI only imports .js/.mjs/.cjs targets: this entry imports the TypeScript target
// named by AIRLOCK_FUZZ_TARGET (a path, test/fuzz/run.ts sets it) and hands on its `fuzz`.
import { pathToFileURL } from "node:url";

const target = process.env.AIRLOCK_FUZZ_TARGET;
if (!target) throw new Error("AIRLOCK_FUZZ_TARGET is not set");
const mod = await import(pathToFileURL(target).href);
export const fuzz = mod.fuzz;
