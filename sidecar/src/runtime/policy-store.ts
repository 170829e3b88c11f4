// Holds the PolicySet in force. Updates compile off to the side and swap in one assignment, so a
// handler sees either the old set or the new one, never a mix. A set whose every policy failed
// does not replace a working one: the last good set stays (fail closed, never open).
import type { Logger } from "pino";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { compilePolicies, type PolicySet } from "../policy/compile.ts";
import type { PolicyProblem } from "../policy/types.ts";
import type { Metrics } from "../telemetry/metrics.ts";

export interface PolicyStore {
  current(): PolicySet;
  /** Generation of the set in force; bumps on every swap (caches key on it). */
  generation(): number;
  update(policies: readonly AgentAccessPolicy[]): { accepted: boolean; problems: PolicyProblem[] };
  onChange(listener: (set: PolicySet) => void): () => void;
}

export function createPolicyStore(deps: { logger: Logger; metrics?: Metrics }): PolicyStore {
  let set = compilePolicies([]).set;
  let gen = 0;
  const listeners = new Set<(s: PolicySet) => void>();
  return {
    current: () => set,
    generation: () => gen,
    update(policies) {
      const { set: next, problems } = compilePolicies(policies);
      deps.metrics?.policyProblems.set(problems.length);
      for (const p of problems)
        deps.logger.warn({ policy: p.policy, path: p.path }, `policy problem: ${p.message}`);
      // Every policy was broken: keep what we had rather than dropping to an empty set that
      // would deny everything the previous version allowed — unless there is nothing at all.
      if (policies.length > 0 && next.policies.length === 0 && set.policies.length > 0) {
        deps.metrics?.policyReloads.inc({ result: "error" });
        deps.logger.error(
          { problems: problems.length },
          "no valid policy in the update; keeping the last good policy set",
        );
        return { accepted: false, problems };
      }
      set = next;
      gen++;
      deps.metrics?.policyReloads.inc({ result: problems.length ? "error" : "success" });
      if (!problems.length) deps.metrics?.policyLoaded.setToCurrentTime();
      deps.metrics?.policyCount.set(next.policies.length);
      deps.logger.info({ policies: next.policies, generation: gen }, "policy set in force");
      for (const { target, connections } of next.sharedTargets)
        deps.logger.warn(
          { target, connections },
          `connections ${connections.join(", ")} share target ${target}: traffic captured for it is refused; they are reachable only through their listeners`,
        );
      for (const l of listeners) l(next);
      return { accepted: true, problems };
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
