// The upstream credential: read from the connection's Secret on every request (so a rotated Secret
// takes effect at once), formatted into the configured header. The value never leaves this module
// except as the header handed to the upstream request.
import type { Connection } from "../../policy/types.ts";
import type { SecretStore } from "../../runtime/secrets.ts";

export const DEFAULT_CREDENTIAL_HEADER = "Authorization";
export const DEFAULT_CREDENTIAL_KEY = "token";
export const DEFAULT_CREDENTIAL_FORMAT = "Bearer {value}";

/** Headers an agent might carry a credential in; dropped whenever the sidecar injects its own. */
export const AGENT_CREDENTIAL_HEADERS = ["authorization", "proxy-authorization", "x-api-key"] as const;

export class CredentialError extends Error {}

export interface InjectedCredential {
  name: string;
  value: string;
}

/** Lower-case names of headers to remove from the agent's request. */
export function credentialHeadersToDrop(spec: Connection): string[] {
  if (!spec.credentials) return ["proxy-authorization"];
  const configured = (spec.credentials.http?.header ?? DEFAULT_CREDENTIAL_HEADER).toLowerCase();
  return [...new Set([configured, ...AGENT_CREDENTIAL_HEADERS])];
}

// Field values may not carry CR, LF or NUL (RFC 9110 §5.5); anything else below 0x20 but tab is odd too.
const INVALID_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

// The formatted credential of a connection, kept while the Secret's value stays the same (it is
// still read on every request, so a rotated value is used at once).
const formatted = new WeakMap<Connection, { raw: string; credential: InjectedCredential }>();

export async function resolveCredential(
  secrets: SecretStore,
  spec: Connection,
): Promise<InjectedCredential | undefined> {
  const creds = spec.credentials;
  if (!creds) return undefined;
  // (The schema requires secretRef on HTTP connections; credentials.vault is PostgreSQL-only.)
  if (!creds.secretRef) throw new CredentialError(`connection ${spec.name} has no credentials.secretRef`);
  const http = creds.http ?? {};
  const raw = await secrets.get(creds.secretRef.name, http.key ?? DEFAULT_CREDENTIAL_KEY);
  const hit = formatted.get(spec);
  if (hit !== undefined && hit.raw === raw) return hit.credential;
  // split/join rather than String.replace, whose replacement string interprets `$&` and friends.
  const value = (http.format ?? DEFAULT_CREDENTIAL_FORMAT).split("{value}").join(raw);
  if (raw === "" || INVALID_FIELD_VALUE.test(value)) {
    throw new CredentialError(
      `secret ${creds.secretRef.name} does not hold a usable HTTP header value (empty, or control characters)`,
    );
  }
  const credential: InjectedCredential = Object.freeze({
    name: http.header ?? DEFAULT_CREDENTIAL_HEADER,
    value,
  });
  formatted.set(spec, { raw, credential });
  return credential;
}
