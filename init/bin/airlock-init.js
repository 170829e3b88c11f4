#!/usr/bin/env node
// Entry point of the `airlock-init` command (the egress-capture init container). Sources are
// TypeScript run by Node's built-in type stripping, which needs Node.js >= 24.
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(`airlock-init needs Node.js 24 or newer (this is ${process.version}).\n`);
  process.exit(1);
}
const { main } = await import("../src/main.ts");
process.exitCode = await main(process.argv.slice(2));
