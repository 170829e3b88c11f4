#!/usr/bin/env node
// The `kubectl-airlock` executable: on PATH it makes `kubectl airlock ...` work (kubectl runs
// plugins named kubectl-<name>). Sources are TypeScript run by Node's type stripping (Node >= 24).
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(
    `kubectl-airlock needs Node.js 24 or newer (this is ${process.version}); put Node 24 on your PATH.\n`,
  );
  process.exit(1);
}
const { main } = await import("../cli/src/commands/kubectl-airlock.ts");
process.exitCode = await main(process.argv.slice(2));
