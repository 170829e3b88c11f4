// The sidecar's own connection to the upstream PostgreSQL: TCP, TLS per policy (SSLRequest, then
// a verified handshake), StartupMessage, and password authentication with the sidecar-held
// credential (SCRAM-SHA-256, MD5 or cleartext, whichever the server asks for).
import { isIP, type Socket, connect as tcpConnect } from "node:net";
import { checkServerIdentity, type PeerCertificate, connect as tlsConnect } from "node:tls";
import { BackendFramer, type Frame } from "./framing.ts";
import {
  cancelRequest,
  decodeLoose,
  message,
  parseErrorFields,
  parseRowDescription,
  passwordMessage,
  Reader,
  SSL_REQUEST,
  saslInitialResponse,
  saslResponse,
  startupMessage,
  startupPacket,
  T,
} from "./protocol.ts";

const queryMessage = (sql: string) => message(T.Query, Buffer.from(`${sql}\0`, "utf8"));

import { AuthError, md5Password, ScramClient } from "./scram.ts";

export type TlsMode = "verify-full" | "verify-ca" | "disable";

export interface UpstreamTarget {
  host: string;
  port: number;
  tls: { mode: TlsMode; ca?: string; serverName?: string };
  connectTimeoutMs: number;
}

export interface UpstreamCredentials {
  user: string;
  password?: string;
}

/** The upstream refused us: an ErrorResponse during startup. */
export class UpstreamError extends Error {
  readonly fields: ReadonlyMap<string, string>;
  readonly code: string;
  constructor(fields: ReadonlyMap<string, string>) {
    super(fields.get("M") ?? "upstream error");
    this.name = "UpstreamError";
    this.fields = fields;
    this.code = fields.get("C") ?? "XX000";
  }
}

/** Could not reach or trust the upstream (network, TLS, protocol). */
export class UpstreamConnectError extends Error {
  readonly reason: "connect" | "tls" | "protocol" | "auth" | "timeout";
  constructor(reason: UpstreamConnectError["reason"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UpstreamConnectError";
    this.reason = reason;
  }
}

export interface UpstreamSession {
  socket: Socket;
  /** The framer holding any bytes read past ReadyForQuery (normally none). */
  framer: BackendFramer;
  pid: number;
  secret: number;
  /** ParameterStatus/NoticeResponse messages from startup, raw, to relay to the agent. */
  relay: Buffer[];
  /** The server's ParameterStatus values at startup (server_version among them). */
  parameters: Record<string, string>;
  txStatus: string;
  tls: boolean;
  /** Which authentication the server asked for. */
  auth: "trust" | "cleartext" | "md5" | "scram-sha-256";
}

/** Waits for frames from a socket during the handshake. */
class HandshakeReader {
  readonly framer: BackendFramer;
  readonly #socket: Socket;
  #waiter: ((f: Frame | Error) => void) | undefined;
  #error: Error | undefined;
  readonly #onData = (chunk: Buffer) => {
    this.framer.push(chunk);
    this.#wake();
  };
  readonly #onEnd = () =>
    this.#fail(new UpstreamConnectError("protocol", "upstream closed the connection during startup"));
  readonly #onError = (err: Error) =>
    this.#fail(
      new UpstreamConnectError("connect", `upstream connection failed: ${err.message}`, { cause: err }),
    );

  constructor(socket: Socket, framer = new BackendFramer(1024 * 1024)) {
    this.#socket = socket;
    this.framer = framer;
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onEnd);
    socket.on("error", this.#onError);
  }

  #fail(err: Error) {
    this.#error ??= err;
    this.#wake();
  }

  #wake() {
    const w = this.#waiter;
    if (!w) return;
    let f: Frame | undefined;
    try {
      f = this.framer.next();
    } catch (err) {
      this.#waiter = undefined;
      w(err as Error);
      return;
    }
    if (f) {
      this.#waiter = undefined;
      w(f);
    } else if (this.#error) {
      this.#waiter = undefined;
      w(this.#error);
    }
  }

  next(): Promise<Frame> {
    return new Promise((resolve, reject) => {
      this.#waiter = (f) => (f instanceof Error ? reject(f) : resolve(f));
      this.#wake();
    });
  }

  detach() {
    this.#socket.off("data", this.#onData);
    this.#socket.off("end", this.#onEnd);
    this.#socket.off("close", this.#onEnd);
    this.#socket.off("error", this.#onError);
  }
}

function tcp(target: UpstreamTarget): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: target.host, port: target.port });
    s.setNoDelay(true);
    const onError = (err: Error) => {
      s.destroy();
      reject(
        new UpstreamConnectError(
          "connect",
          `cannot connect to ${target.host}:${target.port}: ${err.message}`,
          { cause: err },
        ),
      );
    };
    s.once("error", onError);
    s.once("connect", () => {
      s.off("error", onError);
      resolve(s);
    });
  });
}

