#!/usr/bin/env node
// The image's `airlock-injector` entry point: the admission webhook and policy controller
// (injector/src/main.ts). Sources are TypeScript run by Node's type stripping (Node.js >= 24).
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(`airlock-injector needs Node.js 24 or newer (this is ${process.version}).\n`);
  process.exit(1);
}
const { enableCompileCache } = await import("./node24.js");
enableCompileCache();
const { main } = await import("../injector/src/main.ts");
process.exitCode = await main(process.argv.slice(2));
