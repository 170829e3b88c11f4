// The few Vault (or OpenBao: same HTTP API) calls the sidecar makes: Kubernetes login, reading a
// dynamic secret, renewing and revoking its lease. JSON over HTTPS with the policy's CA; Vault's
// error strings are kept (they name the refusal, e.g. "permission denied", never a secret), the
// secret data is returned to the caller only.
import type { IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "../runtime/node-http.ts";

export interface VaultEndpoint {
  /** https://host:port (http:// for loopback only; the schema enforces it). */
  address: string;
  /** PEM bundle to verify Vault with, instead of the system roots. */
  ca?: string;
  timeoutMs: number;
}

/**
 * unreachable: no answer (connect, TLS, timeout); refused: Vault answered with an error status;
 * protocol: an answer the sidecar cannot use.
 */
export type VaultFailure = "unreachable" | "refused" | "protocol";

export class VaultError extends Error {
  readonly reason: VaultFailure;
  readonly status: number | undefined;
  constructor(reason: VaultFailure, message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "VaultError";
    this.reason = reason;
    this.status = status;
  }
}

/** A token or a secret lease, as Vault reports it. */
export interface VaultTokenGrant {
  token: string;
  ttlSeconds: number;
}

/** A secret read from Vault: its string fields, and its lease when it has one (dynamic secrets). */
export interface VaultSecret {
  /** Empty for secrets without a lease (KV). */
  leaseId: string;
  ttlSeconds: number;
  renewable: boolean;
  data: Readonly<Record<string, string>>;
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function call(ep: VaultEndpoint, method: "GET" | "POST" | "PUT", path: string, token?: string, body?: Json) {
  const url = new URL(`/v1/${path}`, ep.address);
  const payload = body ? JSON.stringify(body) : undefined;
  const headers: Record<string, string> = { accept: "application/json" };
  if (token) headers["x-vault-token"] = token;
  if (payload) {
    headers["content-type"] = "application/json";
    headers["content-length"] = String(Buffer.byteLength(payload));
  }
  const what = `Vault ${method} /v1/${path}`;
  return new Promise<{ status: number; body: Json | undefined }>((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) {
          req.destroy(
            new VaultError("protocol", `${what}: response larger than ${MAX_RESPONSE_BYTES} bytes`),
          );
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown;
        try {
          parsed = text === "" ? undefined : JSON.parse(text);
        } catch {
          reject(
            new VaultError("protocol", `${what}: answered ${res.statusCode} with a body that is not JSON`),
          );
          return;
        }
        resolve({ status: res.statusCode ?? 0, body: isObject(parsed) ? parsed : undefined });
      });
      res.on("error", (err) =>
        reject(new VaultError("unreachable", `${what}: ${err.message}`, undefined, { cause: err })),
      );
    };
    const options = { method, headers, timeout: ep.timeoutMs };
    const req =
      url.protocol === "https:"
        ? httpsRequest(
            url,
            { ...options, ...(ep.ca ? { ca: ep.ca } : {}), minVersion: "TLSv1.2" },
            onResponse,
          )
        : httpRequest(url, options, onResponse);
    req.on("timeout", () =>
      req.destroy(new VaultError("unreachable", `${what}: no answer within ${ep.timeoutMs} ms`)),
    );
    req.on("error", (err) =>
      reject(
        err instanceof VaultError
          ? err
          : new VaultError("unreachable", `cannot reach Vault at ${ep.address}: ${err.message}`, undefined, {
              cause: err,
            }),
      ),
    );
    req.end(payload);
  }).then(({ status, body }) => {
    if (status >= 200 && status < 300) return body;
    const errors = Array.isArray(body?.errors)
      ? body.errors.filter((e): e is string => typeof e === "string").map(oneLine)
      : [];
    throw new VaultError(
      "refused",
      `${method} /v1/${path} answered ${status}${errors.length ? `: ${errors.join("; ").slice(0, 300)}` : ""}`,
      status,
    );
  });
}

/** Vault's multi-error text ("1 error occurred:\n\t* permission denied\n\n") on one line. */
function oneLine(e: string): string {
  return e
    .replace(/^\d+ errors? occurred:/, "")
    .split(/\n\s*\*?\s*/)
    .map((x) => x.trim())
    .filter(Boolean)
    .join("; ");
}

function field<T>(v: unknown, check: (x: unknown) => x is T, what: string): T {
  if (!check(v)) throw new VaultError("protocol", `Vault's answer lacks ${what}`);
  return v;
}
const isString = (x: unknown): x is string => typeof x === "string" && x !== "";
const isNumber = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x >= 0;

/** POST auth/<mount>/login with the service-account token: a Vault token for the role's policies. */
export async function kubernetesLogin(
  ep: VaultEndpoint,
  mount: string,
  role: string,
  jwt: string,
): Promise<VaultTokenGrant> {
  const body = await call(ep, "POST", `auth/${mount}/login`, undefined, { role, jwt });
  const auth = field(body?.auth, isObject, "auth");
  return {
    token: field(auth.client_token, isString, "auth.client_token"),
    ttlSeconds: field(auth.lease_duration, isNumber, "auth.lease_duration"),
  };
}

/**
 * GET <path>: the database engine's creds/<role> (a fresh user and its lease) or a KV entry (v2's
 * data.data is unwrapped); POST for a path that issues on a write. Only string fields are kept.
 */
export async function readSecret(
  ep: VaultEndpoint,
  token: string,
  path: string,
  /** A path that issues on a write (the SSH engine's sign/<role>) is POSTed this. */
  write?: Readonly<Record<string, unknown>>,
): Promise<VaultSecret> {
  const body = write ? await call(ep, "POST", path, token, { ...write }) : await call(ep, "GET", path, token);
  let data = field(body?.data, isObject, "data");
  if (isObject(data.data) && isObject(data.metadata)) data = data.data;
  const strings: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) if (typeof v === "string") strings[k] = v;
  return {
    leaseId: typeof body?.lease_id === "string" ? body.lease_id : "",
    ttlSeconds: isNumber(body?.lease_duration) ? body.lease_duration : 0,
    renewable: body?.renewable === true,
    data: strings,
  };
}

/** POST auth/token/renew-self: the token's new TTL. */
export async function renewToken(
  ep: VaultEndpoint,
  token: string,
  incrementSeconds: number,
): Promise<number> {
  const body = await call(ep, "POST", "auth/token/renew-self", token, { increment: incrementSeconds });
  const auth = field(body?.auth, isObject, "auth");
  return field(auth.lease_duration, isNumber, "auth.lease_duration");
}

/** POST auth/token/revoke-self: the token and every lease it created are revoked. */
export async function revokeToken(ep: VaultEndpoint, token: string): Promise<void> {
  await call(ep, "POST", "auth/token/revoke-self", token);
}

/** PUT sys/leases/renew: the lease's new TTL (Vault may grant less than asked, up to its max TTL). */
export async function renewLease(
  ep: VaultEndpoint,
  token: string,
  leaseId: string,
  incrementSeconds: number,
): Promise<number> {
  const body = await call(ep, "PUT", "sys/leases/renew", token, {
    lease_id: leaseId,
    increment: incrementSeconds,
  });
  return field(body?.lease_duration, isNumber, "lease_duration");
}

/** PUT sys/leases/revoke: Vault runs the role's revocation statements (the database user is dropped). */
export async function revokeLease(ep: VaultEndpoint, token: string, leaseId: string): Promise<void> {
  await call(ep, "PUT", "sys/leases/revoke", token, { lease_id: leaseId });
}
