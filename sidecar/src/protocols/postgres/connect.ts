// Opening the upstream session for one agent: the target and TLS from the policy connection, the
// sidecar-held credential, the startup parameters the agent may choose (checked), read-only mode
// when the subject can only read, and the catalog lookups masking needs. Failures become
// protocol-native errors that never carry the credential.
import { CredentialError, type CredentialSource, type HeldCredential } from "../../credentials/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { pgDurationMs } from "../../sql/pg-duration.ts";
import { TEXT_TYPES_QUERY, textTypeKinds } from "./binary-values.ts";
import type { CatalogSource } from "./catalog-source.ts";
import { ProtocolError } from "./protocol.ts";
import type { ResultMasking } from "./results.ts";
import {
  sidecarQuery,
  startUpstream,
  UpstreamConnectError,
  UpstreamError,
  type UpstreamSession,
  type UpstreamTarget,
} from "./upstream.ts";

/** Upstream startup parameters the agent may choose (values are checked); everything else is dropped. */
const FORWARDED_PARAMS = new Set([
  "application_name",
  "datestyle",
  "timezone",
  "intervalstyle",
  "extra_float_digits",
]);
const SAFE_PARAM_VALUE = /^[A-Za-z0-9 _.,:/+-]{0,64}$/;

export interface ConnectRequest {
  ctx: SidecarContext;
  session: string;
  connection: CompiledConnection;
  /** The agent's StartupMessage parameters. */
  params: Readonly<Record<string, string>>;
  readOnly: boolean;
  connectTimeoutMs: number;
  /** Filled with where covered columns live (when masking has column rules). */
  results: ResultMasking;
  /** The credential's source instead of the connection's own (an approved statement's). */
  source?: CredentialSource;
}

export interface Connected {
  target: UpstreamTarget;
  up: UpstreamSession;
  /** Where the sidecar reads this database's catalog (same target and credential). */
  catalog: CatalogSource;
  /** The session's statement_timeout at start (the database's or role's default), in ms. */
  statementTimeoutMs: number;
  /** Held for the session: released (a Vault lease revoked) when the session ends. */
  credential?: HeldCredential;
}

export async function connectUpstream(req: ConnectRequest): Promise<Connected> {
  const { ctx, connection } = req;
  const spec = connection.spec;
  const tlsSpec = spec.tls;
  const mode = tlsSpec?.mode ?? "verify-full";
  // Refused where the policy loads (it is HTTP's); never a reason to speak less TLS here.
  if (mode === "passthrough")
    throw new ProtocolError("tls.mode passthrough is only for protocol http", "08006");
  let ca: string | undefined;
  try {
    if (mode !== "disable" && tlsSpec?.caSecretRef)
      ca = await ctx.secrets.get(tlsSpec.caSecretRef.name, tlsSpec.caSecretRef.key);
  } catch (err) {
    throw new ProtocolError(`the sidecar cannot read the upstream CA: ${(err as Error).message}`, "08006");
  }
  const target: UpstreamTarget = {
    host: spec.target.host,
    port: spec.target.port,
    tls: { mode, ...(ca ? { ca } : {}), ...(tlsSpec?.serverName ? { serverName: tlsSpec.serverName } : {}) },
    connectTimeoutMs: req.connectTimeoutMs,
  };
  let user = req.params.user ?? "";
  let password: string | undefined;
  const creds = spec.credentials;
  const held = creds || req.source ? await acquireCredential(req, creds) : undefined;
  if (held) {
    user = held.get(creds?.postgres?.usernameKey ?? "username");
    password = held.get(creds?.postgres?.passwordKey ?? "password");
  }
  const database = spec.database ?? req.params.database ?? req.params.user ?? user;
  const params: Record<string, string> = {
    database,
    client_encoding: "UTF8",
    standard_conforming_strings: "on",
    application_name: "airlock",
  };
  for (const [k, v] of Object.entries(req.params)) {
    if (FORWARDED_PARAMS.has(k.toLowerCase()) && SAFE_PARAM_VALUE.test(v)) params[k] = v;
  }
  if (req.readOnly) params.default_transaction_read_only = "on";
  let up: UpstreamSession;
  try {
    up = await startUpstream(target, { user, ...(password !== undefined ? { password } : {}) }, params);
  } catch (err) {
    held?.release();
    throw connectFailure(req, err);
  }
  // Approval waits end with the statement_timeout the agent's session has (0: none).
  let statementTimeoutMs = 0;
  try {
    const [row] = await sidecarQuery(up, "SHOW statement_timeout", req.connectTimeoutMs);
    statementTimeoutMs = pgDurationMs(row?.[0] ?? "") ?? 0;
  } catch (err) {
    up.socket.destroy();
    held?.release();
    throw connectFailure(req, err);
  }
  // Binary results of database-defined text types (citext, enums) can be masked: learn their oids.
  const mask = req.results.mask;
  if (mask) {
    try {
      const types = textTypeKinds(await sidecarQuery(up, TEXT_TYPES_QUERY, req.connectTimeoutMs));
      for (const [oid, kind] of types) req.results.types.set(oid, kind);
    } catch (err) {
      up.socket.destroy();
      held?.release();
      ctx.logger.warn({ session: req.session, err: String(err) }, "postgres: masking catalog lookup failed");
      throw new ProtocolError(
        "the Airlock sidecar could not prepare result masking; see the sidecar log",
        "08006",
      );
    }
  }
  const credentials = { user, ...(password !== undefined ? { password } : {}) };
  return {
    target,
    up,
    catalog: { target, credentials, database, timeoutMs: req.connectTimeoutMs },
    statementTimeoutMs,
    ...(held ? { credential: held } : {}),
  };
}

