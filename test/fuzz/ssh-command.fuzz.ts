// Fuzz target: the SSH exec command analyser (sidecar/src/shell/command.ts).
// Invariants, for every input:
//  - analyzeCommand never throws; a refusal carries a reason.
//  - An accepted line round-trips: renderCommand (what the sidecar sends upstream) analyses to
//    the same commands and operators.
//  - bash agrees: running the line, and its rendering, under the bash oracle executes exactly
//    the commands the analyser judged (support/bash-oracle.ts; with every command succeeding,
//    a pipeline after || does not run). A line bash reads differently, or refuses, is a finding.
import { analyzeCommand, renderCommand } from "../../sidecar/src/shell/command.ts";
import { ORACLE_BLIND, runUnderBash } from "./support/bash-oracle.ts";
import { check, fail } from "./support/invariant.ts";

type Accepted = Extract<ReturnType<typeof analyzeCommand>, { ok: true }>;

/** The argv of each command bash runs when every command exits 0. */
function expectedRuns(a: Accepted): string[][] {
  const out: string[][] = [];
  let skipping = false;
  a.parts.forEach((part, i) => {
    const op = i === 0 ? ";" : a.operators[i - 1];
    if (op !== "|") skipping = op === "||";
    if (!skipping) out.push([...part.argv]);
  });
  return out;
}

const key = (runs: string[][]) => runs.map((r) => JSON.stringify(r)).sort();

function sameRuns(line: string, expected: string[][], what: string): void {
  const run = runUnderBash(line);
  const want = key(expected);
  const got = key(run.commands);
  if (run.status !== 0 || JSON.stringify(want) !== JSON.stringify(got))
    fail(`bash runs ${what} differently`, {
      line,
      expected: want,
      bash: got,
      status: run.status,
      stderr: run.stderr,
    });
}

export function fuzz(data: Buffer): void {
  const line = data.toString("utf8");
  const a = analyzeCommand(line);
  if (!a.ok) {
    check(typeof a.reason === "string" && a.reason.length > 0, "a refusal without a reason", { line });
    return;
  }
  const rendered = renderCommand(a);
  const again = analyzeCommand(rendered);
  check(again.ok, "the rendered command is refused", { line, rendered, again });
  if (!again.ok) return;
  const argvs = (x: Accepted) => JSON.stringify([x.parts.map((p) => p.argv), x.operators]);
  check(argvs(again) === argvs(a), "the rendered command analyses differently", {
    line,
    rendered,
    before: argvs(a),
    after: argvs(again),
  });
  if (a.parts.some((p) => ORACLE_BLIND.has(p.argv[0] as string) || (p.argv[0] as string).includes("/")))
    return;
  const expected = expectedRuns(a);
  sameRuns(line, expected, "the line");
  sameRuns(rendered, expected, "the rendered line");
}
