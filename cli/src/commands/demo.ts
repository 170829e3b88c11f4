import type { Command } from "../command.ts";

// Placeholder until the sidecar core lands: prints what the demo will run.
export const command: Command = {
  summary: "run the standalone sidecar demo on localhost",
  async run(argv) {
    if (argv.includes("--help") || argv.includes("-h")) {
      process.stdout.write(
        "Usage: airlock demo\n\nStarts the Airlock sidecar with an example policy in front of a small local API.\n",
      );
      return 0;
    }
    process.stdout.write(
      [
        "Airlock standalone demo (plan):",
        "  1. start a small upstream API on 127.0.0.1",
        "  2. start the sidecar with examples/demo-policy.yaml in front of it",
        "  3. print curl lines: an allowed call, a blocked one, a masked response",
        "The sidecar core is not built yet; see the README's roadmap.",
        "",
      ].join("\n"),
    );
    return 0;
  },
};
