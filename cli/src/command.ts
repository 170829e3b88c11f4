/** A subcommand of `airlock`. `run` returns the process exit code: 0 ok, 1 failure, 2 bad input. */
export interface Command {
  readonly summary: string;
  run(argv: string[]): Promise<number>;
}

/** Thrown for bad flags or input; the dispatcher prints the message and exits 2. */
export class UsageError extends Error {}
