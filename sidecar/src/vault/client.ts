// The few Vault (or OpenBao: same HTTP API) calls the sidecar makes: Kubernetes login, reading a
// dynamic secret, renewing and revoking its lease. JSON over HTTPS with the policy's CA; Vault's
// error strings are kept (they name the refusal, e.g. "permission denied", never a secret), the
// secret data is returned to the caller only.
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";

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

export interface DatabaseCredential {
  leaseId: string;
  ttlSeconds: number;
  renewable: boolean;
  username: string;
  password: string;
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
    const errors = Array.isArray(body?.errors) ? body.errors.filter((e) => typeof e === "string") : [];
    throw new VaultError(
      "refused",
      `${what} answered ${status}${errors.length ? `: ${errors.join("; ").slice(0, 300)}` : ""}`,
      status,
    );
  });
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

/** GET <mount>/creds/<role>: a fresh database user and its lease. */
export async function readDatabaseCredential(
  ep: VaultEndpoint,
  token: string,
  path: string,
): Promise<DatabaseCredential> {
  const body = await call(ep, "GET", path, token);
  const data = field(body?.data, isObject, "data");
  return {
    leaseId: field(body?.lease_id, isString, "lease_id"),
    ttlSeconds: field(body?.lease_duration, isNumber, "lease_duration"),
    renewable: body?.renewable === true,
    username: field(data.username, isString, "data.username"),
    password: field(data.password, isString, "data.password"),
  };
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
