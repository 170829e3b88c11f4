// The builtin rules against the bash on this machine: every builtin it has is classified, every
// line the analyser accepts runs no code hidden in a quoted argument, and each refused form does
// run it in bash (so the refusals are needed, not merely cautious).
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BUILTIN_NAMES } from "./builtins.ts";
import { analyzeCommand, renderCommand, shellQuote } from "./command.ts";

const BASH = "/bin/bash";
const scratch = mkdtempSync(join(tmpdir(), "airlock-builtins-"));
// A command substitution that prints RUN only when bash executes it (its text has no RUN).
const PAYLOAD = "x[$(printf R%sN U >&2)]";

function bashRuns(line: string): boolean {
  const r = spawnSync(BASH, ["--norc", "--noprofile", "-c", line], {
    cwd: scratch,
    env: { PATH: "/usr/bin:/bin", HOME: scratch, LC_ALL: "C" },
    input: `${PAYLOAD}\n`,
    encoding: "utf8",
    timeout: 5_000,
    killSignal: "SIGKILL",
  });
  return `${r.stdout}${r.stderr}`.includes("RUN");
}

const machineBuiltins = spawnSync(BASH, ["--norc", "--noprofile", "-c", "compgen -b"], {
  encoding: "utf8",
})
  .stdout.split("\n")
  .filter((b) => b !== "");

// Argument shapes that reach the places bash evaluates names and subscripts: operands, option
// values (-v NAME, -p NAME), test operators. No bare numbers: `kill 1` would signal init.
const SHAPES: readonly string[][] = [
  [PAYLOAD],
  ["-v", PAYLOAD],
  [PAYLOAD, "-eq", PAYLOAD],
  ["-n", PAYLOAD],
  ["%d", PAYLOAD],
  ["-p", PAYLOAD],
  ["-l", PAYLOAD],
  ["-s", PAYLOAD],
  ["-u", PAYLOAD],
  ["-a", PAYLOAD],
  ["--", PAYLOAD],
  [`${PAYLOAD}=1`],
  [`-v${PAYLOAD}`, "y"],
  ["a", PAYLOAD],
];
// suspend would stop the test's bash; the wrappers' inner commands are analysed as commands.
const UNTRIED = new Set(["suspend", "eval", "exec", "command", "builtin"]);

describe("shell builtins", () => {
  it("classifies every builtin of this machine's bash", () => {
    expect(machineBuiltins.length).toBeGreaterThan(50);
    expect(machineBuiltins.filter((b) => !BUILTIN_NAMES.includes(b))).toEqual([]);
  });

  it("accepts only builtin lines that run nothing hidden in a quoted argument", () => {
    let accepted = 0;
    const ran: string[] = [];
    for (const name of machineBuiltins) {
      if (UNTRIED.has(name)) continue;
      for (const args of SHAPES) {
        const line = [name, ...args].map((w, i) => shellQuote(w, i === 0)).join(" ");
        const a = analyzeCommand(line);
        if (!a.ok) continue;
        accepted++;
        if (bashRuns(renderCommand(a))) ran.push(line);
      }
    }
    expect(ran).toEqual([]);
    // The check saw real lines: most builtins take most shapes as data.
    expect(accepted).toBeGreaterThan(300);
  }, 60_000);

  it.each([
    ["test -v", `test -v '${PAYLOAD}'`],
    ["[ -v", `'[' -v '${PAYLOAD}' ']'`],
    ["printf -v", `printf -v '${PAYLOAD}' y`],
    ["declare", `declare '${PAYLOAD}=1'`],
    ["read", `read '${PAYLOAD}'`],
    ["let", `let '${PAYLOAD}'`],
    ["trap", `trap 'printf R%sN U >&2' EXIT`],
    ["compgen -W", `compgen -W '$(printf R%sN U >&2)'`],
    ["set -k", `set -k; printf '%s' '${PAYLOAD}=' >/dev/null`],
  ])("refuses %s, which bash runs code from", (_, line) => {
    if (!line.startsWith("set -k")) expect(bashRuns(line)).toBe(true);
    expect(analyzeCommand(line).ok).toBe(false);
  });

  it.each([
    "export PATH=/tmp/evil:/usr/bin",
    "hash -p /bin/sh ls",
    "alias ls=id",
    "source ./env.sh",
    ". ./env.sh",
    "set -k",
    "set -o posix",
    "shopt -s expand_aliases",
    "enable -f ./x.so x",
    "unset PATH",
    "wait -np x",
    "bash -c 'export A=1; ls'",
    "command read x",
    "builtin export A=1",
  ])("refuses %s (it changes what later commands run or see)", (line) => {
    const a = analyzeCommand(line);
    expect(a.ok ? "accepted" : a.reason).toMatch(/shell builtin/);
  });

  it.each([
    "cd /srv && ls",
    "set -euo pipefail; make",
    "set +x",
    "set -o",
    "printf '%s\\n' a b",
    "test -f /etc/hosts && echo yes",
    "echo done",
    "export",
    "trap",
    "type ls",
    "kill -0 123",
    "umask 022",
  ])("accepts %s", (line) => {
    const a = analyzeCommand(line);
    expect(a.ok ? "accepted" : a.reason).toBe("accepted");
  });
});
