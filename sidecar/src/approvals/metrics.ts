// Approval metrics, registered on the sidecar's registry (idempotently: a re-created gate, e.g. in
// tests or after a restart in-process, reuses them).
import type { Registry } from "prom-client";
import { Counter, Gauge, Histogram } from "../telemetry/prom.ts";

export const APPROVAL_OUTCOMES = ["approved", "denied", "expired", "unavailable"] as const;
export type ApprovalMetricOutcome = (typeof APPROVAL_OUTCOMES)[number];

export interface ApprovalMetrics {
  pending: Gauge;
  decisionSeconds: Histogram;
  decisions: Counter<"outcome" | "group">;
  grantsUsed: Counter;
}

/**
 * The `group` label: the rule's approver groups, sorted and comma-joined ("users" when the rule
 * names approvers by user only). Bounded by the policies, never by traffic.
 */
export function approverGroupLabel(approvers: {
  groups?: readonly string[];
  users?: readonly string[];
}): string {
  const groups = [...(approvers.groups ?? [])].sort();
  return groups.length ? groups.join(",").slice(0, 128) : "users";
}

function reuse<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function createApprovalMetrics(registry: Registry): ApprovalMetrics {
  return {
    pending: reuse(
      registry,
      "airlock_approval_requests_pending",
      () =>
        new Gauge({
          name: "airlock_approval_requests_pending",
          help: "AccessRequests of this sidecar waiting for a decision.",
          registers: [registry],
        }),
    ),
    decisionSeconds: reuse(
      registry,
      "airlock_approval_decision_seconds",
      () =>
        new Histogram({
          name: "airlock_approval_decision_seconds",
          help: "Time from creating an AccessRequest to its decision (approved, denied or expired).",
          buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400],
          registers: [registry],
        }),
    ),
    decisions: reuse(
      registry,
      "airlock_approval_decisions_total",
      () =>
        new Counter({
          name: "airlock_approval_decisions_total",
          help: "AccessRequest decisions by outcome (approved, denied, expired, or unavailable: the held operation failed closed because the approval service could not be reached) and the rule's approver groups.",
          labelNames: ["outcome", "group"] as const,
          registers: [registry],
        }),
    ),
    grantsUsed: reuse(
      registry,
      "airlock_approval_grant_uses_total",
      () =>
        new Counter({
          name: "airlock_approval_grant_uses_total",
          help: "Operations that passed on an earlier approval's grant without a new request.",
          registers: [registry],
        }),
    ),
  };
}
