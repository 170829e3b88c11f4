// Command-line analysis for SSH exec requests. sshd hands the command string to the login shell
// (`$SHELL -c "<command>"`), so what runs is whatever a POSIX shell (bash, in practice) makes of
// it. The policy can only judge what it can see, so this module accepts a deliberately small
// language and refuses everything else (fail closed):
//
//  accepted  words made of plain characters, 'single quotes', "double quotes" (without $ or `),
//            backslash escapes; simple commands chained with `;`, `&&`, `||` and `|`. Each simple
//            command is judged on its own and EVERY one must be allowed (the strictest decision
//            wins, as for multi-statement SQL).
//  refused   newlines and other control characters; `$` in any form (variables, $(...), $((...)),
//            ${...}, $'...') and backticks, unquoted or in double quotes; redirections `<` `>`
//            (also 2>&1, &>, <<); background `&`; subshells and groups `(` `)`; unquoted pathname
//            expansion `*` `?` `[`; brace expansion `{` `}` (the word `{}` alone is allowed, for
//            `find -exec`); tilde expansion (unquoted `~` at a word start or after `=`/`:`);
//            comments (unquoted `#` at a word start); `NAME=value` assignments before a command;
//            shell keywords as the command (if, for, while, case, function, time, !, ...); empty
//            commands (`a ;; b`, a trailing `|`); unterminated quotes (also `"...\` at the end);
//            a command word starting with `%` (a job specification to bash); more than 64 KiB;
//            bash builtins that run strings as code, evaluate array subscripts in their
//            arguments, or change what later commands see (builtins.ts: export, read, set -k,
//            test -v, trap, source, ...).
//
// The policy sees each simple command normalized: its argv (after quote removal) joined by single
// spaces, so `"rm"  -rf '/x'` and `rm -rf /x` are the same `rm -rf /x` to a glob.
//
// Wrappers: a command that runs another command (sudo, doas, su -c, env, nohup, timeout, nice,
// ionice, stdbuf, setsid, chroot, exec, command, builtin, eval, /usr/bin/time, xargs, watch, flock,
// find -exec, busybox, and sh/bash/dash/zsh/ksh -c STRING, whose string is analysed by these same
// rules) is judged as written — `sudo systemctl restart nginx` needs a rule that allows exactly
// that — AND its wrapped command is also offered to the policy as an *inner view*: a deny or
// requireApproval rule that matches an inner view applies (`sudo -u root rm -rf /` is caught by
// a deny rule on `rm *`). Inner views never allow anything on their own. A command given by path
// (`/bin/rm`) also offers its base name (`rm ...`) as an inner view. A wrapper whose options are
// not understood is refused, since its inner command could not be located.
//
// What is NOT analysed: programs that interpret their own arguments as code (python -c, perl -e,
// awk 'system()', vim, git aliases, ssh to another host...). Allow rules should name exact
// commands or narrow globs; `*` in a command glob matches anything, spaces included.

import { builtinRefusal } from "./builtins.ts";

export const MAX_COMMAND_LENGTH = 64 * 1024;
const MAX_DEPTH = 8;

export interface CommandPart {
  argv: readonly string[];
  /** argv joined by single spaces: what command globs match, and what must be allowed. */
  command: string;
  /** Wrapped commands and base names, judged for deny and requireApproval only. */
  inner: readonly string[];
}

export type ChainOperator = ";" | "&&" | "||" | "|";

export type CommandAnalysis =
  | {
      ok: true;
      /** The normalized command line: parts joined by their operators. */
      command: string;
      parts: readonly CommandPart[];
      operators: readonly ChainOperator[];
    }
  | { ok: false; reason: string };

interface Word {
  text: string;
  /** Offsets in `text` of characters that were not quoted or escaped. */
  unquoted: Set<number>;
}

type Token = { word: Word } | { op: ChainOperator };

class Refusal extends Error {}

const KEYWORDS = new Set([
  "if",
  "then",
  "else",
  "elif",
  "fi",
  "case",
  "esac",
  "for",
  "select",
  "while",
  "until",
  "do",
  "done",
  "in",
  "function",
  "time",
  "coproc",
  "{",
  "}",
  "!",
  "[[",
  "]]",
]);

