// What bash's builtins do with their arguments. A builtin runs inside the shell that runs the
// rest of the line, so some of them do what no program given the same argv could: run a string
// as code (eval, trap, bind -x, compgen -W '$(...)'), evaluate an array subscript — and any
// `$(...)` in it — in an argument that was single-quoted on the line (`test -v 'a[$(id)]'`,
// `printf -v`, `declare`, `read`, `unset`), or change what later commands on the line are (export
// PATH, hash -p, set -k, alias, source). Each is refused here unless its arguments are plainly
// harmless; the `NAME=value` assignments these stand in for are refused by the lexer already.
//
// Every name bash 5 lists with `compgen -b` has an entry (a test checks it against the bash on
// the machine), so a builtin nobody classified cannot pass as a program. eval, exec, command
// and builtin are wrappers (command.ts): their inner command is analysed like any other.

type Rule =
  /** Runs like a program would: its arguments are data. */
  | "plain"
  /** Only its listing form (no arguments at all) is accepted; with any, `because` says why not. */
  | { listOnly: string }
  /** Refused whatever its arguments: the reason says why. */
  | { refuse: string }
  /** Refused when `check` returns a reason. */
  | { check: (args: readonly string[]) => string | undefined };

const CODE = "runs a string as shell code";
const STATE = "sets shell variables that later commands on the line would see";
const CHANGES = "changes what later commands on the line run";
const SOURCE = "runs a file's commands in this shell, where they can redefine later commands";

/**
 * The option letters of the words before the first operand (or `--`), values attached or not:
 * over-inclusive on purpose, since an option letter inside an attached value only refuses more.
 */
function optionLetters(args: readonly string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (a === "--" || !a.startsWith("-") || a === "-") break;
    out.push(...a.slice(1));
  }
  return out;
}

// `set` options that only change how the shell reports or stops on errors; everything else
// (-k: every NAME=value argument becomes an assignment, `--`: positional parameters, -o with
// other names) is refused.
const SET_FLAGS = new Set(["e", "u", "x", "v", "f", "C"]);
const SET_LONG = new Set(["errexit", "nounset", "xtrace", "verbose", "noglob", "noclobber", "pipefail"]);

function checkSet(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!/^[-+][A-Za-z]+$/.test(a)) return `set ${a}`;
    for (const f of a.slice(1)) {
      if (f !== "o") {
        if (!SET_FLAGS.has(f)) return `set ${a}`;
        continue;
      }
      // Each -o in a cluster takes the next word as its option name (`set -euo pipefail`); a
      // final `-o` alone lists the options.
      const name = args[++i];
      if (name === undefined && a.length === 2) continue;
      if (name === undefined || !SET_LONG.has(name)) return `set ${a} ${name ?? ""}`.trim();
    }
  }
  return undefined;
}

const BUILTINS: Readonly<Record<string, Rule>> = {
  ":": "plain",
  true: "plain",
  false: "plain",
  echo: "plain",
  pwd: "plain",
  cd: "plain",
  pushd: "plain",
  popd: "plain",
  dirs: "plain",
  help: "plain",
  type: "plain",
  times: "plain",
  jobs: "plain",
  fg: "plain",
  bg: "plain",
  disown: "plain",
  suspend: "plain",
  logout: "plain",
  exit: "plain",
  return: "plain",
  break: "plain",
  continue: "plain",
  shift: "plain",
  umask: "plain",
  ulimit: "plain",
  kill: "plain",
  caller: "plain",
  unalias: "plain",
  // Wrappers: their inner command is analysed (command.ts).
  eval: "plain",
  exec: "plain",
  command: "plain",
  builtin: "plain",
  test: { check: testCheck("test") },
  "[": { check: testCheck("[") },
  printf: {
    check: (args) => (args[0]?.startsWith("-v") ? "printf -v (it assigns a variable)" : undefined),
  },
  wait: {
    check: (args) => (optionLetters(args).includes("p") ? "wait -p (it assigns a variable)" : undefined),
  },
  hash: {
    check: (args) =>
      optionLetters(args).some((o) => o === "p" || o === "d")
        ? "hash -p or -d (it changes what a name runs)"
        : undefined,
  },
  set: { check: checkSet },
  export: { listOnly: STATE },
  declare: { listOnly: STATE },
  typeset: { listOnly: STATE },
  local: { refuse: STATE },
  readonly: { listOnly: STATE },
  alias: { listOnly: CHANGES },
  trap: { listOnly: CODE },
  shopt: { listOnly: CHANGES },
  history: { listOnly: "writes its list to files and re-runs entries" },
  enable: { listOnly: "loads or disables builtins" },
  read: { refuse: STATE },
  mapfile: { refuse: STATE },
  readarray: { refuse: STATE },
  getopts: { refuse: STATE },
  let: { refuse: "evaluates arithmetic, array subscripts included, and assigns variables" },
  unset: { refuse: STATE },
  source: { refuse: SOURCE },
  ".": { refuse: SOURCE },
  bind: { refuse: CODE },
  complete: { refuse: CODE },
  compgen: { refuse: CODE },
  compopt: { refuse: CODE },
  fc: { refuse: CODE },
};

/** test / [ with -v or -R evaluates a variable name, array subscript included. */
function testCheck(name: string): (args: readonly string[]) => string | undefined {
  return (args) => {
    const op = args.find((a) => a === "-v" || a === "-R");
    return op === undefined ? undefined : `${name} ${op} (it evaluates a variable name)`;
  };
}

/** Every builtin name this module classifies (tests compare it with the machine's bash). */
export const BUILTIN_NAMES: readonly string[] = Object.keys(BUILTINS);

/**
 * Why bash running `argv` as a builtin must be refused, or undefined when it may run. A name
 * that is not a bash builtin (or is given as a path) is a program: undefined.
 */
export function builtinRefusal(argv: readonly string[]): string | undefined {
  const name = argv[0];
  if (name === undefined || !Object.hasOwn(BUILTINS, name)) return undefined;
  const rule = BUILTINS[name] as Rule;
  const args = argv.slice(1);
  if (rule === "plain") return undefined;
  if ("listOnly" in rule)
    return args.length === 0 ? undefined : `the shell builtin ${name} with arguments (it ${rule.listOnly})`;
  if ("refuse" in rule) return `the shell builtin ${name} (it ${rule.refuse})`;
  const why = rule.check(args);
  return why === undefined ? undefined : `the shell builtin ${why}`;
}