/** SSLRequest, then a verified TLS handshake; exactly one byte may answer the SSLRequest. */
async function startTls(socket: Socket, target: UpstreamTarget): Promise<Socket> {
  const answer = await new Promise<Buffer>((resolve, reject) => {
    const onData = (b: Buffer) => {
      cleanup();
      resolve(b);
    };
    const onClose = () => {
      cleanup();
      reject(new UpstreamConnectError("tls", "upstream closed the connection after SSLRequest"));
    };
    const cleanup = () => {
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onClose);
    };
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.on("error", onClose);
    socket.write(startupPacket(SSL_REQUEST));
  });
  socket.pause();
  // Bytes after the 'S' would be unencrypted data injected before the handshake (CVE-2021-23222).
  if (answer.length !== 1 || answer[0] !== 0x53) {
    socket.destroy();
    throw new UpstreamConnectError(
      "tls",
      answer[0] === 0x4e
        ? `upstream ${target.host}:${target.port} does not accept TLS, and the policy requires ${target.tls.mode}`
        : "upstream answered the SSLRequest with unexpected bytes",
    );
  }
  const name = target.tls.serverName ?? target.host;
  const verifyName = target.tls.mode === "verify-full";
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      socket,
      ...(isIP(name) ? {} : { servername: name }),
      ...(target.tls.ca ? { ca: target.tls.ca } : {}),
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      checkServerIdentity: (_host: string, cert: PeerCertificate) =>
        verifyName ? checkServerIdentity(name, cert) : undefined,
    });
    s.once("secureConnect", () => {
      s.off("error", onError);
      resolve(s);
    });
    const onError = (err: Error) => {
      s.destroy();
      reject(
        new UpstreamConnectError("tls", `TLS to the upstream failed (${target.tls.mode}): ${err.message}`, {
          cause: err,
        }),
      );
    };
    s.once("error", onError);
  });
}