/**
 * The session's credential from the connection's source (its Secret, or a lease from Vault). Vault
 * unreachable → 08004, Vault refusing the login or the role → 28000, each with the reason; a
 * Secret that is not mounted → 08006 as before. No fallback here: the source applies the
 * policy's.
 */
async function acquireCredential(
  req: ConnectRequest,
  creds: CompiledConnection["spec"]["credentials"],
): Promise<HeldCredential> {
  const source = req.source ?? req.ctx.credentials.forConnection(req.connection.spec);
  const keys = [creds?.postgres?.usernameKey ?? "username", creds?.postgres?.passwordKey ?? "password"];
  try {
    if (!source) throw new CredentialError("missing", "the connection has no credential source");
    return await source.acquire({ session: req.session, keys });
  } catch (err) {
    const e = err instanceof CredentialError ? err : new CredentialError("missing", String(err));
    req.ctx.logger.warn(
      { session: req.session, connection: req.connection.spec.name, reason: e.reason, err: e.message },
      "postgres: no upstream credential",
    );
    if (source?.kind !== "vault")
      throw new ProtocolError(`the sidecar cannot read the upstream credential: ${e.message}`, "08006");
    if (e.reason === "refused")
      throw new ProtocolError(
        `Vault refused the Airlock sidecar a database credential: ${e.message}`,
        "28000",
      );
    throw new ProtocolError(
      `the Airlock sidecar cannot get a database credential from Vault: ${e.message}`,
      "08004",
    );
  }
}

function connectFailure(req: ConnectRequest, err: unknown): ProtocolError {
  const { ctx } = req;
  const name = req.connection.spec.name;
  const reason =
    err instanceof UpstreamConnectError ? err.reason : err instanceof UpstreamError ? "refused" : "error";
  ctx.metrics.upstreamErrors.inc({ connection: name, protocol: "postgres", reason });
  if (err instanceof UpstreamError) {
    ctx.logger.warn(
      { session: req.session, connection: name, code: err.code, message: err.message },
      "postgres: upstream refused the session",
    );
    // Authentication failures name the sidecar's credential: keep them in the sidecar's log.
    if (err.code.startsWith("28"))
      return new ProtocolError(
        "the Airlock sidecar could not authenticate to the upstream database; see the sidecar log",
        "08006",
      );
    return new ProtocolError(err.message, err.code);
  }
  ctx.logger.warn(
    { session: req.session, connection: name, err: String(err) },
    "postgres: upstream connection failed",
  );
  return new ProtocolError(
    err instanceof UpstreamConnectError ? err.message : `upstream connection failed: ${String(err)}`,
    "08006",
  );
}
