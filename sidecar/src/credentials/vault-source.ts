// credentials.vault as a credential source. Per agent session the sidecar logs in with its
// projected service-account token (Kubernetes auth), reads the secrets path (the database
// engine's creds/<role>: a fresh user and its lease), renews token and lease at half their TTL
// while the session lasts, and on release revokes the lease (retried) and then its token (which
// takes any lease the token still owns with it). A login per session keeps each session's lease
// under its own token: nothing outlives a session but what Vault's TTLs bound.
//
// After a sidecar crash nothing is left to revoke from this side: renewals stop, and Vault revokes
// the token and lease when their TTL runs out (the role's default_ttl is that bound).
//
// Never logged: the service-account token, the Vault token, secret data. Lease IDs are identifiers
// (they appear in audit events so an operator can trace which credential ran which statement).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { type Connection, vaultTokenFile } from "../../../api/src/index.ts";
import type { SecretStore } from "../runtime/secrets.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import {
  kubernetesLogin,
  readSecret,
  renewLease,
  renewToken,
  revokeLease,
  revokeToken,
  type VaultEndpoint,
  VaultError,
} from "../vault/client.ts";
import { CredentialError, type CredentialSource, type HeldCredential, heldFields } from "./source.ts";

export type VaultSpec = NonNullable<NonNullable<Connection["credentials"]>["vault"]>;

export interface RevokeRetry {
  attempts: number;
  /** Delay before the first retry; doubled for each next one. */
  firstDelayMs: number;
}

