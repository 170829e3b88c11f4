// Opening the upstream session for one agent: the target and TLS from the policy connection, the
// sidecar-held credential, the startup parameters the agent may choose (checked), read-only mode
// when the subject can only read, and the catalog lookups masking needs. Failures become
// protocol-native errors that never carry the credential.
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { TEXT_TYPES_QUERY, textTypeKinds } from "./binary-values.ts";
import type { CatalogSource } from "./catalog-source.ts";
import { ProtocolError } from "./protocol.ts";
import type { ResultMasking } from "./results.ts";
import { originsQuery, USER_FUNCTION } from "./row-masking.ts";
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
}

export interface Connected {
  target: UpstreamTarget;
  up: UpstreamSession;
  /** Where the sidecar reads this database's catalog (same target and credential). */
  catalog: CatalogSource;
}

export async function connectUpstream(req: ConnectRequest): Promise<Connected> {
  const { ctx, connection } = req;
  const spec = connection.spec;
  const tlsSpec = spec.tls;
  const mode = tlsSpec?.mode ?? "verify-full";
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
  if (creds) {
    try {
      user = await ctx.secrets.get(creds.secretRef.name, creds.postgres?.usernameKey ?? "username");
      password = await ctx.secrets.get(creds.secretRef.name, creds.postgres?.passwordKey ?? "password");
    } catch (err) {
      throw new ProtocolError(
        `the sidecar cannot read the upstream credential: ${(err as Error).message}`,
        "08006",
      );
    }
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
    throw connectFailure(req, err);
  }
  // Column rules also cover table columns read under another name: learn where they live.
  // Binary results of database-defined text types (citext, enums) can be masked: learn their oids.
  const mask = req.results.mask;
  const origins = mask ? originsQuery(mask) : undefined;
  if (mask) {
    try {
      if (origins)
        for (const [oid, attnum, col] of await sidecarQuery(up, origins, req.connectTimeoutMs)) {
          if (Number(attnum) === USER_FUNCTION) req.results.userFunctions.add(col ?? "");
          else req.results.origins.set(`${oid}:${attnum}`, col ?? "");
        }
      const types = textTypeKinds(await sidecarQuery(up, TEXT_TYPES_QUERY, req.connectTimeoutMs));
      for (const [oid, kind] of types) req.results.types.set(oid, kind);
    } catch (err) {
      up.socket.destroy();
      ctx.logger.warn({ session: req.session, err: String(err) }, "postgres: masking catalog lookup failed");
      throw new ProtocolError(
        "the Airlock sidecar could not prepare result masking; see the sidecar log",
        "08006",
      );
    }
  }
  const credentials = { user, ...(password !== undefined ? { password } : {}) };
  return { target, up, catalog: { target, credentials, database, timeoutMs: req.connectTimeoutMs } };
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
