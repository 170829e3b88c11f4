#!/usr/bin/env node
// Entry point of the `airlock` command. Sources are TypeScript run by Node's built-in type
// stripping, which needs Node.js >= 24: say so plainly rather than failing on syntax.
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(
    `airlock needs Node.js 24 or newer (this is ${process.version}).\n` +
      "Run it through npm (`npm start`, `npm test`), which installs Node 24 into ~/.cache/airlock,\n" +
      "or put Node 24 on your PATH.\n",
  );
  process.exit(1);
}
const { main } = await import("../cli/src/main.ts");
process.exitCode = await main(process.argv.slice(2));
