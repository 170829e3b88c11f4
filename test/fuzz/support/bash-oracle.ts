// What bash actually runs for a command line, without running anything: bash (restricted mode,
// an empty PATH, every builtin but printf disabled) executes the line in a scratch directory,
// and every command it would run ends up in command_not_found_handle, which writes the argv it
// received to fd 3. Builtins, keywords and job specs that bash still interprets show up as
// missing or extra records. Restricted mode refuses command names containing "/" and output
// redirections, so even a line bash reads differently from the analyser cannot touch a file.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BASH = "/bin/bash";
const scratch = mkdtempSync(join(tmpdir(), "airlock-fuzz-bash-"));
const emptyPath = join(scratch, "empty-path");
const cwd = join(scratch, "cwd");
mkdirSync(emptyPath);
mkdirSync(cwd);
// Files a pathname expansion the analyser missed would match.
for (const f of ["a", "ab", "echo", "x y", "-rf", ".hidden"]) writeFileSync(join(cwd, f), "");

const builtins = spawnSync(BASH, ["--norc", "--noprofile", "-c", "compgen -b"], { encoding: "utf8" })
  .stdout.split("\n")
  .filter((b) => b !== "" && b !== "printf");
// Names the oracle cannot judge: printf stays a builtin (the recorder needs it) and the handler
// is a function.
export const ORACLE_BLIND = new Set(["printf", "command_not_found_handle"]);

const PRELUDE = `enable -n ${builtins.join(" ")}; command_not_found_handle() { printf '%s\\0' "$#" "$@" >&3; }\n`;

export interface BashRun {
  /** argv of each command bash ran, in the order the records arrived. */
  commands: string[][];
  status: number | null;
  stderr: string;
}

export function runUnderBash(line: string): BashRun {
  const r = spawnSync(BASH, ["--norc", "--noprofile", "-r", "-c", PRELUDE + line], {
    cwd,
    env: { PATH: emptyPath, LC_ALL: "C" },
    stdio: ["ignore", "pipe", "pipe", "pipe"],
    timeout: 5_000,
    maxBuffer: 1 << 20,
  });
  if (r.error) throw r.error;
  const out = (r.output[3] as Buffer | null)?.toString("utf8") ?? "";
  const fields = out.split("\0");
  fields.pop(); // after the last NUL
  const commands: string[][] = [];
  for (let i = 0; i < fields.length; ) {
    const n = Number(fields[i]);
    commands.push(fields.slice(i + 1, i + 1 + n));
    i += 1 + n;
  }
  return { commands, status: r.status, stderr: r.stderr.toString("utf8") };
}