function describeControl(c: string): string {
  if (c === "\n") return "a newline (it separates commands)";
  if (c === "\r") return "a carriage return";
  return `control character U+${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

function lex(line: string): Token[] {
  const tokens: Token[] = [];
  let word: Word | undefined;
  const start = () => {
    word ??= { text: "", unquoted: new Set() };
    return word;
  };
  const push = (c: string, quoted: boolean) => {
    const w = start();
    if (!quoted) w.unquoted.add(w.text.length);
    w.text += c;
  };
  const end = () => {
    if (word) tokens.push({ word });
    word = undefined;
  };

  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    const code = c.charCodeAt(0);
    if ((code < 0x20 && c !== "\t") || code === 0x7f) throw new Refusal(describeControl(c));
    switch (c) {
      case " ":
      case "\t":
        end();
        break;
      case "'": {
        const close = line.indexOf("'", i + 1);
        if (close < 0) throw new Refusal("an unterminated single quote");
        const body = line.slice(i + 1, close);
        for (const ch of body) {
          const cc = ch.charCodeAt(0);
          if ((cc < 0x20 && ch !== "\t") || cc === 0x7f) throw new Refusal(describeControl(ch));
        }
        start().text += body;
        i = close;
        break;
      }
      case '"': {
        start();
        let j = i + 1;
        for (; j < line.length; j++) {
          const d = line[j] as string;
          if (d === '"') break;
          const dc = d.charCodeAt(0);
          if ((dc < 0x20 && d !== "\t") || dc === 0x7f) throw new Refusal(describeControl(d));
          if (d === "$" || d === "`")
            throw new Refusal(
              `${d === "$" ? "$ expansion" : "command substitution (`)"} inside double quotes`,
            );
          if (d === "\\") {
            const n = line[j + 1];
            // A backslash ending the line escapes nothing and the quote is never closed.
            if (n === undefined) throw new Refusal("an unterminated double quote");
            if (n === "$" || n === "`" || n === '"' || n === "\\") {
              push(n, true);
              j++;
              continue;
            }
            push("\\", true);
            continue;
          }
          push(d, true);
        }
        if (j >= line.length) throw new Refusal("an unterminated double quote");
        i = j;
        break;
      }
      case "\\": {
        const n = line[i + 1];
        if (n === undefined) throw new Refusal("a trailing backslash");
        const nc = n.charCodeAt(0);
        if ((nc < 0x20 && n !== "\t") || nc === 0x7f) throw new Refusal(describeControl(n));
        push(n, true);
        i++;
        break;
      }
      case "$":
        throw new Refusal("$ expansion (variables, $(...), $((...)), $\u007b...}, $'...')");
      case "`":
        throw new Refusal("command substitution (`...`)");
      case ";":
        if (line[i + 1] === ";") throw new Refusal(";; (case syntax)");
        end();
        tokens.push({ op: ";" });
        break;
      case "&":
        if (line[i + 1] === "&") {
          end();
          tokens.push({ op: "&&" });
          i++;
          break;
        }
        throw new Refusal(line[i + 1] === ">" ? "a redirection (&>)" : "a background job (&)");
      case "|":
        if (line[i + 1] === "|") {
          end();
          tokens.push({ op: "||" });
          i++;
          break;
        }
        if (line[i + 1] === "&") throw new Refusal("|& (pipes standard error)");
        end();
        tokens.push({ op: "|" });
        break;
      case "<":
      case ">":
        throw new Refusal(`a redirection (${c})`);
      case "(":
      case ")":
        throw new Refusal(`a subshell or group (${c})`);
      case "*":
      case "?":
      case "[":
        throw new Refusal(`unquoted ${c} (pathname expansion); quote it if it is meant literally`);
      case "#":
        if (!word) throw new Refusal("a comment (#)");
        push(c, false);
        break;
      case "~": {
        const prev = word?.text.at(-1);
        const prevUnquoted = word ? word.unquoted.has(word.text.length - 1) : false;
        if (!word || (prevUnquoted && (prev === "=" || prev === ":")))
          throw new Refusal("unquoted ~ (tilde expansion)");
        push(c, false);
        break;
      }
      case "{":
      case "}": {
        // `{}` alone (find -exec) is literal in every shell; anything else may be brace expansion
        // or a command group.
        const next = line[i + 1];
        if (
          c === "{" &&
          !word &&
          next === "}" &&
          [" ", "\t", ";", "|", "&", undefined].includes(line[i + 2])
        ) {
          push("{", false);
          push("}", false);
          i++;
          break;
        }
        throw new Refusal(`unquoted ${c} (brace expansion or a command group)`);
      }
      default:
        push(c, false);
    }
  }
  end();
  return tokens;
}