async function open(target: UpstreamTarget): Promise<{ socket: Socket; tls: boolean }> {
  const socket = await tcp(target);
  if (target.tls.mode === "disable") return { socket, tls: false };
  try {
    return { socket: await startTls(socket, target), tls: true };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

function withTimeout<V>(p: Promise<V>, ms: number, onTimeout: () => void): Promise<V> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new UpstreamConnectError("timeout", `upstream did not complete startup within ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Connects, authenticates and waits for the first ReadyForQuery. */
export async function startUpstream(
  target: UpstreamTarget,
  creds: UpstreamCredentials,
  params: Record<string, string>,
): Promise<UpstreamSession> {
  let socket: Socket | undefined;
  const run = async (): Promise<UpstreamSession> => {
    const opened = await open(target);
    socket = opened.socket;
    const reader = new HandshakeReader(socket);
    socket.resume();
    socket.write(startupMessage({ ...params, user: creds.user }));
    const relay: Buffer[] = [];
    const parameters: Record<string, string> = {};
    let pid = 0;
    let secret = 0;
    let auth: UpstreamSession["auth"] = "trust";
    let scram: ScramClient | undefined;
    const needPassword = (method: string) => {
      if (creds.password === undefined)
        throw new AuthError(
          `the upstream asks for ${method} authentication but the policy holds no password`,
        );
      return creds.password;
    };
    for (;;) {
      const f = await reader.next();
      const r = new Reader(f.payload);
      switch (f.type) {
        case T.Authentication: {
          const code = r.int32();
          if (code === 0) break;
          if (code === 3) {
            auth = "cleartext";
            socket.write(passwordMessage(needPassword("cleartext password")));
          } else if (code === 5) {
            auth = "md5";
            socket.write(passwordMessage(md5Password(creds.user, needPassword("MD5"), r.bytes(4))));
          } else if (code === 10) {
            const mechanisms: string[] = [];
            for (;;) {
              const m = r.cstr();
              if (m === "") break;
              mechanisms.push(m);
            }
            if (!mechanisms.includes("SCRAM-SHA-256"))
              throw new AuthError(
                `the upstream offers only unsupported SASL mechanisms: ${mechanisms.join(", ")}`,
              );
            auth = "scram-sha-256";
            scram = new ScramClient(needPassword("SCRAM-SHA-256"));
            socket.write(saslInitialResponse("SCRAM-SHA-256", scram.first()));
          } else if (code === 11) {
            if (!scram) throw new AuthError("SASLContinue without SASL");
            socket.write(saslResponse(await scram.final(decodeLoose(r.bytes(r.remaining)))));
          } else if (code === 12) {
            if (!scram) throw new AuthError("SASLFinal without SASL");
            scram.verify(decodeLoose(r.bytes(r.remaining)));
          } else {
            throw new AuthError(`the upstream asks for an unsupported authentication method (code ${code})`);
          }
          break;
        }
        case T.ErrorResponse:
          throw new UpstreamError(parseErrorFields(f.payload));
        case T.ParameterStatus: {
          const name = r.cstr("parameter name");
          parameters[name] = r.cstr("parameter value");
          relay.push(f.raw);
          break;
        }
        case T.NoticeResponse:
          relay.push(f.raw);
          break;
        case T.BackendKeyData:
          pid = r.int32();
          secret = r.int32();
          break;
        case T.NegotiateProtocolVersion:
          break;
        case T.ReadyForQuery: {
          if (scram && !scram.verified) {
            throw new AuthError("the upstream completed SCRAM without proving its signature");
          }
          reader.detach();
          return {
            socket,
            framer: reader.framer,
            pid,
            secret,
            relay,
            parameters,
            txStatus: String.fromCharCode(r.byte()),
            tls: opened.tls,
            auth,
          };
        }
        default:
          throw new UpstreamConnectError(
            "protocol",
            `unexpected message ${f.type} from the upstream during startup`,
          );
      }
    }
  };
  try {
    return await withTimeout(run(), target.connectTimeoutMs, () => socket?.destroy());
  } catch (err) {
    socket?.destroy();
    if (err instanceof AuthError) throw new UpstreamConnectError("auth", err.message, { cause: err });
    throw err;
  }
}

/** Sends a CancelRequest for the upstream session (pid, secret) over a fresh connection. */
export async function cancelUpstream(target: UpstreamTarget, pid: number, secret: number): Promise<void> {
  const { socket } = await withTimeout(open(target), target.connectTimeoutMs, () => {});
  await new Promise<void>((resolve) => {
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
    socket.end(cancelRequest(pid, secret));
  });
}

/**
 * Runs one simple query of the sidecar's own on a ready upstream session (before the agent's
 * traffic flows) and returns its rows as text; throws UpstreamError on an ErrorResponse.
 */
export async function sidecarQuery(
  up: UpstreamSession,
  sql: string,
  timeoutMs: number,
): Promise<(string | null)[][]> {
  const reader = new HandshakeReader(up.socket, up.framer);
  try {
    up.socket.write(queryMessage(sql));
    const rows: (string | null)[][] = [];
    let error: UpstreamError | undefined;
    const run = async () => {
      for (;;) {
        const f = await reader.next();
        if (f.type === T.DataRow) {
          const r = new Reader(f.payload);
          const n = r.int16();
          const row: (string | null)[] = [];
          for (let i = 0; i < n; i++) {
            const len = r.int32();
            row.push(len < 0 ? null : decodeLoose(r.bytes(len)));
          }
          rows.push(row);
        } else if (f.type === T.ErrorResponse) error = new UpstreamError(parseErrorFields(f.payload));
        else if (f.type === T.ReadyForQuery) {
          up.txStatus = String.fromCharCode(f.payload[0] ?? 0x49);
          return;
        }
      }
    };
    await withTimeout(run(), timeoutMs, () => up.socket.destroy());
    if (error) throw error;
    return rows;
  } finally {
    reader.detach();
  }
}

/** As sidecarQuery, with each row keyed by its column name (from the RowDescription). */
export async function sidecarRecords(
  up: UpstreamSession,
  sql: string,
  timeoutMs: number,
): Promise<Record<string, string | null>[]> {
  const reader = new HandshakeReader(up.socket, up.framer);
  try {
    up.socket.write(queryMessage(sql));
    const rows: Record<string, string | null>[] = [];
    let names: string[] = [];
    let error: UpstreamError | undefined;
    const run = async () => {
      for (;;) {
        const f = await reader.next();
        if (f.type === T.RowDescription) names = parseRowDescription(f.payload).map((c) => c.name);
        else if (f.type === T.DataRow) {
          const r = new Reader(f.payload);
          const n = r.int16();
          const row: Record<string, string | null> = {};
          for (let i = 0; i < n; i++) {
            const len = r.int32();
            row[names[i] ?? String(i)] = len < 0 ? null : decodeLoose(r.bytes(len));
          }
          rows.push(row);
        } else if (f.type === T.ErrorResponse) error = new UpstreamError(parseErrorFields(f.payload));
        else if (f.type === T.ReadyForQuery) {
          up.txStatus = String.fromCharCode(f.payload[0] ?? 0x49);
          return;
        }
      }
    };
    await withTimeout(run(), timeoutMs, () => up.socket.destroy());
    if (error) throw error;
    return rows;
  } finally {
    reader.detach();
  }
}
