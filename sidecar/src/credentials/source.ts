// The one way protocols get an upstream credential: a source hands out a held credential (named
// string fields, like a Secret's keys) for an agent session and takes it back when the session
// ends. A Secret source reads the mounted Secret (nothing to give back); a Vault source mints a
// leased credential, renews it while held and revokes it on release. Values never leave the held
// credential except through get(); errors and audit fields name keys and lease IDs, never values.

/** Why no credential could be had: the agent's error says which (PostgreSQL 08004 / 28000, HTTP 503). */
export type CredentialFailure = "unreachable" | "refused" | "missing";

export class CredentialError extends Error {
  readonly reason: CredentialFailure;
  constructor(reason: CredentialFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CredentialError";
    this.reason = reason;
  }
}

/** What an audit event records about the credential an operation ran under. */
export interface CredentialAudit {
  source: "secretRef" | "vault";
  /** Vault's lease ID (never the secret); absent for Secrets and unleased KV entries. */
  lease?: string;
}

export interface HeldCredential {
  readonly audit: CredentialAudit;
  /** The field's value; throws CredentialError("missing") naming the key when it has none. */
  get(key: string): string;
  /** Ends the hold: a Vault lease is revoked (retried in the background). Idempotent. */
  release(): void;
  /**
   * Calls `listener` once, with the epoch milliseconds at which the credential stops working,
   * when that time becomes known and cannot be pushed back (a Vault lease or token renewed up to
   * its max TTL). Sessions end cleanly before then instead of failing mid-statement.
   */
  onEnding?(listener: (endsAt: number) => void): void;
}

export interface AcquireRequest {
  /** Agent session (for logs). */
  session: string;
  /** Fields the caller will read: all must be present, or acquire fails naming the missing one. */
  keys: readonly string[];
  /** A Vault path that issues on a write (the SSH engine's sign/<role>): POSTed this body. */
  body?: Readonly<Record<string, unknown>>;
}

export interface CredentialSource {
  readonly kind: CredentialAudit["source"];
  acquire(req: AcquireRequest): Promise<HeldCredential>;
}

/** A held credential over fields already read (Secret values, or data of an unleased secret). */
export function heldFields(
  fields: ReadonlyMap<string, string>,
  audit: CredentialAudit,
  what: string,
  release: () => void = () => {},
): HeldCredential {
  let released = false;
  return {
    audit: Object.freeze(audit),
    get(key) {
      const v = fields.get(key);
      if (v === undefined) throw new CredentialError("missing", `${what} has no field ${key}`);
      return v;
    },
    release() {
      if (released) return;
      released = true;
      release();
    },
  };
}