// What bash takes as an assignment in command position: NAME=, NAME+= (and NAME[subscript]=,
// which the lexer refuses for its unquoted `[`).
const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*\+?=/;

function checkCommandWord(words: Word[]): void {
  const first = words[0] as Word;
  const eq = first.text.indexOf("=");
  if (eq > 0 && ASSIGNMENT.test(first.text)) {
    let unquoted = true;
    for (let k = 0; k <= eq; k++) if (!first.unquoted.has(k)) unquoted = false;
    if (unquoted)
      throw new Refusal(`an environment assignment before the command (${first.text.slice(0, eq)}=...)`);
  }
  if (KEYWORDS.has(first.text) && first.unquoted.size === first.text.length)
    throw new Refusal(`the shell keyword "${first.text}"`);
  // bash takes a command word starting with % as a job specification (`%1` is `fg %1`), quoted
  // or not: it would not run the program the policy judged.
  if (first.text.startsWith("%")) throw new Refusal(`a job specification as the command (${first.text})`);
}

function split(tokens: Token[]): { parts: string[][]; operators: ChainOperator[] } {
  const parts: string[][] = [];
  const operators: ChainOperator[] = [];
  let current: Word[] = [];
  const close = (op?: ChainOperator) => {
    if (current.length === 0)
      throw new Refusal(op ? `an empty command before "${op}"` : "an empty command after the last operator");
    checkCommandWord(current);
    parts.push(current.map((w) => w.text));
    current = [];
  };
  for (const t of tokens) {
    if ("op" in t) {
      close(t.op);
      operators.push(t.op);
    } else current.push(t.word);
  }
  if (current.length > 0 || operators.length > 0) close();
  return { parts, operators };
}

// ---------------------------------------------------------------------------------------------
// Wrappers

interface OptionSpec {
  /** Short options without a value (letters). */
  flags?: string;
  /** Short options taking a value (letters). */
  values?: string;
  /** Short options whose value may only be attached (`-i{}`), else absent. */
  optional?: string;
  longFlags?: readonly string[];
  longValues?: readonly string[];
  /** Long options whose value may only be given with `=`. */
  longOptional?: readonly string[];
  /** Accept `-NUMBER` (nice). */
  numeric?: boolean;
}

interface ParsedOptions {
  /** Options seen, by name (short letter or long name), with their values. */
  seen: Map<string, string[]>;
  rest: string[];
  /** Option parsing ended at `--`. */
  dashDash: boolean;
}

