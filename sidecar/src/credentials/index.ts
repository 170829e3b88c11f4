// The credential source of each policy connection: Vault when credentials.vault is set (with the
// Secret as fallback only when the policy says `fallback: secretRef`), else the Secret. HTTP and
// MCP connections read Vault once per refresh period (refreshing-source.ts).
import type { Logger } from "pino";
import type { Connection } from "../../../api/src/index.ts";
import type { SecretStore } from "../runtime/secrets.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { refreshingSource } from "./refreshing-source.ts";
import { secretCredentialSource } from "./secret-source.ts";
import { CredentialError, type CredentialSource } from "./source.ts";
import { LeaseSet, type RevokeRetry, vaultCredentialSource } from "./vault-source.ts";

export type {
  AcquireRequest,
  CredentialAudit,
  CredentialFailure,
  CredentialSource,
  HeldCredential,
} from "./source.ts";
export { CredentialError } from "./source.ts";

export const DEFAULT_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
/** credentials.vault.refreshSeconds when absent (the CRD's default). */
export const DEFAULT_REFRESH_SECONDS = 300;

export interface CredentialSources {
  /** The connection's source, or undefined when it holds no credential (the agent's own is used). */
  forConnection(spec: Connection): CredentialSource | undefined;
  /**
   * PostgreSQL: the source of the credential a statement a human approved runs under
   * (credentials.vault.approvedPath), or undefined when approved statements run in the session.
   * Never falls back to a Secret: a missing elevated credential refuses the statement.
   */
  forApproved(spec: Connection): CredentialSource | undefined;
  /** Vault leases held right now. */
  readonly held: number;
  /** Revokes every lease still held and waits for revocations in flight (sidecar drain). */
  drain(): Promise<void>;
}

export interface CredentialSourcesOptions {
  secrets: SecretStore;
  logger: Logger;
  metrics: Metrics;
  /** Directory of the sidecar's projected service-account tokens (Vault's Kubernetes login). */
  tokenDir?: string;
  vaultTimeoutMs?: number;
  revokeRetry?: RevokeRetry;
}

export function createCredentialSources(opts: CredentialSourcesOptions): CredentialSources {
  const leases = new LeaseSet();
  const vaultDeps = {
    logger: opts.logger,
    metrics: opts.metrics,
    secrets: opts.secrets,
    tokenDir: opts.tokenDir ?? DEFAULT_TOKEN_DIR,
    leases,
    ...(opts.vaultTimeoutMs !== undefined ? { timeoutMs: opts.vaultTimeoutMs } : {}),
    ...(opts.revokeRetry ? { revokeRetry: opts.revokeRetry } : {}),
  };
  const issued = opts.metrics.credentialsIssued;
  /** A Vault source whose every acquisition is counted (as `label`), falling back when the policy says so. */
  const counted = (
    connection: string,
    vault: CredentialSource,
    label: "vault" | "vault-approved",
    fallback?: CredentialSource,
  ): CredentialSource => ({
    kind: "vault",
    async acquire(req) {
      try {
        const held = await vault.acquire(req);
        issued.inc({ connection, source: label, result: "ok" });
        return held;
      } catch (err) {
        const reason = err instanceof CredentialError ? err.reason : "unreachable";
        issued.inc({ connection, source: label, result: reason });
        if (!fallback) throw err;
        opts.logger.warn(
          { session: req.session, connection, err: (err as Error).message },
          "vault: no credential; using the policy's fallback secretRef",
        );
        const held = await fallback.acquire(req);
        issued.inc({ connection, source: "secretRef", result: "fallback" });
        return held;
      }
    },
  });
  // Per connection spec object: a policy update brings new objects, and with them new sources.
  const cache = new WeakMap<Connection, CredentialSource | undefined>();
  const build = (spec: Connection): CredentialSource | undefined => {
    const creds = spec.credentials;
    if (!creds) return undefined;
    const secret = creds.secretRef ? secretCredentialSource(opts.secrets, creds.secretRef.name) : undefined;
    if (!creds.vault) {
      if (!secret) throw new Error(`connection ${spec.name}: credentials need secretRef or vault`);
      return secret;
    }
    const fallback = creds.vault.fallback === "secretRef" ? secret : undefined;
    const source = counted(
      spec.name,
      vaultCredentialSource(spec.name, creds.vault, vaultDeps),
      "vault",
      fallback,
    );
    // PostgreSQL holds a credential per agent session and SSH has each session's key signed; HTTP
    // and MCP send one with every request, read from Vault once per refresh period.
    if (spec.protocol === "postgres" || spec.protocol === "ssh") return source;
    return refreshingSource(source, {
      connection: spec.name,
      refreshMs: (creds.vault.refreshSeconds ?? DEFAULT_REFRESH_SECONDS) * 1000,
      logger: opts.logger,
    });
  };
  const approvedCache = new WeakMap<Connection, CredentialSource | undefined>();
  const buildApproved = (spec: Connection): CredentialSource | undefined => {
    const vault = spec.credentials?.vault;
    if (!vault?.approvedPath || spec.protocol !== "postgres") return undefined;
    // Never a fallback: a missing elevated credential refuses the statement.
    const { fallback: _none, ...rest } = vault;
    const minted = vaultCredentialSource(spec.name, { ...rest, path: vault.approvedPath }, vaultDeps);
    return counted(spec.name, minted, "vault-approved");
  };
  return {
    forConnection(spec) {
      if (cache.has(spec)) return cache.get(spec);
      const source = build(spec);
      cache.set(spec, source);
      return source;
    },
    forApproved(spec) {
      if (approvedCache.has(spec)) return approvedCache.get(spec);
      const source = buildApproved(spec);
      approvedCache.set(spec, source);
      return source;
    },
    get held() {
      return leases.size;
    },
    drain: () => leases.drain(),
  };
}
