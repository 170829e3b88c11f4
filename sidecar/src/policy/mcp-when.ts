// `match.mcp.when`: a CEL expression over a tools/call request, e.g.
//   args.env != "prod" && args.limit <= 100
//   !(args.table in ["users", "payments"])
//   args.query.matches("^[Ss][Ee][Ll][Ee][Cc][Tt] ")   (a literal pattern, JavaScript syntax)
// CEL because it is what Kubernetes users already write (ValidatingAdmissionPolicy, CRD
// x-kubernetes-validations) and what other MCP gateways authorize with; it is side-effect free and
// not Turing complete. Evaluator: @marcbachmann/cel-js (no dependencies, declared variables and a
// type checker, so a typo is refused when the policy loads, not discovered on the wire).
//
// Variables: `args` (the request's params.arguments, a map; {} when absent) and `tool` (its name).
// JSON numbers are CEL doubles; comparisons with int literals work (`args.limit > 100`).
// Fail closed: an expression that errors (a missing key, a type mismatch) or is not a bool makes an
// allow rule not match and a deny or requireApproval rule match; a call whose arguments are not an
// object is such an error.
import { createRequire } from "node:module";
import type { Environment, ParseResult } from "@marcbachmann/cel-js";

export const WHEN_VARIABLES = "args (the tools/call arguments, a map) and tool (the tool name, a string)";

// The evaluator loads with the first `when` a policy carries: most sidecars have none and never
// carry it (require of an ES module: the same instance an import would give).
const requireModule = createRequire(import.meta.url);
let celEnvironment: Environment | undefined;
function environment(): Environment {
  if (celEnvironment === undefined) {
    const cel = requireModule("@marcbachmann/cel-js") as typeof import("@marcbachmann/cel-js");
    celEnvironment = new cel.Environment({
      limits: {
        maxAstNodes: 512,
        maxDepth: 24,
        maxListElements: 256,
        maxMapEntries: 64,
        maxCallArguments: 8,
      },
    })
      .registerVariable("args", "map<string, dyn>")
      .registerVariable("tool", "string");
  }
  return celEnvironment;
}

export type WhenOutcome = { ok: true; matched: boolean } | { ok: false; error: string };

export interface CompiledWhen {
  readonly source: string;
  evaluate(tool: string, args: unknown): WhenOutcome;
}

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "";

interface Node {
  op: string;
  args: unknown;
}
const isNode = (v: unknown): v is Node =>
  typeof v === "object" && v !== null && typeof (v as Node).op === "string" && "args" in v;

/**
 * The shapes that make a backtracking engine blow up: a quantified group that holds a quantifier
 * itself (`(a+)+`, `(\w*x)*`, `(a|b+)*`) and backreferences. A heuristic for the usual shapes,
 * not a proof: groups are read innermost first, each replaced by one atom that keeps whether it
 * was quantified inside.
 */
const UNBOUNDED = /(?:^|[^\\])(?:[*+]|\{\d+,)/;
const GROUP = /\((?:[^()\\]|\\.)*\)/;

function backtrackingRisk(pattern: string): string | undefined {
  if (/\\[1-9]|\\k</.test(pattern)) return "has a backreference";
  let text = pattern;
  for (let m = GROUP.exec(text); m; m = GROUP.exec(text)) {
    const body = m[0].slice(1, -1).replace(/^\?(?:[:=!]|<[=!]|<\w+>)?/, "");
    const after = text.slice(m.index + m[0].length);
    const quantifiedInside = UNBOUNDED.test(body);
    if (quantifiedInside && /^(?:[*+]|\{\d+,)/.test(after)) return "nests quantifiers";
    text = `${text.slice(0, m.index)}${quantifiedInside ? "x+" : "x"}${after}`;
  }
  return undefined;
}

/**
 * `matches` with a pattern the agent sends would let it choose a regular expression that
 * backtracks for minutes: only literal patterns are accepted (and they must compile).
 */
function checkPatterns(node: unknown): string | undefined {
  if (Array.isArray(node)) {
    for (const n of node) {
      const p = checkPatterns(n);
      if (p) return p;
    }
    return undefined;
  }
  if (!isNode(node)) return undefined;
  if ((node.op === "rcall" || node.op === "call") && Array.isArray(node.args) && node.args[0] === "matches") {
    const callArgs = node.op === "rcall" ? node.args[2] : node.args[1];
    const pattern = Array.isArray(callArgs) ? callArgs.at(-1) : undefined;
    if (!isNode(pattern) || pattern.op !== "value" || typeof pattern.args !== "string")
      return "matches() takes a string literal pattern (a pattern from the arguments could be made to backtrack)";
    try {
      new RegExp(pattern.args); // as the evaluator compiles it
    } catch (e) {
      return `matches() pattern ${JSON.stringify(pattern.args)} is not a valid regular expression: ${firstLine(e)}`;
    }
    const risky = backtrackingRisk(pattern.args);
    if (risky)
      return `matches() pattern ${JSON.stringify(pattern.args)} ${risky}: on arguments the agent chooses it could backtrack for minutes (JavaScript regular expressions are not linear-time); rewrite it without`;
  }
  return checkPatterns(node.args);
}

/**
 * The reason reaches the audit log and the agent: nothing in it may come from the arguments'
 * values (quoted text, a key looked up by a value), only from the expression.
 */
function safeError(message: string, source: string): string {
  const keyed = /^No such key: (.*)$/.exec(message);
  if (keyed && !source.includes(keyed[1] ?? "")) return "No such key (a key taken from the arguments)";
  // Quoted text and long digit runs (an account or card number used as an index) are left out.
  return message
    .replace(/"[^"]*"|'[^']*'/g, '"…"')
    .replace(/\d{5,}/g, "…")
    .slice(0, 160);
}

/** Compiles an expression, or says why it cannot be used (parse or type error, non-bool result). */
export function compileWhen(source: string): CompiledWhen | { error: string } {
  let parsed: ParseResult;
  try {
    parsed = environment().parse(source);
  } catch (e) {
    return { error: `not a CEL expression: ${firstLine(e)}` };
  }
  let checked: ReturnType<ParseResult["check"]>;
  try {
    checked = parsed.check();
  } catch (e) {
    return { error: `cannot be type-checked: ${firstLine(e)}` };
  }
  if (!checked.valid) return { error: `${firstLine(checked.error)} (variables: ${WHEN_VARIABLES})` };
  if (checked.type !== "bool" && checked.type !== "dyn")
    return { error: `the expression is of type ${checked.type}; it must be a bool` };
  const pattern = checkPatterns(parsed.ast);
  if (pattern) return { error: pattern };
  return {
    source,
    evaluate(tool, args) {
      const value = args === undefined ? {} : args;
      if (typeof value !== "object" || value === null || Array.isArray(value))
        return { ok: false, error: "the arguments are not a JSON object" };
      try {
        const out: unknown = parsed({ args: value, tool });
        if (typeof out !== "boolean")
          return { ok: false, error: `the expression gave ${typeof out}, not a bool` };
        return { ok: true, matched: out };
      } catch (e) {
        return { ok: false, error: safeError(firstLine(e), source) };
      }
    },
  };
}