function parseOptions(args: readonly string[], spec: OptionSpec, wrapper: string): ParsedOptions {
  const seen = new Map<string, string[]>();
  const note = (name: string, value = "") => seen.set(name, [...(seen.get(name) ?? []), value]);
  let i = 0;
  let dashDash = false;
  for (; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--") {
      i++;
      dashDash = true;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (eq >= 0 && (spec.longValues?.includes(name) || spec.longOptional?.includes(name))) {
        note(name, a.slice(eq + 1));
      } else if (eq < 0 && spec.longValues?.includes(name)) {
        const v = args[i + 1];
        if (v === undefined) throw new Refusal(`${wrapper} --${name} without a value`);
        note(name, v);
        i++;
      } else if (eq < 0 && (spec.longFlags?.includes(name) || spec.longOptional?.includes(name))) {
        note(name);
      } else throw new Refusal(`${wrapper} option --${name}, which is not understood`);
      continue;
    }
    if (spec.numeric && /^-\d+$/.test(a)) {
      note("n", a.slice(1));
      continue;
    }
    for (let k = 1; k < a.length; k++) {
      const ch = a[k] as string;
      if (spec.flags?.includes(ch)) note(ch);
      else if (spec.values?.includes(ch)) {
        const attached = a.slice(k + 1);
        if (attached) note(ch, attached);
        else {
          const v = args[i + 1];
          if (v === undefined) throw new Refusal(`${wrapper} -${ch} without a value`);
          note(ch, v);
          i++;
        }
        break;
      } else if (spec.optional?.includes(ch)) {
        note(ch, a.slice(k + 1));
        break;
      } else throw new Refusal(`${wrapper} option -${ch}, which is not understood`);
    }
  }
  return { seen, rest: args.slice(i), dashDash };
}

/** What a wrapper runs: an argv, a command string for a shell, or nothing (it runs no command). */
type Wrapped = { argv: string[] } | { line: string } | { none: true };

const argvOrNone = (rest: string[]): Wrapped => (rest.length > 0 ? { argv: rest } : { none: true });

const SHELL_SPEC: OptionSpec = {
  flags: "abefhkmnprtuvxBCEHPTilsc",
  values: "oO",
  longFlags: ["login", "norc", "noprofile", "posix", "restricted", "noediting", "verbose", "debugger"],
  longValues: ["rcfile", "init-file"],
};

function shellWrapper(args: readonly string[], name: string): Wrapped {
  // Leading `+o opt` / `+x` turn options off: parse them like their `-` forms.
  const normalized = [...args];
  for (let i = 0; i < normalized.length; i++) {
    const a = normalized[i] as string;
    if (/^\+[A-Za-z]+$/.test(a)) normalized[i] = `-${a.slice(1)}`;
    else if (!a.startsWith("-")) break;
  }
  const { seen, rest } = parseOptions(normalized, SHELL_SPEC, name);
  if (seen.has("c")) {
    const line = rest[0];
    if (line === undefined) throw new Refusal(`${name} -c without a command string`);
    return { line };
  }
  // `sh script args` runs a script; `sh` alone reads commands from standard input. Either way
  // nothing the policy could look at further: the command as written must be allowed.
  return { none: true };
}

const SUDO_SPEC: OptionSpec = {
  flags: "AbEHkKnPSisl",
  values: "ugCDhprtUT",
  longFlags: [
    "askpass",
    "background",
    "preserve-env",
    "set-home",
    "login",
    "remove-timestamp",
    "reset-timestamp",
    "non-interactive",
    "preserve-groups",
    "stdin",
    "shell",
    "list",
  ],
  longValues: [
    "user",
    "group",
    "close-from",
    "chdir",
    "host",
    "prompt",
    "role",
    "type",
    "other-user",
    "command-timeout",
  ],
  longOptional: ["preserve-env"],
};

/**
 * sudo's options with its VAR=value operands, which it takes among the options (any word with
 * an `=` that does not start with `/`) until `--`: `sudo A=1 -s cmd` runs a shell.
 */
function parseSudo(args: readonly string[], name: string): ParsedOptions {
  const seen = new Map<string, string[]>();
  let rest: readonly string[] = args;
  for (;;) {
    const parsed = parseOptions(rest, SUDO_SPEC, name);
    for (const [k, v] of parsed.seen) seen.set(k, [...(seen.get(k) ?? []), ...v]);
    const next = parsed.rest[0];
    if (parsed.dashDash || next === undefined || next.startsWith("/") || !next.includes("="))
      return { seen, rest: parsed.rest, dashDash: parsed.dashDash };
    rest = parsed.rest.slice(1);
  }
}

