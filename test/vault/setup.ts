// The Vault setup the README describes, against real parts: a harness PostgreSQL, vault-dev, and
// the shared kube-apiserver (Vault's Kubernetes auth method calls its TokenReview API).
//
// PostgreSQL: `vault_admin` (LOGIN CREATEROLE, owner of `accounts`) is the user Vault's database
// engine connects as. Vault: database engine at database/, roles `ro` (lease TTL 1 h: anything
// gone sooner was revoked), `short` (4 s: gone unless renewed), `capped` (2 s renewals up to a
// 6 s max TTL), `other` (no policy grants it);
// Kubernetes auth at kubernetes/, roles `airlock` (token TTL 1 h) and `airlock-short` (4 s),
// bound to the service account `agent` of a fresh namespace and the audience AUDIENCE; policy
// `airlock-pg` grants creds/ro, creds/short and lease revocation.
import { randomBytes } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentAccessPolicy, type Connection, type Rule, vaultTokenFile } from "../../api/src/index.ts";
import { render } from "../chart/helm.ts";
import type { Envtest } from "../envtest/connect.ts";
import type { PostgresServer } from "../harness/postgres.ts";
import type { VaultServer } from "../harness/vault.ts";
import { pgPolicy } from "../postgres/support.ts";

export const AUDIENCE = "vault.airlock.test";

export interface VaultFixture {
  namespace: string;
  /** Directory holding the agent's projected token, named as the injector names it. */
  tokenDir: string;
  /** The service-account token written there (never to appear in a log). */
  agentJwt: string;
}

type VaultCreds = NonNullable<NonNullable<Connection["credentials"]>["vault"]>;
export type VaultSpec = Partial<VaultCreds> & { auth?: Partial<VaultCreds["auth"]> };

/**
 * The PostgreSQL harness policy (connection `db` to `server`) with its credential from Vault:
 * database/creds/ro and Kubernetes auth as role airlock for AUDIENCE unless `spec` says otherwise;
 * with `secretRef`, also the sidecar-held Secret pg-cred.
 */
export function vaultPgPolicy(
  server: PostgresServer,
  vault: VaultServer,
  rules: Rule[],
  spec: VaultSpec = {},
  secretRef = false,
): AgentAccessPolicy {
  const p = pgPolicy(server, { credentials: false, rules });
  const conn = p.spec.connections[0];
  if (!conn) throw new Error("no connection");
  conn.credentials = {
    vault: {
      address: vault.address,
      path: "database/creds/ro",
      ...spec,
      auth: { role: "airlock", audience: AUDIENCE, ...spec.auth },
    },
    ...(secretRef ? { secretRef: { name: "pg-cred" } } : {}),
  };
  return p;
}

/** The guard's credential sources: Vault logins with the fixture's token, quick revocation retries. */
export const vaultSources = (fx: VaultFixture) => ({
  tokenDir: fx.tokenDir,
  revokeRetry: { attempts: 3, firstDelayMs: 50 },
});

/** Roles Vault has minted (their names start with v-), as the superuser sees pg_roles. */
export async function vaultRoles(pg: PostgresServer): Promise<string[]> {
  const out = await pg.sql("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%' ORDER BY 1");
  return out.split("\n").filter(Boolean);
}

