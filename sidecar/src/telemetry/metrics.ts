// Prometheus metrics of one sidecar. Label sets are small and bounded (connection names come from
// the policy, never from traffic) so cardinality stays flat whatever the agent sends.

import { HotCounter, HotHistogram } from "./hot-metrics.ts";
import { stdoutBacklogBytes } from "./line-output.ts";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "./prom.ts";

const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics !== false)
    collectDefaultMetrics({ register: registry, prefix: "airlock_process_" });
  const m = {
    registry,
    // Updated per proxied operation: cell-based (hot-metrics.ts).
    operations: new HotCounter({
      name: "airlock_operations_total",
      help: "Operations seen by the sidecar, by connection, protocol and decision (allow, deny, requireApproval).",
      labelNames: ["connection", "protocol", "decision"] as const,
      registers: [registry],
    }),
    decisionSeconds: new HotHistogram({
      name: "airlock_decision_duration_seconds",
      help: "Time to classify an operation and evaluate the policy.",
      labelNames: ["protocol"] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    upstreamSeconds: new HotHistogram({
      name: "airlock_upstream_duration_seconds",
      help: "Upstream latency of forwarded operations (to the first response byte for HTTP).",
      labelNames: ["connection", "protocol"] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    masked: new HotCounter({
      name: "airlock_masked_values_total",
      help: "Values masked before reaching the agent (or the upstream, for request masking), by detector.",
      labelNames: ["connection", "detector"] as const,
      registers: [registry],
    }),
    auditBacklog: new Gauge({
      name: "airlock_audit_backlog_bytes",
      help: "Log and audit bytes queued behind a full stdout (the log collector is behind); past 64 MiB the data path waits.",
      registers: [registry],
      collect() {
        this.set(stdoutBacklogBytes());
      },
    }),
    sessions: new Gauge({
      name: "airlock_active_sessions",
      help: "Open agent sessions (connections) through the sidecar.",
      labelNames: ["connection", "protocol"] as const,
      registers: [registry],
    }),
    tlsInterceptRefusals: new Counter({
      name: "airlock_tls_intercept_refusals_total",
      help: "Intercepted HTTPS handshakes the agent did not complete, by connection and reason (tls_untrusted_by_client: its trust store lacks the Airlock bundle; sni_mismatch; no_sni; handshake_failed).",
      labelNames: ["connection", "reason"] as const,
      registers: [registry],
    }),
    unknownDestinations: new Counter({
      name: "airlock_unknown_destination_total",
      help: "Connections refused because no policy connection matches their destination.",
      registers: [registry],
    }),
    policyReloads: new Counter({
      name: "airlock_policy_reloads_total",
      help: "Policy (re)loads by result: success, or error (the last good policy stays in force).",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    policyProblems: new Gauge({
      name: "airlock_policy_problems",
      help: "Problems in the current set of policies; policies with problems are not enforced as allowed.",
      registers: [registry],
    }),
    policyLoaded: new Gauge({
      name: "airlock_policy_last_success_timestamp_seconds",
      help: "When a policy set was last loaded successfully (stale sidecar alert).",
      registers: [registry],
    }),
    policySourceUp: new Gauge({
      name: "airlock_policy_source_up",
      help: "1 while the policy source (Kubernetes watch or files) is connected and current; 0 while the last good policy is served stale.",
      registers: [registry],
    }),
    policyCount: new Gauge({
      name: "airlock_policies",
      help: "Policies in force.",
      registers: [registry],
    }),
    mcpRequests: new Counter({
      name: "airlock_mcp_requests_total",
      help: "MCP JSON-RPC requests judged, by connection, method (known MCP methods, else other), tool (tool names the policy spells out, else other; empty for other methods) and decision.",
      labelNames: ["connection", "method", "tool", "decision"] as const,
      registers: [registry],
    }),
    mcpServerRequests: new Counter({
      name: "airlock_mcp_server_requests_total",
      help: "Requests an MCP server sent to the agent (sampling, elicitation, roots), by connection, method (known MCP methods, else other) and decision (allow: relayed; deny: refused, the server answered with an error).",
      labelNames: ["connection", "method", "decision"] as const,
      registers: [registry],
    }),
    mcpToolPinRefusals: new Counter({
      name: "airlock_mcp_tool_pin_refusals_total",
      help: "MCP tool definitions that differ from their pin, by connection, tool (names the policy spells out, else other), pin (policy, firstSight, full: past the first-sight bound) and where (list: removed from tools/list; call: tools/call refused).",
      labelNames: ["connection", "tool", "pin", "where"] as const,
      registers: [registry],
    }),
    upstreamErrors: new Counter({
      name: "airlock_upstream_errors_total",
      help: "Upstream failures (connect, TLS, protocol) by connection.",
      labelNames: ["connection", "protocol", "reason"] as const,
      registers: [registry],
    }),
    credentialsIssued: new Counter({
      name: "airlock_credentials_issued_total",
      help: "Upstream credentials acquired for agent sessions, by connection, source (secretRef, vault, vault-approved: for one approved PostgreSQL statement) and result (ok, unreachable, refused, missing, fallback).",
      labelNames: ["connection", "source", "result"] as const,
      registers: [registry],
    }),
    credentialLeases: new Gauge({
      name: "airlock_credential_leases",
      help: "Vault leases the sidecar holds (one per agent session on a Vault-credential connection).",
      labelNames: ["connection"] as const,
      registers: [registry],
    }),
    credentialRenewals: new Counter({
      name: "airlock_credential_renewals_total",
      help: "Renewals of Vault leases and tokens held for agent sessions, by result (ok, failed).",
      labelNames: ["connection", "result"] as const,
      registers: [registry],
    }),
    credentialRevocations: new Counter({
      name: "airlock_credential_revocations_total",
      help: "Revocations of Vault leases at session end or drain, by result: revoked, retried (one per retry), failed (every attempt failed; the lease TTL ends it).",
      labelNames: ["connection", "result"] as const,
      registers: [registry],
    }),
    podCaRotations: new Counter({
      name: "airlock_pod_ca_rotations_total",
      help: "Pod CA generations put in force, by reason (start, hosts: the HTTPS host set changed, schedule: renewal ahead of expiry) and result (ok, failed).",
      labelNames: ["reason", "result"] as const,
      registers: [registry],
    }),
    podCaNotAfter: new Gauge({
      name: "airlock_pod_ca_expiry_timestamp_seconds",
      help: "notAfter of the pod CA signing leaves now (0: none); renewal is due at 2/3 of its lifetime, so less than a quarter of it left means rotation is stuck.",
      registers: [registry],
    }),
    trustBundleCas: new Gauge({
      name: "airlock_trust_bundle_pod_cas",
      help: "Pod CA certificates in the trust bundle: the one in force, its published successor, and retired ones until their leaves expire.",
      registers: [registry],
    }),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;