const WRAPPERS: Record<string, (args: readonly string[], name: string) => Wrapped> = {
  sudo(args, name) {
    const { seen, rest } = parseSudo(args, name);
    if (seen.has("l") || seen.has("list")) return { none: true };
    return argvOrNone(rest);
  },
  doas(args, name) {
    const { seen, rest } = parseOptions(args, { flags: "nsL", values: "uC" }, name);
    if (seen.has("C") || seen.has("L")) return { none: true };
    return argvOrNone(rest);
  },
  su: suWrapper,
  runuser(args, name) {
    // runuser -u USER [--] COMMAND [ARGS]: a command vector; otherwise it behaves like su.
    if (args[0] === "-u" || args[0]?.startsWith("--user")) {
      const { rest } = parseOptions(
        args,
        { values: "ugG", longValues: ["user", "group", "supp-group"] },
        name,
      );
      return argvOrNone(rest);
    }
    return suWrapper(args, name);
  },
  env(args, name) {
    const { seen, rest } = parseOptions(
      args,
      {
        flags: "i0v",
        values: "uCS",
        longFlags: ["ignore-environment", "null", "debug"],
        longValues: ["unset", "chdir", "split-string"],
      },
      name,
    );
    if (seen.has("S") || seen.has("split-string"))
      throw new Refusal("env -S (it splits a string into a command)");
    // GNU env takes every leading word with an `=` anywhere in it as an assignment.
    const command = rest.findIndex((w) => !w.includes("="));
    return argvOrNone(command < 0 ? [] : rest.slice(command));
  },
  nohup: (args, name) => argvOrNone(parseOptions(args, {}, name).rest),
  timeout(args, name) {
    const { rest } = parseOptions(
      args,
      {
        flags: "v",
        values: "sk",
        longFlags: ["foreground", "preserve-status", "verbose"],
        longValues: ["signal", "kill-after"],
      },
      name,
    );
    if (rest.length === 0) throw new Refusal("timeout without a duration");
    return argvOrNone(rest.slice(1));
  },
  nice: (args, name) =>
    argvOrNone(parseOptions(args, { values: "n", longValues: ["adjustment"], numeric: true }, name).rest),
  ionice(args, name) {
    const { seen, rest } = parseOptions(
      args,
      {
        flags: "t",
        values: "cnpPu",
        longFlags: ["ignore"],
        longValues: ["class", "classdata", "pid", "pgid", "uid"],
      },
      name,
    );
    if (["p", "P", "u", "pid", "pgid", "uid"].some((o) => seen.has(o))) return { none: true };
    return argvOrNone(rest);
  },
  stdbuf: (args, name) =>
    argvOrNone(parseOptions(args, { values: "ioe", longValues: ["input", "output", "error"] }, name).rest),
  setsid: (args, name) =>
    argvOrNone(parseOptions(args, { flags: "cfw", longFlags: ["ctty", "fork", "wait"] }, name).rest),
  chroot(args, name) {
    const { rest } = parseOptions(
      args,
      { longFlags: ["skip-chdir"], longValues: ["userspec", "groups"] },
      name,
    );
    if (rest.length === 0) throw new Refusal("chroot without a directory");
    // Without a command chroot starts a shell: nothing further to judge.
    return argvOrNone(rest.slice(1));
  },
  exec: (args, name) => argvOrNone(parseOptions(args, { flags: "cl", values: "a" }, name).rest),
  command(args, name) {
    const { seen, rest } = parseOptions(args, { flags: "pvV" }, name);
    if (seen.has("v") || seen.has("V")) return { none: true };
    return argvOrNone(rest);
  },
  builtin: (args) => argvOrNone([...args]),
  // eval joins its arguments with spaces and runs the result as a command line.
  eval: (args) => (args.length > 0 ? { line: args.join(" ") } : { none: true }),
  time: (args, name) =>
    argvOrNone(
      parseOptions(
        args,
        {
          flags: "pvaq",
          values: "fo",
          longFlags: ["portability", "verbose", "append", "quiet"],
          longValues: ["format", "output"],
        },
        name,
      ).rest,
    ),
  xargs(args, name) {
    const { rest } = parseOptions(
      args,
      {
        flags: "0rtpxo",
        values: "adEILnPs",
        optional: "eil",
        longFlags: ["null", "no-run-if-empty", "verbose", "interactive", "exit", "open-tty", "show-limits"],
        longValues: ["arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"],
        longOptional: ["eof", "replace", "max-lines"],
      },
      name,
    );
    // The arguments come from standard input, which the policy cannot see: the inner view is the
    // command as written (deny rules on that program still apply).
    return { argv: rest.length > 0 ? rest : ["echo"] };
  },
  watch(args, name) {
    const { seen, rest } = parseOptions(
      args,
      {
        flags: "bcegtxpwr",
        values: "nq",
        optional: "d",
        longFlags: [
          "beep",
          "color",
          "no-color",
          "errexit",
          "chgexit",
          "no-title",
          "exec",
          "precise",
          "no-wrap",
          "no-rerun",
        ],
        longValues: ["interval", "equexit"],
        longOptional: ["differences"],
      },
      name,
    );
    if (rest.length === 0) throw new Refusal("watch without a command");
    // Without --exec, watch joins its arguments and runs them with `sh -c`.
    return seen.has("x") || seen.has("exec") ? { argv: rest } : { line: rest.join(" ") };
  },
  flock(args, name) {
    const { seen, rest } = parseOptions(
      args,
      {
        flags: "sxeunoF",
        values: "wEc",
        longFlags: ["shared", "exclusive", "unlock", "nonblock", "close", "no-fork", "verbose"],
        longValues: ["timeout", "conflict-exit-code", "command"],
      },
      name,
    );
    const c = seen.get("c") ?? seen.get("command");
    if (c) return { line: c[c.length - 1] as string };
    if (rest.length === 0) throw new Refusal("flock without a lock file");
    // `flock FILE -c STRING` puts the option after the file.
    if (rest[1] === "-c" || rest[1] === "--command") {
      const line = rest[2];
      if (line === undefined) throw new Refusal("flock -c without a command string");
      return { line };
    }
    return argvOrNone(rest.slice(1));
  },
  busybox: (args) => argvOrNone([...args]),
  sh: shellWrapper,
  bash: shellWrapper,
  dash: shellWrapper,
  ash: shellWrapper,
  zsh: shellWrapper,
  ksh: shellWrapper,
  mksh: shellWrapper,
};

