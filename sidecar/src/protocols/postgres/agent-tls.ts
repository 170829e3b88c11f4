// TLS between the agent and the sidecar (connection.agentTls), before the Session sees a byte. The
// first packet decides: an SSLRequest is answered 'S' and the socket becomes a TLS server with a
// leaf of the pod CA for the name the agent dialled (target.host or an alias, by SNI); a
// GSSENCRequest is answered 'N' (the client then asks for TLS or starts plain); anything else is a
// plaintext startup, which `require` refuses. As PostgreSQL does (CVE-2021-23214), bytes the agent
// sends after its SSLRequest and before the handshake are refused: a man in the middle could
// otherwise inject plaintext that would be read as if it came through TLS.
import { isIP, type Socket } from "node:net";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { PodCa } from "../http/tls/pod-ca.ts";
import { errorResponse, GSSENC_REQUEST, SSL_REQUEST } from "./protocol.ts";

export type AgentTlsMode = "disable" | "allow" | "require";

export interface AgentTlsOptions {
  mode: AgentTlsMode;
  /** The pod CA in force (undefined: none yet, or too near its expiry to sign). */
  ca: PodCa | undefined;
  /** target.host first, then the aliases: the names a leaf may be minted for. */
  names: readonly string[];
  logger: Logger;
  connection: string;
  timeoutMs: number;
}

/** The socket the session speaks on and what was read of the startup packet already. */
export interface Negotiated {
  socket: Socket;
  head?: Buffer;
}

const norm = (h: string) => h.toLowerCase().replace(/\.$/, "");

/** Reads until `n` bytes are buffered (the head first); the rest stays in the returned buffer. */
function readAtLeast(
  socket: Socket,
  head: Buffer | undefined,
  n: number,
  timeoutMs: number,
): Promise<Buffer> {
  let buf = head ?? Buffer.alloc(0);
  if (buf.length >= n) return Promise.resolve(buf);
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onClose);
      if (err) reject(err);
      else {
        socket.pause();
        resolve(buf);
      }
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= n) done();
    };
    const onClose = () => done(new Error("the agent closed the connection during startup"));
    const timer = setTimeout(() => done(new Error("startup did not complete in time")), timeoutMs);
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", onClose);
    socket.resume();
  });
}

function refuse(socket: Socket, code: string, message: string): undefined {
  socket.end(errorResponse({ severity: "FATAL", code, message }));
  return undefined;
}

/** Negotiates encryption with the agent; undefined when the connection was refused (and closed). */
export async function negotiateAgentTls(
  socket: Socket,
  head: Buffer | undefined,
  opts: AgentTlsOptions,
): Promise<Negotiated | undefined> {
  if (opts.mode === "disable") return { socket, ...(head?.length ? { head } : {}) };
  let buf = head ?? Buffer.alloc(0);
  for (;;) {
    buf = await readAtLeast(socket, buf, 8, opts.timeoutMs);
    const length = buf.readInt32BE(0);
    const code = buf.readInt32BE(4);
    if (length === 8 && code === GSSENC_REQUEST) {
      socket.write("N");
      buf = buf.subarray(8);
      continue;
    }
    if (length === 8 && code === SSL_REQUEST) break;
    if (opts.mode === "require")
      return refuse(
        socket,
        "28000",
        `connection ${opts.connection} requires TLS between the agent and the Airlock sidecar (agentTls.mode: require); connect with sslmode=require, or verify-full with the pod's trust bundle as sslrootcert`,
      );
    return { socket, head: buf };
  }
  if (buf.length > 8) return refuse(socket, "08P01", "received unencrypted data after SSL request; refused");
  const ca = opts.ca;
  if (!ca) {
    opts.logger.warn(
      { connection: opts.connection },
      "postgres: agent asked for TLS but no pod CA can sign now; answered N",
    );
    if (opts.mode === "require")
      return refuse(socket, "08006", "the Airlock sidecar has no certificate to serve TLS with yet; retry");
    socket.write("N");
    return { socket };
  }
  const names = opts.names.map(norm).filter((n) => ca.covers(n));
  const first = names[0];
  if (first === undefined) {
    opts.logger.warn(
      { connection: opts.connection },
      "postgres: no name of this connection is in the pod CA",
    );
    return refuse(socket, "08006", "the Airlock sidecar cannot serve TLS for this connection");
  }
  const contexts = new Map<string, Promise<SecureContext>>();
  const contextFor = (name: string) => {
    let c = contexts.get(name);
    if (!c) {
      c = ca
        .leaf(name)
        .then((l) => createSecureContext({ cert: l.chainPem, key: l.keyPem, minVersion: "TLSv1.2" }));
      contexts.set(name, c);
    }
    return c;
  };
  // Without SNI (an IP address, or a client that sends none) the leaf is for target.host.
  const fallback = await contextFor(first);
  socket.write("S");
  const tls = new TLSSocket(socket, {
    isServer: true,
    secureContext: fallback,
    SNICallback: (sni, cb) => {
      const n = norm(sni);
      if (!names.includes(n) || isIP(n)) {
        opts.logger.warn(
          { connection: opts.connection, sni },
          "postgres: agent TLS for a name of no connection: refused",
        );
        cb(new Error(`SNI ${sni} is not a name of connection ${opts.connection}`));
        return;
      }
      contextFor(n).then(
        (c) => cb(null, c),
        (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
      );
    },
  });
  tls.on("error", (err) => {
    opts.logger.warn(
      { connection: opts.connection, err: err.message },
      "postgres: agent TLS handshake failed",
    );
  });
  socket.resume();
  return { socket: tls };
}
