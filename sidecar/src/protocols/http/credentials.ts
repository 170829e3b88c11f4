// The upstream credential: taken from the connection's credential source on every request (the
// Secret, read through the store's short cache, so a rotated Secret takes effect at once; or a
// Vault KV entry, re-read every refreshSeconds), formatted into the configured header. The value
// never leaves this module except as the header handed to the upstream request.
import { type CredentialSources, CredentialError as SourceCredentialError } from "../../credentials/index.ts";
import type { Connection } from "../../policy/types.ts";

export const DEFAULT_CREDENTIAL_HEADER = "Authorization";
export const DEFAULT_CREDENTIAL_KEY = "token";
export const DEFAULT_CREDENTIAL_FORMAT = "Bearer {value}";

/** Headers an agent might carry a credential in; dropped whenever the sidecar injects its own. */
export const AGENT_CREDENTIAL_HEADERS = ["authorization", "proxy-authorization", "x-api-key"] as const;

/** No usable credential: `status` and `code` are what the agent gets (502 misconfigured, 503 Vault down or refusing). */
export class CredentialError extends Error {
  readonly status: 502 | 503;
  readonly code: "credential_unavailable" | "credential_source_unavailable";
  constructor(
    message: string,
    status: 502 | 503 = 502,
    code: CredentialError["code"] = "credential_unavailable",
  ) {
    super(message);
    this.name = "HttpCredentialError";
    this.status = status;
    this.code = code;
  }
}

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
  sources: CredentialSources,
  spec: Connection,
  session: string,
): Promise<InjectedCredential | undefined> {
  const creds = spec.credentials;
  if (!creds) return undefined;
  const source = sources.forConnection(spec);
  if (!source) throw new CredentialError(`connection ${spec.name} names no credential source`);
  const http = creds.http ?? {};
  const key = http.key ?? DEFAULT_CREDENTIAL_KEY;
  let raw: string;
  try {
    const held = await source.acquire({ session, keys: [key] });
    raw = held.get(key);
    held.release();
  } catch (err) {
    if (!(err instanceof SourceCredentialError)) throw err;
    // Vault unreachable: worth a retry; Vault refusing (role, policy): an operator must act.
    if (source.kind === "vault" && err.reason !== "missing")
      throw new CredentialError(
        `Vault could not provide the credential (${err.reason}): ${err.message}`,
        503,
        err.reason === "unreachable" ? "credential_source_unavailable" : "credential_unavailable",
      );
    throw new CredentialError(err.message);
  }
  const hit = formatted.get(spec);
  if (hit !== undefined && hit.raw === raw) return hit.credential;
  // split/join rather than String.replace, whose replacement string interprets `$&` and friends.
  const value = (http.format ?? DEFAULT_CREDENTIAL_FORMAT).split("{value}").join(raw);
  if (raw === "" || INVALID_FIELD_VALUE.test(value)) {
    throw new CredentialError(
      `the credential of connection ${spec.name} (field ${key}) is not a usable HTTP header value (empty, or control characters)`,
    );
  }
  const credential: InjectedCredential = Object.freeze({
    name: http.header ?? DEFAULT_CREDENTIAL_HEADER,
    value,
  });
  formatted.set(spec, { raw, credential });
  return credential;
}
