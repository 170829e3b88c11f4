// Test support for the transparent listener (unit tests and the network-namespace sidecar in
// test/netns): a SidecarContext over in-memory audit and a quiet logger, and a raw TCP "protocol
// handler" that splices a captured socket to the connection's configured target. The real HTTP,
// PostgreSQL and SSH handlers speak their protocols; this one exists so that capture can be tested
// on its own, and is not a production handler (the policy has no raw-TCP protocol).
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { pino } from "pino";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import type { AuditEvent } from "../audit/events.ts";
import { createMemoryAuditSink } from "../audit/sink.ts";
import type { WorkloadIdentity } from "../identity/index.ts";
import type { CompiledConnection } from "../policy/compile.ts";
import type { AcceptInfo, ConnectionHandler } from "../protocols/handler.ts";
import type { SidecarContext } from "../runtime/context.ts";
import { createPolicyStore } from "../runtime/policy-store.ts";
import { createSecretStore } from "../runtime/secrets.ts";
import { createMetrics } from "../telemetry/metrics.ts";

export const TEST_WORKLOAD: WorkloadIdentity = {
  namespace: "agents",
  podName: "agent-0",
  serviceAccount: "agent",
  subject: "system:serviceaccount:agents:agent",
  labels: { app: "agent" },
};

export function testContext(
  policies: readonly AgentAccessPolicy[],
  opts: { logLevel?: string; onAudit?: (e: AuditEvent) => void } = {},
) {
  const logger = pino({ level: opts.logLevel ?? "silent", base: undefined });
  const memory = createMemoryAuditSink();
  const metrics = createMetrics({ defaultMetrics: false });
  const store = createPolicyStore({ logger, metrics });
  const result = store.update(policies);
  if (result.problems.length) throw new Error(`test policy problems: ${JSON.stringify(result.problems)}`);
  const ctx: SidecarContext = {
    logger,
    audit: {
      emit(e) {
        memory.emit(e);
        opts.onAudit?.(e);
      },
    },
    metrics,
    workload: TEST_WORKLOAD,
    policies: store,
    secrets: createSecretStore("/nonexistent"),
    hashKey: randomBytes(32),
    verifierFor: () => undefined,
  };
  return { ctx, audit: memory.events, metrics };
}

/** A policy with one connection per entry; `rules` default to allowing everything. */
export function testPolicy(
  name: string,
  connections: AgentAccessPolicy["spec"]["connections"],
  rules: AgentAccessPolicy["spec"]["rules"] = [{ name: "all", action: "allow" }],
): AgentAccessPolicy {
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name, namespace: "agents" },
    spec: { connections, rules },
  };
}

/** Splices the captured socket to the connection's configured target (never the dialled address). */
export function tcpForwarder(ctx: SidecarContext): ConnectionHandler & { accepted: AcceptInfo[] } {
  const open = new Set<Socket>();
  const accepted: AcceptInfo[] = [];
  return {
    accepted,
    accept(socket: Socket, connection: CompiledConnection, info: AcceptInfo) {
      accepted.push(info);
      const { host, port } = connection.spec.target;
      const started = performance.now();
      const upstream = connect({ host, port });
      open.add(socket);
      const done = () => {
        open.delete(socket);
        socket.destroy();
        upstream.destroy();
      };
      socket.on("error", done);
      socket.on("close", done);
      upstream.on("error", (err) => {
        ctx.logger.warn({ err: err.message, connection: connection.spec.name }, "upstream failed");
        socket.resetAndDestroy();
        done();
      });
      upstream.on("close", done);
      upstream.once("connect", () => {
        ctx.audit.emit({
          session: randomBytes(8).toString("hex"),
          connection: connection.spec.name,
          protocol: "tcp",
          identity: { serviceAccount: ctx.workload.subject },
          operation: { kind: "tcp", destination: `${host}:${port}` },
          decision: { action: "allow", policy: connection.policy, reason: "test forwarder" },
          durationMs: performance.now() - started,
        });
        if (info.head?.length) upstream.write(info.head);
        socket.pipe(upstream);
        upstream.pipe(socket);
      });
    },
    async drain() {
      for (const s of open) s.end();
    },
  };
}