export interface VaultSourceDeps {
  logger: Logger;
  metrics: Metrics;
  secrets: SecretStore;
  /** Directory of the sidecar's projected service-account tokens. */
  tokenDir: string;
  /** Where held leases are tracked, so drain() can revoke what is still held. */
  leases: LeaseSet;
  timeoutMs?: number;
  revokeRetry?: RevokeRetry;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_REVOKE_RETRY: RevokeRetry = { attempts: 5, firstDelayMs: 250 };
/** Renewal ticks no more often than this, whatever TTL Vault grants. */
const MIN_RENEW_MS = 1_000;

/** Held leases and revocations in flight, for drain. */
export class LeaseSet {
  readonly #held = new Set<HeldCredential>();
  readonly #pending = new Set<Promise<void>>();
  hold(c: HeldCredential): void {
    this.#held.add(c);
  }
  forget(c: HeldCredential): void {
    this.#held.delete(c);
  }
  track(p: Promise<void>): void {
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p)).catch(() => {});
  }
  get size(): number {
    return this.#held.size;
  }
  /** Releases everything still held and waits for every revocation to finish (or give up). */
  async drain(): Promise<void> {
    for (const c of [...this.#held]) c.release();
    while (this.#pending.size) await Promise.allSettled([...this.#pending]);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function asCredentialError(err: unknown, what: string): CredentialError {
  if (err instanceof CredentialError) return err;
  if (err instanceof VaultError)
    return new CredentialError(
      err.reason === "unreachable" ? "unreachable" : "refused",
      `${what}: ${err.message}`,
      {
        cause: err,
      },
    );
  return new CredentialError("unreachable", `${what}: ${String(err)}`, { cause: err });
}

export function vaultCredentialSource(
  connection: string,
  spec: VaultSpec,
  deps: VaultSourceDeps,
): CredentialSource {
  const mount = spec.auth.mount ?? "kubernetes";
  const role = spec.auth.role;
  const tokenPath = join(deps.tokenDir, vaultTokenFile(spec.auth.audience));
  const retry = deps.revokeRetry ?? DEFAULT_REVOKE_RETRY;
  const log = deps.logger;
  const m = deps.metrics;

  async function endpoint(): Promise<VaultEndpoint> {
    let ca: string | undefined;
    if (spec.caSecretRef) {
      try {
        ca = await deps.secrets.get(spec.caSecretRef.name, spec.caSecretRef.key);
      } catch (err) {
        throw new CredentialError("missing", `the Vault CA: ${(err as Error).message}`);
      }
    }
    return { address: spec.address, timeoutMs: deps.timeoutMs ?? DEFAULT_TIMEOUT_MS, ...(ca ? { ca } : {}) };
  }

  async function login(ep: VaultEndpoint) {
    let jwt: string;
    try {
      jwt = (await readFile(tokenPath, "utf8")).trim();
    } catch {
      throw new CredentialError(
        "missing",
        `the service-account token for Vault is not mounted at ${tokenPath}${spec.auth.audience ? ` (audience ${spec.auth.audience})` : ""}`,
      );
    }
    try {
      return await kubernetesLogin(ep, mount, role, jwt);
    } catch (err) {
      throw asCredentialError(err, `Vault login (auth/${mount}, role ${role})`);
    }
  }

  /** Revokes the lease (retried), then the token; counts the outcome. Never throws. */
  async function revoke(ep: VaultEndpoint, token: string, leaseId: string, session: string): Promise<void> {
    let revoked = leaseId === "";
    for (let attempt = 1; !revoked && attempt <= retry.attempts; attempt++) {
      try {
        await revokeLease(ep, token, leaseId);
        revoked = true;
      } catch (err) {
        if (attempt === retry.attempts) {
          log.warn(
            { session, connection, lease: leaseId, err: (err as Error).message },
            "vault: lease revocation failed",
          );
          break;
        }
        m.credentialRevocations.inc({ connection, result: "retried" });
        await sleep(retry.firstDelayMs * 2 ** (attempt - 1));
      }
    }
    // The token owns the lease: revoking it revokes what the lease revocation could not.
    let tokenRevoked = false;
    for (let attempt = 1; !tokenRevoked && attempt <= (revoked ? 1 : retry.attempts); attempt++) {
      try {
        await revokeToken(ep, token);
        tokenRevoked = true;
      } catch (err) {
        if (attempt === retry.attempts || revoked) {
          log.warn(
            { session, connection, lease: leaseId, err: (err as Error).message },
            "vault: token revocation failed",
          );
          break;
        }
        m.credentialRevocations.inc({ connection, result: "retried" });
        await sleep(retry.firstDelayMs * 2 ** (attempt - 1));
      }
    }
    if (leaseId === "") return;
    const ok = revoked || tokenRevoked;
    m.credentialRevocations.inc({ connection, result: ok ? "revoked" : "failed" });
    if (ok) log.info({ session, connection, lease: leaseId }, "vault: lease revoked");
    else
      log.error(
        { session, connection, lease: leaseId },
        "vault: could not revoke the lease; Vault ends it when its TTL runs out",
      );
  }

  return {
    kind: "vault",
    async acquire(req) {
      const ep = await endpoint();
      const grant = await login(ep);
      let secret: Awaited<ReturnType<typeof readSecret>>;
      try {
        secret = await readSecret(ep, grant.token, spec.path, req.body);
      } catch (err) {
        deps.leases.track(revoke(ep, grant.token, "", req.session));
        throw asCredentialError(err, `read ${spec.path}`);
      }
      const fields = new Map(Object.entries(secret.data));
      const missing = req.keys.find((k) => !fields.has(k));
      const leaseId = secret.leaseId;
      if (missing !== undefined || leaseId === "") {
        // Unleased (KV) data does not depend on the token; a refused read leaves nothing to hold.
        deps.leases.track(revoke(ep, grant.token, leaseId, req.session));
        if (missing !== undefined)
          throw new CredentialError("missing", `Vault secret ${spec.path} has no field ${missing}`);
        return heldFields(fields, { source: "vault" }, `Vault secret ${spec.path}`);
      }

      // Renewals: token and lease at half the shorter TTL, asking for their first TTL again
      // (Vault caps it at the role's max TTL). A failed renewal is retried on the next tick.
      let token = { ttl: grant.ttlSeconds, ask: grant.ttlSeconds };
      let lease = { ttl: secret.ttlSeconds, ask: secret.ttlSeconds };
      let timer: NodeJS.Timeout | undefined;
      // When renewals stop extending (max TTL of the lease or of the token that owns it), the
      // credential's end is fixed: tell the holder once.
      let endsAt: number | undefined;
      const endingListeners: ((endsAt: number) => void)[] = [];
      const ending = (ttlSeconds: number) => {
        const at = Date.now() + ttlSeconds * 1000;
        if (endsAt !== undefined && endsAt <= at) return;
        const first = endsAt === undefined;
        endsAt = at;
        log.info(
          { session: req.session, connection, lease: leaseId, endsAt: new Date(at).toISOString() },
          "vault: lease reaches its max TTL",
        );
        if (first) for (const l of endingListeners) l(at);
      };
      const schedule = () => {
        const ttls = [token.ttl, secret.renewable ? lease.ttl : 0].filter((t) => t > 0);
        if (ttls.length === 0) return;
        timer = setTimeout(renew, Math.max(MIN_RENEW_MS, (Math.min(...ttls) * 1000) / 2));
        timer.unref();
      };
      const renew = async () => {
        try {
          if (token.ttl > 0) token = { ...token, ttl: await renewToken(ep, grant.token, token.ask) };
          if (secret.renewable)
            lease = { ...lease, ttl: await renewLease(ep, grant.token, leaseId, lease.ask) };
          m.credentialRenewals.inc({ connection, result: "ok" });
          const capped = [
            token.ttl > 0 && token.ttl < token.ask ? token.ttl : undefined,
            secret.renewable && lease.ttl < lease.ask ? lease.ttl : undefined,
          ].filter((t): t is number => t !== undefined);
          if (capped.length) ending(Math.min(...capped));
        } catch (err) {
          m.credentialRenewals.inc({ connection, result: "failed" });
          log.warn(
            { session: req.session, connection, lease: leaseId, err: (err as Error).message },
            "vault: renewal failed",
          );
        }
        if (timer !== undefined) schedule();
      };
      m.credentialLeases.inc({ connection });
      const held: HeldCredential = heldFields(
        fields,
        { source: "vault", lease: leaseId },
        `Vault secret ${spec.path}`,
        () => {
          clearTimeout(timer);
          timer = undefined;
          deps.leases.forget(held);
          m.credentialLeases.dec({ connection });
          deps.leases.track(revoke(ep, grant.token, leaseId, req.session));
        },
      );
      const holder: HeldCredential = Object.assign(held, {
        onEnding(listener: (at: number) => void) {
          if (endsAt !== undefined) listener(endsAt);
          else endingListeners.push(listener);
        },
      });
      // A lease that cannot be renewed ends when its TTL does.
      if (!secret.renewable && secret.ttlSeconds > 0) ending(secret.ttlSeconds);
      deps.leases.hold(holder);
      schedule();
      log.info(
        { session: req.session, connection, lease: leaseId, ttlSeconds: secret.ttlSeconds },
        "vault: lease issued",
      );
      return holder;
    },
  };
}