async function kubectl(k8s: Envtest, args: string[], stdin?: string): Promise<string> {
  const r = await k8s.kubectl(args, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

export async function setUpVault(
  vault: VaultServer,
  pg: PostgresServer,
  k8s: Envtest,
): Promise<VaultFixture> {
  const adminPassword = randomBytes(12).toString("hex");
  await pg.sql(`
    CREATE ROLE vault_admin LOGIN CREATEROLE PASSWORD '${adminPassword}';
    CREATE TABLE accounts (id int PRIMARY KEY, owner text);
    INSERT INTO accounts VALUES (1, 'ann'), (2, 'bob');
    ALTER TABLE accounts OWNER TO vault_admin;
  `);
  await vault.api("POST", "sys/mounts/database", { type: "database" });
  await vault.api("POST", "database/config/pg", {
    plugin_name: "postgresql-database-plugin",
    connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${pg.port}/${pg.database}?sslmode=disable`,
    username: "vault_admin",
    password: adminPassword,
    allowed_roles: ["ro", "short", "other", "capped", "writer"],
  });
  const role = (ttl: string) => ({
    db_name: "pg",
    creation_statements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
      `GRANT SELECT ON accounts TO "{{name}}"`,
    ],
    revocation_statements: [`REVOKE ALL ON accounts FROM "{{name}}"`, `DROP ROLE IF EXISTS "{{name}}"`],
    default_ttl: ttl,
    max_ttl: "2h",
  });
  await vault.api("POST", "database/roles/ro", role("1h"));
  await vault.api("POST", "database/roles/short", role("4s"));
  await vault.api("POST", "database/roles/other", role("1h"));
  // Renewable in 2 s steps up to a 6 s max TTL: a session outlives what Vault will extend.
  await vault.api("POST", "database/roles/capped", { ...role("2s"), max_ttl: "6s" });
  // What approved statements run under (credentials.vault.approvedPath): may change accounts.
  await vault.api("POST", "database/roles/writer", {
    ...role("1h"),
    creation_statements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
      `GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO "{{name}}"`,
    ],
  });
  await vault.api("PUT", "sys/policies/acl/airlock-pg", {
    policy: [
      'path "database/creds/ro" { capabilities = ["read"] }',
      'path "database/creds/short" { capabilities = ["read"] }',
      'path "database/creds/capped" { capabilities = ["read"] }',
      'path "database/creds/writer" { capabilities = ["read"] }',
      'path "sys/leases/revoke" { capabilities = ["update"] }',
    ].join("\n"),
  });

  return setUpKubernetesAuth(vault, k8s, "airlock-pg");
}

/**
 * Vault's Kubernetes auth method against the shared API server: the agent's service account, the
 * chart's token reviewer, roles airlock / airlock-short / someone-else with `policy`, and the
 * agent's projected token where the sidecar reads it.
 */
export async function setUpKubernetesAuth(
  vault: VaultServer,
  k8s: Envtest,
  policy: string,
): Promise<VaultFixture> {
  // Kubernetes: the agent's service account, and a reviewer allowed to call TokenReview.
  const namespace = await k8s.createNamespace("vault");
  await kubectl(
    k8s,
    ["apply", "-f", "-"],
    `
apiVersion: v1
kind: ServiceAccount
metadata: { name: agent, namespace: ${namespace} }
`,
  );
  // Vault reviews tokens as the chart's token reviewer (vault.tokenReviewer), installed from the
  // chart as a user would, in this namespace.
  const reviewer = (
    await render({ namespace, values: { vault: { tokenReviewer: { enabled: true } } } })
  ).filter((o) => o.metadata.labels?.["app.kubernetes.io/component"] === "vault-token-reviewer");
  if (reviewer.length !== 2)
    throw new Error(`the chart rendered ${reviewer.length} token-reviewer objects, not 2`);
  await kubectl(k8s, ["apply", "-f", "-"], reviewer.map((o) => JSON.stringify(o)).join("\n---\n"));
  const reviewerJwt = await kubectl(k8s, [
    "create",
    "token",
    "airlock-vault-reviewer",
    "-n",
    namespace,
    "--duration",
    "2h",
  ]);
  const agentJwt = await kubectl(k8s, [
    "create",
    "token",
    "agent",
    "-n",
    namespace,
    "--audience",
    AUDIENCE,
    "--duration",
    "2h",
  ]);
  await vault.api("POST", "sys/auth/kubernetes", { type: "kubernetes" });
  await vault.api("POST", "auth/kubernetes/config", {
    kubernetes_host: k8s.server,
    kubernetes_ca_cert: k8s.caPem,
    token_reviewer_jwt: reviewerJwt,
    disable_local_ca_jwt: true,
  });
  const k8sRole = (ttl: number) => ({
    bound_service_account_names: ["agent"],
    bound_service_account_namespaces: [namespace],
    audience: AUDIENCE,
    token_policies: [policy],
    token_ttl: ttl,
    token_max_ttl: 7200,
  });
  await vault.api("POST", "auth/kubernetes/role/airlock", k8sRole(3600));
  await vault.api("POST", "auth/kubernetes/role/airlock-short", k8sRole(4));
  await vault.api("POST", "auth/kubernetes/role/someone-else", {
    ...k8sRole(3600),
    bound_service_account_names: ["someone-else"],
  });

  const tokenDir = await mkdtemp(join(tmpdir(), "airlock-sa-token-"));
  await writeFile(join(tokenDir, vaultTokenFile(AUDIENCE)), agentJwt);
  return { namespace, tokenDir, agentJwt };
}