function suWrapper(args: readonly string[], name: string): Wrapped {
  // util-linux su permutes options and operands: scan everything.
  const spec: OptionSpec = {
    flags: "lmpfP",
    values: "csgGw",
    longFlags: ["login", "preserve-environment", "pty"],
    longValues: ["command", "session-command", "shell", "group", "supp-group", "whitelist-environment"],
  };
  let command: string | undefined;
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "-") continue;
    if (a === "--") {
      operands.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith("-")) {
      operands.push(a);
      continue;
    }
    // Parse this single option (and its value) with the shared parser.
    const takesNext =
      (!a.startsWith("--") && a.length === 2 && spec.values?.includes(a[1] as string)) ||
      (a.startsWith("--") && !a.includes("=") && spec.longValues?.includes(a.slice(2)));
    const chunk = takesNext ? [a, args[i + 1] ?? ""] : [a];
    if (takesNext) {
      if (args[i + 1] === undefined) throw new Refusal(`${name} ${a} without a value`);
      i++;
    }
    const { seen } = parseOptions(chunk, spec, name);
    const c = seen.get("c") ?? seen.get("command") ?? seen.get("session-command");
    if (c) command = c[c.length - 1];
  }
  if (operands.length > 1) throw new Refusal(`${name} with arguments for the target shell`);
  return command !== undefined ? { line: command } : { none: true };
}

/** find -exec/-execdir/-ok/-okdir COMMAND ... ; (or +): the commands find runs. */
function findCommands(args: readonly string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < args.length; i++) {
    if (!["-exec", "-execdir", "-ok", "-okdir"].includes(args[i] as string)) continue;
    const cmd: string[] = [];
    let j = i + 1;
    for (; j < args.length && args[j] !== ";" && args[j] !== "+"; j++) cmd.push(args[j] as string);
    if (j >= args.length) throw new Refusal(`find ${args[i]} without a terminating ; or +`);
    if (cmd.length === 0) throw new Refusal(`find ${args[i]} without a command`);
    out.push(cmd);
    i = j;
  }
  return out;
}

