// A session's start, once the agent is authenticated: the upstream session (connect.ts) as the
// sidecar-held credential, read-only when the policy says so, the parser of the server's major
// version, the catalog the session judges with, and what the agent is told (its own cancel key,
// the server's parameters); and the end a credential with a lifetime imposes on it.
import type { HeldCredential } from "../../credentials/index.ts";
import { readOnlySession } from "../../decisions/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { parserFor, type SqlParser } from "../../sql/parser.ts";
import type { SessionCatalog } from "./catalog-source.ts";
import { connectUpstream } from "./connect.ts";
import { authenticationOk, backendKeyData, ProtocolError, readyForQuery } from "./protocol.ts";
import type { ResultMasking } from "./results.ts";
import type { UpstreamSession, UpstreamTarget } from "./upstream.ts";

export interface StartRequest {
  ctx: SidecarContext;
  session: string;
  connection: CompiledConnection;
  /** The agent's startup parameters. */
  params: Record<string, string>;
  subject: Subject;
  connectTimeoutMs: number;
  results: ResultMasking;
  catalog: SessionCatalog;
  /** originsQuery for the column rules in force. */
  originsSql: string | undefined;
  /** Told of the credential as soon as it is held (before the parser and catalog are ready). */
  holding(credential: HeldCredential | undefined): void;
}

export interface Started {
  target: UpstreamTarget;
  up: UpstreamSession;
  readOnly: boolean;
  statementTimeoutMs: number;
  parser: SqlParser;
}

/** Opens the upstream session and readies the session's judgement of it. */
export async function startUpstream(req: StartRequest): Promise<Started> {
  const { ctx, connection } = req;
  const readOnly = readOnlySession(ctx.policies.current(), connection, req.subject);
  const { target, up, catalog, statementTimeoutMs, credential } = await connectUpstream({
    ctx,
    session: req.session,
    connection,
    params: req.params,
    readOnly,
    connectTimeoutMs: req.connectTimeoutMs,
    results: req.results,
  });
  req.holding(credential);
  try {
    // Judge with the grammar of the server in front of us; a major we have none for is refused.
    const parser = await parserFor(up.parameters.server_version ?? "").catch((err: unknown) => {
      throw new ProtocolError(err instanceof Error ? err.message : String(err), "0A000");
    });
    await req.catalog.open({ ...catalog, parser }, req.originsSql);
    req.results.origins = req.catalog.origins;
    return { target, up, readOnly, statementTimeoutMs, parser };
  } catch (err) {
    up.socket.destroy();
    throw err;
  }
}

/**
 * What the agent receives once the session is ready: AuthenticationOk (after the protocol
 * negotiation the sidecar answered, unless it already went out before a password request), the
 * server's ParameterStatus messages, the agent's own cancel key and ReadyForQuery.
 */
export function readyMessages(
  up: UpstreamSession,
  agentSecret: number,
  negotiate: Buffer | undefined,
): Buffer {
  const out: Buffer[] = [];
  if (negotiate) out.push(negotiate);
  out.push(authenticationOk(), ...up.relay, backendKeyData(up.pid, agentSecret), readyForQuery(up.txStatus));
  return Buffer.concat(out);
}

/**
 * The credential stops working at `endsAt` (a Vault lease at its max TTL): end the session
 * while it is idle (no statement in flight) in the last stretch before then, or at `endsAt`
 * whatever it is doing, with 57P01 so clients and pools reconnect (and get a new credential)
 * instead of failing on a dropped role mid-statement.
 */
export function endBefore(
  endsAt: number,
  session: { closed(): boolean; idle(): boolean; fatal(err: ProtocolError): void },
) {
  const end = () =>
    session.fatal(
      new ProtocolError(
        "Airlock ended this session: its database credential reaches the end of its lifetime (Vault max TTL); reconnect to get a new one",
        "57P01",
      ),
    );
  const window = Math.min(5_000, Math.max(0, (endsAt - Date.now()) / 2));
  const start = setTimeout(
    () => {
      const poll = setInterval(() => {
        if (session.closed()) clearInterval(poll);
        else if (session.idle() || Date.now() >= endsAt - 250) {
          clearInterval(poll);
          end();
        }
      }, 50);
      poll.unref();
    },
    Math.max(0, endsAt - window - Date.now()),
  );
  start.unref();
}
