import { readFileSync } from "node:fs";
import type { Command } from "../command.ts";

export const command: Command = {
  summary: "print the version",
  async run(argv) {
    if (argv.includes("--help") || argv.includes("-h")) {
      process.stdout.write("Usage: airlock version\n\nPrints Airlock's version.\n");
      return 0;
    }
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    process.stdout.write(`airlock ${pkg.version} (node ${process.version})\n`);
    return 0;
  },
};