const basename = (s: string) => s.slice(s.lastIndexOf("/") + 1);
const join = (argv: readonly string[]) => argv.join(" ");

function innerViews(argv: readonly string[], depth: number, out: string[]): void {
  if (depth > MAX_DEPTH) throw new Refusal(`wrappers nested more than ${MAX_DEPTH} deep`);
  const first = argv[0];
  if (first === undefined) return;
  const name = basename(first);
  const builtin = first.includes("/") ? undefined : builtinRefusal(argv);
  if (builtin !== undefined) throw new Refusal(builtin);
  if (first.includes("/")) {
    if (name === "") throw new Refusal(`a command path ending in "/" (${first})`);
    out.push(join([name, ...argv.slice(1)]));
  }
  if (name === "find") {
    for (const cmd of findCommands(argv.slice(1))) {
      out.push(join(cmd));
      innerViews(cmd, depth + 1, out);
    }
    return;
  }
  const wrapper = Object.hasOwn(WRAPPERS, name) ? WRAPPERS[name] : undefined;
  if (!wrapper) return;
  const wrapped = wrapper(argv.slice(1), name);
  if ("argv" in wrapped) {
    out.push(join(wrapped.argv));
    innerViews(wrapped.argv, depth + 1, out);
  } else if ("line" in wrapped) {
    const nested = analyzeLine(wrapped.line, depth + 1);
    for (const part of nested.parts) out.push(part.command, ...part.inner);
  }
}

function analyzeLine(line: string, depth: number): { parts: CommandPart[]; operators: ChainOperator[] } {
  if (line.length > MAX_COMMAND_LENGTH)
    throw new Refusal(`a command longer than ${MAX_COMMAND_LENGTH} characters`);
  const { parts, operators } = split(lex(line));
  if (parts.length === 0) throw new Refusal("an empty command");
  return {
    operators,
    parts: parts.map((argv) => {
      const inner: string[] = [];
      innerViews(argv, depth, inner);
      const command = join(argv);
      return { argv, command, inner: [...new Set(inner)].filter((v) => v !== command) };
    }),
  };
}

/** Parses an exec command line; `ok: false` means it must be refused (see the header comment). */
export function analyzeCommand(line: string): CommandAnalysis {
  try {
    const { parts, operators } = analyzeLine(line, 0);
    let command = parts[0]?.command ?? "";
    for (let i = 0; i < operators.length; i++) command += ` ${operators[i]} ${parts[i + 1]?.command ?? ""}`;
    return { ok: true, command, parts, operators };
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, reason: `the command contains ${err.message}` };
    throw err;
  }
}

const SAFE_WORD = /^[A-Za-z0-9_\-.,:/@%+=]+$/;

/** One word for a POSIX shell: as is when plainly safe, else single-quoted. */
export function shellQuote(word: string, commandPosition = false): string {
  // A leading `=` is quoted too: zsh expands `=cmd` to the command's path.
  const plain =
    SAFE_WORD.test(word) &&
    !word.startsWith("=") &&
    !(commandPosition && (KEYWORDS.has(word) || ASSIGNMENT.test(word)));
  return plain ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command line the upstream shell runs: every word re-quoted from the analysed argv, so the
 * shell sees exactly the words the policy judged, even where this parser and the remote shell
 * might read the original text differently.
 */
export function renderCommand(analysis: Extract<CommandAnalysis, { ok: true }>): string {
  const render = (p: CommandPart) => p.argv.map((w, i) => shellQuote(w, i === 0)).join(" ");
  let out = render(analysis.parts[0] as CommandPart);
  for (let i = 0; i < analysis.operators.length; i++)
    out += ` ${analysis.operators[i]} ${render(analysis.parts[i + 1] as CommandPart)}`;
  return out;
}
