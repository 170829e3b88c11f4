// `airlock sessions`: list recorded agent sessions and replay one — SSH sessions play back in the
// terminal as the agent saw them (asciicast), SQL/HTTP sessions print as a timeline of operations.
import { parseArgs } from "node:util";
import { toAsciicast } from "../../../sidecar/src/recording/index.ts";
import { type Command, UsageError } from "../command.ts";
import { play, sessionTable, timeline } from "../sessions/present.ts";
import { openSource, SOURCE_HELP, SOURCE_OPTIONS } from "../sessions/source.ts";

const LIST_HELP = `Usage: airlock sessions list (--dir DIR | --logs FILE | --pod NAME [-n NS]) [--json]

Lists the sessions found in the source: id, protocol, connection, start, duration, user, format
(asciicast for SSH, jsonl for SQL/HTTP recordings, audit when only audit events were found),
recorded events and audited operations.

${SOURCE_HELP}
  --json                   print the list as JSON
`;

const REPLAY_HELP = `Usage: airlock sessions replay ID (--dir DIR | --logs FILE | --pod NAME [-n NS])
                              [--speed N] [--max-idle SECONDS] [--quiet] [--timeline | --cast]

Replays session ID (a unique prefix is enough). SSH sessions play in the terminal exactly as the
agent received them (after masking); markers such as "exec: ..." and "exit 0" go to stderr.
SQL and HTTP sessions, and sessions with only audit events, print as a timeline.

  --speed N                playback speed: 1 real time (default), 4 four times faster, 0 no delays
  --max-idle SECONDS       cap every pause at this many seconds (after --speed)
  --quiet                  no markers on stderr
  --timeline               print the operations timeline even for a terminal session
  --cast                   print the asciicast v2 file instead of playing it (asciinema play -)

${SOURCE_HELP}
`;

const HELP = `Usage: airlock sessions list|replay ...

  list     list recorded sessions:     airlock sessions list --help
  replay   replay one session:         airlock sessions replay --help
`;

async function list(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...SOURCE_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(LIST_HELP);
    return 0;
  }
  const sessions = (await openSource(values)).list();
  if (values.json) process.stdout.write(`${JSON.stringify(sessions, null, 2)}\n`);
  else if (sessions.length === 0) process.stdout.write("no sessions found\n");
  else process.stdout.write(`${sessionTable(sessions)}\n`);
  return 0;
}

async function replay(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ...SOURCE_OPTIONS,
      speed: { type: "string" },
      "max-idle": { type: "string" },
      quiet: { type: "boolean" },
      timeline: { type: "boolean" },
      cast: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(REPLAY_HELP);
    return 0;
  }
  const [id, ...extra] = positionals;
  if (id === undefined) throw new UsageError("give the session ID to replay (see airlock sessions list)");
  if (extra.length) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const speed = values.speed === undefined ? 1 : Number(values.speed);
  if (!Number.isFinite(speed) || speed < 0) throw new UsageError("--speed takes a number >= 0");
  const maxIdle = values["max-idle"] === undefined ? undefined : Number(values["max-idle"]);
  if (maxIdle !== undefined && (!Number.isFinite(maxIdle) || maxIdle < 0))
    throw new UsageError("--max-idle takes a number of seconds >= 0");

  const found = (await openSource(values)).find(id);
  if ("error" in found) {
    process.stderr.write(`airlock sessions replay: ${found.error}\n`);
    return 1;
  }
  const terminal = found.summary.format === "asciicast";
  if (values.cast) {
    if (!terminal) throw new UsageError(`session ${found.summary.session} is not a terminal session`);
    process.stdout.write(toAsciicast(found));
    return 0;
  }
  if (!terminal || values.timeline) {
    process.stdout.write(`${timeline(found)}\n`);
    return 0;
  }
  const color = process.stderr.isTTY;
  await play(found.events, {
    speed,
    ...(maxIdle !== undefined ? { maxIdle } : {}),
    write: (data) => process.stdout.write(data),
    ...(values.quiet
      ? {}
      : {
          marker: (label: string, at: number) =>
            process.stderr.write(
              color
                ? `\x1b[2m[airlock +${at.toFixed(1)}s] ${label}\x1b[0m\n`
                : `[airlock +${at.toFixed(1)}s] ${label}\n`,
            ),
        }),
  });
  if (found.summary.complete === false)
    process.stderr.write(
      "[airlock] the recording has no end: the session was still open, or the log was cut\n",
    );
  return 0;
}

export const command: Command = {
  summary: "list and replay recorded agent sessions",
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
      process.stdout.write(HELP);
      return sub === undefined ? 2 : 0;
    }
    if (sub === "list") return list(rest);
    if (sub === "replay") return replay(rest);
    process.stderr.write(`airlock sessions: unknown subcommand "${sub}"\n\n${HELP}`);
    return 2;
  },
};
