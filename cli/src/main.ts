// `airlock` command: dispatches subcommands. Each subcommand module exports `run(argv)` and a
// one-line summary; it owns its own flags and `--help`.
import { type Command, UsageError } from "./command.ts";
import { startupError } from "./startup-errors.ts";

const commands: Record<string, () => Promise<Command>> = {
  demo: async () => (await import("./commands/demo.ts")).command,
  policy: async () => (await import("./commands/policy.ts")).command,
  mask: async () => (await import("./commands/mask.ts")).command,
  inject: async () => (await import("./commands/inject.ts")).command,
  sessions: async () => (await import("./commands/sessions.ts")).command,
  approvals: async () => (await import("./commands/kubectl-airlock.ts")).command,
  sidecar: async () => (await import("./commands/sidecar.ts")).command,
  version: async () => (await import("./commands/version.ts")).command,
};

export function usage(): string {
  return [
    "airlock — let AI agents touch production without standing credentials",
    "",
    "Usage: airlock <command> [flags]",
    "",
    "Commands:",
    "  demo       run the standalone sidecar demo on localhost",
    "  policy     test what a policy decides: airlock policy test --help",
    "  mask       mask JSON or text from stdin as the sidecar would",
    "  inject     print a Pod or workload as the injector would mutate it",
    "  sessions   list and replay recorded agent sessions (SSH, SQL, HTTP)",
    "  approvals  list, show, approve and deny access requests (also `kubectl airlock`)",
    "  sidecar    run the enforcement proxy (the image's airlock-sidecar)",
    "  version    print the version",
    "",
    "Run `airlock <command> --help` for the flags of a command.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`airlock: unknown command "${name}"\n\n${usage()}\n`);
    return 2;
  }
  const command = await load();
  try {
    return await command.run(rest);
  } catch (e) {
    // Bad flags or input: say what is wrong and point at --help, without a stack trace.
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`airlock ${name}: ${(e as Error).message}\n(see airlock ${name} --help)\n`);
      return 2;
    }
    // Start-up failures a user causes (a port in use, a missing or invalid policy file): one
    // message that says what to do, not a stack trace.
    const known = startupError(e);
    if (known) {
      process.stderr.write(`airlock ${name}: ${known.message}\n`);
      return known.code;
    }
    throw e;
  }
}
