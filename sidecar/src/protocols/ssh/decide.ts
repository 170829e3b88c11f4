// Decisions for SSH exec commands on top of the policy engine: every simple command of a chain is
// judged, its normalized form must be allowed, and a deny or requireApproval rule that matches one
// of its inner views (wrapped commands, base names) also applies. The strictest outcome wins:
// deny, then requireApproval, then allow. See command.ts for what is refused before any rule.
import type { Decision, Operation } from "../../policy/types.ts";
import { analyzeCommand, type CommandAnalysis } from "./command.ts";

export type Evaluate = (op: Operation) => Decision;

const RANK: Record<Decision["action"], number> = { allow: 0, requireApproval: 1, deny: 2 };

export interface ExecDecision {
  decision: Decision;
  analysis: CommandAnalysis;
  /** The normalized command line (what audit events and approvers see), or the raw one when refused. */
  command: string;
}

export function decideExec(evaluate: Evaluate, raw: string, policy?: string): ExecDecision {
  const analysis = analyzeCommand(raw);
  if (!analysis.ok) {
    return {
      analysis,
      command: raw,
      decision: {
        action: "deny",
        ...(policy !== undefined ? { policy } : {}),
        reason: `refused before policy evaluation: ${analysis.reason}`,
      },
    };
  }
  let worst: Decision | undefined;
  const allowedBy = new Set<string>();
  const several = analysis.parts.length > 1;
  for (const part of analysis.parts) {
    let d = evaluate({ kind: "ssh-exec", command: part.command });
    if (several) d = { ...d, reason: `${d.reason} (for "${part.command}")` };
    for (const view of part.inner) {
      const v = evaluate({ kind: "ssh-exec", command: view });
      // Inner views only ever make a decision stricter, and only through a rule that names them.
      // An explicit rule also replaces a default deny of the same strictness (better message).
      if (v.rule === undefined || v.action === "allow") continue;
      if (RANK[v.action] < RANK[d.action] || (RANK[v.action] === RANK[d.action] && d.rule !== undefined))
        continue;
      d = { ...v, reason: `${v.reason} (wrapped command "${view}" in "${part.command}")` };
    }
    if (!worst || RANK[d.action] > RANK[worst.action]) worst = d;
    if (d.action === "allow" && d.rule !== undefined) allowedBy.add(d.rule);
    if (worst.action === "deny") break;
  }
  let decision = worst as Decision;
  if (several && decision.action === "allow") {
    const rules = [...allowedBy];
    decision = {
      ...decision,
      reason: `allowed by rule${rules.length > 1 ? "s" : ""} ${rules.join(", ")} (each of the ${analysis.parts.length} commands)`,
    };
  }
  return { analysis, command: analysis.command, decision };
}
