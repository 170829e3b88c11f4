// Decisions for SSH operations on top of the policy engine. Exec commands: every simple command of a chain is
// judged, its normalized form must be allowed, and a deny or requireApproval rule that matches one
// of its inner views (wrapped commands, base names) also applies. The strictest outcome wins:
// deny, then requireApproval, then allow. See shell/command.ts for what is refused before any rule.
// Forwarding requests the sidecar never bridges (X11, the agent's SSH agent) are refused here too.
import type { Decision, Operation } from "../policy/types.ts";
import { analyzeCommand, type CommandAnalysis } from "../shell/command.ts";
import { refusal } from "./refusals.ts";

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
    return { analysis, command: raw, decision: refusal("sshCommandUnjudgeable", policy, analysis.reason) };
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

/** X11 forwarding: never allowed (it would open the agent's display to the upstream). */
export function decideX11(policy: string): Decision {
  return refusal("sshX11", policy);
}

/**
 * SSH agent forwarding: never bridged (it would hand the agent's keys to the upstream). A deny
 * rule that names it keeps its own wording; otherwise the refusal says why.
 */
export function decideAgentForwarding(evaluate: Evaluate): Decision {
  const d = evaluate({ kind: "ssh-forward", target: "agent" });
  if (d.action === "deny") return d;
  return {
    ...d,
    action: "deny",
    reason: `agent forwarding is not supported by the sidecar (it would hand the agent's keys to the upstream); ${d.reason}`,
  };
}

/** A connection arriving on an allowed remote forward: relayed under that forward's decision. */
export function decideInboundForward(policy: string, forward: string): Decision {
  return { action: "allow", policy, reason: `inbound connection on ${forward}` };
}
