// Test support for the PostgreSQL guard: a SidecarContext over an in-memory audit sink and a real
// secret directory, the guard behind a loopback listener, and a policy builder for a harness
// PostgreSQL. Also used by the bench (test/bench/postgres.ts).

import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import {
  type CredentialSourcesOptions,
  createCredentialSources,
} from "../../sidecar/src/credentials/index.ts";
import type { OidcVerifier } from "../../sidecar/src/identity/index.ts";
import type { CompiledConnection } from "../../sidecar/src/policy/compile.ts";
import {
  type ApprovalGate,
  createPostgresGuard,
  type PostgresGuard,
  type PostgresGuardOptions,
} from "../../sidecar/src/protocols/postgres/index.ts";
import type { SidecarContext } from "../../sidecar/src/runtime/context.ts";
import { createPolicyStore, type PolicyStore } from "../../sidecar/src/runtime/policy-store.ts";
import { createSecretStore } from "../../sidecar/src/runtime/secrets.ts";
import { createMetrics, type Metrics } from "../../sidecar/src/telemetry/metrics.ts";
import { WORKLOAD } from "../harness/context.ts";
import type { PgUser, PostgresServer } from "../harness/postgres.ts";

export { WORKLOAD };

type Spec = AgentAccessPolicy["spec"];

export interface PolicyOptions {
  rules?: Spec["rules"];
  masking?: Spec["masking"];
  tls?: NonNullable<Spec["connections"][number]["tls"]>;
  database?: string;
  identity?: Spec["identity"];
  /** Host name to put in the policy target (default 127.0.0.1). */
  host?: string;
  credentials?: boolean;
}

/** One postgres connection `db` to the harness server with the sidecar-held credential `pg-cred`. */
export function pgPolicy(pg: PostgresServer, opts: PolicyOptions = {}): AgentAccessPolicy {
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "pg-test", namespace: "agents" },
    spec: {
      ...(opts.identity ? { identity: opts.identity } : {}),
      connections: [
        {
          name: "db",
          protocol: "postgres",
          target: { host: opts.host ?? "127.0.0.1", port: pg.port },
          tls: opts.tls ?? { mode: "disable" },
          ...(opts.database ? { database: opts.database } : {}),
          ...(opts.credentials === false
            ? {}
            : {
                credentials: {
                  secretRef: { name: "pg-cred" },
                  postgres: { usernameKey: "username", passwordKey: "password" },
                },
              }),
        },
      ],
      rules: opts.rules ?? [{ name: "all", action: "allow" }],
      ...(opts.masking ? { masking: opts.masking } : {}),
    },
  };
}

export interface GuardedPostgres {
  port: number;
  host: "127.0.0.1";
  ctx: SidecarContext;
  handler: PostgresGuard;
  audit: AuditEvent[];
  metrics: Metrics;
  policies: PolicyStore;
  /** Writes the credential the sidecar uses (the Secret `pg-cred`). */
  setCredential(user: PgUser): Promise<void>;
  /** Writes another secret file (e.g. a CA bundle). */
  setSecret(name: string, key: string, value: string): Promise<void>;
  /** A libpq URL for the agent: no password (the sidecar holds the credential). */
  url(opts?: { database?: string; user?: string; password?: string; params?: string }): string;
  connection(): CompiledConnection;
  close(): Promise<void>;
}

export async function startGuard(
  policy: AgentAccessPolicy,
  opts: {
    credential?: PgUser;
    handler?: PostgresGuardOptions;
    approvals?: ApprovalGate;
    verifier?: OidcVerifier;
    logLevel?: string;
    audit?: (e: AuditEvent) => void;
    /** Discard audit events instead of keeping them (bench). */
    keepAudit?: boolean;
    /** Vault settings of the credential sources (token directory, timeouts, revocation retries). */
    credentials?: Omit<CredentialSourcesOptions, "secrets" | "logger" | "metrics">;
  } = {},
): Promise<GuardedPostgres> {
  const secretsDir = await mkdtemp(join(tmpdir(), "airlock-pg-secrets-"));
  const logger = pino({ level: opts.logLevel ?? process.env.AIRLOCK_TEST_LOG ?? "silent", base: undefined });
  const metrics = createMetrics({ defaultMetrics: false });
  const policies = createPolicyStore({ logger, metrics });
  const result = policies.update([policy]);
  if (result.problems.length) throw new Error(`test policy problems: ${JSON.stringify(result.problems)}`);
  const events: AuditEvent[] = [];
  const keep = opts.keepAudit !== false;
  const secrets = createSecretStore(secretsDir);
  const ctx: SidecarContext = {
    logger,
    audit: {
      emit(e) {
        if (keep) events.push(e);
        opts.audit?.(e);
      },
    },
    metrics,
    workload: WORKLOAD,
    policies,
    secrets,
    credentials: createCredentialSources({ secrets, logger, metrics, ...opts.credentials }),
    hashKey: randomBytes(32),
    verifierFor: () => opts.verifier,
  };
  const setSecret = async (name: string, key: string, value: string) => {
    await mkdir(join(secretsDir, name), { recursive: true });
    await writeFile(join(secretsDir, name, key), value);
  };
  const setCredential = async (user: PgUser) => {
    await setSecret("pg-cred", "username", user.user);
    await setSecret("pg-cred", "password", `${user.password}\n`);
  };
  if (opts.credential) await setCredential(opts.credential);
  const handler = createPostgresGuard(ctx, {
    ...(opts.approvals ? { approvals: opts.approvals } : {}),
    ...opts.handler,
  });
  await handler.ready;
  const connection = () => {
    const c = policies.current().connections.get("db");
    if (!c) throw new Error("policy has no connection db");
    return c;
  };
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    handler.accept(socket, connection(), { via: "listener" });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    port,
    host: "127.0.0.1",
    ctx,
    handler,
    audit: events,
    metrics,
    policies,
    setCredential,
    setSecret,
    url(u = {}) {
      const auth = `${encodeURIComponent(u.user ?? "agent")}${u.password !== undefined ? `:${encodeURIComponent(u.password)}` : ""}`;
      return `postgresql://${auth}@127.0.0.1:${port}/${u.database ?? "airlock"}?sslmode=disable${u.params ? `&${u.params}` : ""}`;
    },
    connection,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
      await rm(secretsDir, { recursive: true, force: true });
    },
  };
}
