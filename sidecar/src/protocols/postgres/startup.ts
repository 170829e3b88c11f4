// The first packet of an agent connection, parsed: an SSL/GSSENC request (answered 'N': in-pod
// traffic is plaintext, the upstream leg is what TLS protects), a CancelRequest, or a
// StartupMessage with its parameters. Replication connections are refused here. Also the end
// user's token sent as the password.
import { isIdentityError, type UserIdentity } from "../../identity/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { type Frame, typeName } from "./framing.ts";
import {
  CANCEL_REQUEST,
  GSSENC_REQUEST,
  negotiateProtocolVersion,
  ProtocolError,
  Reader,
  SSL_REQUEST,
  T,
} from "./protocol.ts";

export type StartupPacket =
  | { kind: "encryption" }
  | { kind: "cancel"; pid: number; secret: number }
  | {
      kind: "startup";
      params: Record<string, string>;
      /** NegotiateProtocolVersion to send first (a newer minor version, or `_pq_.` options asked). */
      negotiate?: Buffer;
    };

export function parseStartupPacket(f: Frame): StartupPacket {
  const r = new Reader(f.payload);
  const code = r.int32("startup code");
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
    if (f.raw.length !== 8) throw new ProtocolError("malformed SSLRequest");
    return { kind: "encryption" };
  }
  if (code === CANCEL_REQUEST) {
    if (f.raw.length !== 16) throw new ProtocolError("malformed CancelRequest");
    return { kind: "cancel", pid: r.int32(), secret: r.int32() };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) throw new ProtocolError(`unsupported frontend protocol ${major}.${minor}`, "0A000");
  const params: Record<string, string> = {};
  const unrecognized: string[] = [];
  for (;;) {
    const k = r.cstr("parameter name");
    if (k === "") break;
    const v = r.cstr("parameter value");
    if (k.startsWith("_pq_.")) unrecognized.push(k);
    else params[k] = v;
  }
  if (r.remaining !== 0) throw new ProtocolError("malformed StartupMessage: trailing bytes");
  const replication = (params.replication ?? "false").toLowerCase();
  if (!["false", "off", "no", "0"].includes(replication))
    throw new ProtocolError("replication connections are not allowed through the Airlock sidecar", "42501");
  return {
    kind: "startup",
    params,
    ...(minor > 0 || unrecognized.length ? { negotiate: negotiateProtocolVersion(0, unrecognized) } : {}),
  };
}

/** The end user's OIDC token, sent as the password when the policy requires one, verified. */
export async function verifyPasswordToken(
  ctx: SidecarContext,
  connection: CompiledConnection,
  f: Frame,
  log: { session: string; connection: string },
): Promise<UserIdentity> {
  if (f.type !== T.Password) throw new ProtocolError(`expected a password message, got ${typeName(f.type)}`);
  const token = new Reader(f.payload).cstr("password");
  const verifier = ctx.verifierFor(connection);
  if (!verifier)
    throw new ProtocolError(
      "this connection requires an end-user token but its policy names no OIDC issuer",
      "28000",
    );
  try {
    return await verifier.verify(token);
  } catch (err) {
    if (isIdentityError(err)) {
      ctx.logger.warn({ ...log, code: err.code }, "postgres: identity token refused");
      throw new ProtocolError(`the identity token was refused: ${err.message}`, "28P01");
    }
    throw err;
  }
}
