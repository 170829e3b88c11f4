// Talking to the real iptables: which backend the node uses, loading a rule set atomically with
// iptables-restore --noflush, and reading it back to check it is in force.
//
// Backend choice follows Istio: the kernel keeps iptables-legacy (x_tables) and iptables-nft
// (nf_tables) rules apart, and rules written with the wrong one either fail ("unable to initialize
// table 'nat'") or sit beside the ones in force. So prefer the backend that already holds rules in
// this network namespace (a re-run finds its own), else nft, the default of every current distro;
// a backend whose save command fails (no kernel support) is not a candidate.
import { spawn } from "node:child_process";
import {
  CHAIN_NON_TCP,
  CHAIN_OUTPUT,
  CHAIN_REDIRECT,
  type ExistingState,
  type Family,
  type FamilyRules,
  parseExisting,
  renderRestore,
  type Table,
} from "./rules.ts";

export type BackendName = "nft" | "legacy";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type Runner = (command: string, args: readonly string[], input?: string) => Promise<RunResult>;

export const spawnRunner: Runner = (command, args, input) =>
  new Promise((resolve) => {
    const child = spawn(command, [...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (err: NodeJS.ErrnoException) =>
      resolve({ code: err.code === "ENOENT" ? 127 : 126, stdout, stderr: `${command}: ${err.message}` }),
    );
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? "");
  });

export interface Tools {
  save: string;
  restore: string;
}

export function toolsFor(backend: BackendName, family: Family): Tools {
  const base = family === 4 ? "iptables" : "ip6tables";
  return { save: `${base}-${backend}-save`, restore: `${base}-${backend}-restore` };
}

export interface BackendProbe {
  backend: BackendName;
  usable: boolean;
  /** `-A` lines across all tables and the probed families. */
  rules: number;
  error?: string;
}

export function countRules(save: string): number {
  return save.split("\n").filter((l) => l.startsWith("-A ")).length;
}

/** Pure: the backend with the most rules already in place; nft on a tie; error if none is usable. */
export function chooseBackend(probes: readonly BackendProbe[]): { backend: BackendName; reason: string } {
  const usable = probes.filter((p) => p.usable);
  if (!usable.length)
    throw new Error(
      `no usable iptables backend: ${probes.map((p) => `${p.backend}: ${p.error ?? "unusable"}`).join("; ")}`,
    );
  const most = Math.max(...usable.map((p) => p.rules));
  const best = usable.filter((p) => p.rules === most);
  const pick = best.find((p) => p.backend === "nft") ?? best[0];
  if (!pick) throw new Error("no usable iptables backend");
  const reason =
    most === 0
      ? `no rules in place in either backend; ${pick.backend} is ${usable.length > 1 ? "the default" : "the only usable one"}`
      : `${pick.backend} already holds ${most} rule(s)`;
  return { backend: pick.backend, reason };
}

export async function probeBackends(run: Runner, families: readonly Family[]): Promise<BackendProbe[]> {
  const probes: BackendProbe[] = [];
  for (const backend of ["nft", "legacy"] as const) {
    let rules = 0;
    let error: string | undefined;
    for (const family of families) {
      const r = await run(toolsFor(backend, family).save, []);
      if (r.code !== 0) {
        error = (r.stderr.trim() || `exit ${r.code}`).split("\n")[0];
        break;
      }
      rules += countRules(r.stdout);
    }
    probes.push(
      error === undefined ? { backend, usable: true, rules } : { backend, usable: false, rules, error },
    );
  }
  return probes;
}

async function save(run: Runner, tools: Tools): Promise<string> {
  const r = await run(tools.save, []);
  if (r.code !== 0) throw new Error(`${tools.save} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** `-A` lines per chain of one table in iptables-save output. */
export function chainRuleCounts(saveText: string, table: Table): Map<string, number> {
  const counts = new Map<string, number>();
  let current: string | undefined;
  for (const line of saveText.split("\n")) {
    if (line.startsWith("*")) current = line.slice(1).trim();
    else if (current === table) {
      const m = /^-A (\S+) /.exec(line);
      if (m?.[1]) counts.set(m[1], (counts.get(m[1]) ?? 0) + 1);
    }
  }
  return counts;
}

/** Pure: problems between what we wanted and what iptables-save shows afterwards. */
export function verify(desired: FamilyRules, after: string): string[] {
  const problems: string[] = [];
  const state: ExistingState = parseExisting(after);
  for (const table of ["nat", "filter"] as const) {
    const want = desired.tables.find((t) => t.table === table);
    const jumps = state.jumps[table] ?? [];
    const counts = chainRuleCounts(after, table);
    if (!want) {
      if (jumps.length) problems.push(`${table}: unexpected OUTPUT jumps remain: ${jumps.join(" | ")}`);
      for (const chain of state.chains[table] ?? []) problems.push(`${table}: chain ${chain} remains`);
      continue;
    }
    if (jumps.length !== 1)
      problems.push(`${table}: expected exactly one OUTPUT jump into our chains, found ${jumps.length}`);
    for (const chain of want.chains) {
      const expected = want.rules.filter((r) => r.startsWith(`-A ${chain} `)).length;
      const found = counts.get(chain) ?? 0;
      if (found !== expected)
        problems.push(`${table}: chain ${chain} has ${found} rules, expected ${expected}`);
    }
  }
  return problems;
}

export interface ApplyResult {
  family: Family;
  restoreInput: string;
  rulesInstalled: number;
}

/** Loads `desired` for one family atomically (per table) and checks it took. */
export async function applyFamily(
  run: Runner,
  backend: BackendName,
  desired: FamilyRules,
): Promise<ApplyResult> {
  const tools = toolsFor(backend, desired.family);
  const existing = parseExisting(await save(run, tools));
  const input = renderRestore(desired, existing);
  if (input) {
    const r = await run(tools.restore, ["--noflush", "--wait", "10"], input);
    if (r.code !== 0)
      throw new Error(
        `${tools.restore} --noflush failed (exit ${r.code}): ${r.stderr.trim()}\n--- input ---\n${input}`,
      );
  }
  const problems = verify(desired, await save(run, tools));
  if (problems.length) throw new Error(`rules not in force after ${tools.restore}: ${problems.join("; ")}`);
  return {
    family: desired.family,
    restoreInput: input,
    rulesInstalled: desired.tables.reduce((n, t) => n + t.rules.length + 1, 0),
  };
}

export const OWN_CHAINS = [CHAIN_OUTPUT, CHAIN_REDIRECT, CHAIN_NON_TCP] as const;
