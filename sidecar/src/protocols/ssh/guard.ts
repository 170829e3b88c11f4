// The SSH guard as a ConnectionHandler: one ssh2 Server (the agent-facing side, with a stable
// host key: host-key.ts) fed with sockets from the listeners, one
// session (session.ts) per agent connection. See README.md in this directory.
import { type AddressInfo, createServer, type Server as NetServer, type Socket } from "node:net";
// ssh2 is CommonJS and its `Server` is not visible to Node's ESM named-export detection.
import ssh2 from "ssh2";

const { Server } = ssh2;

import type { ApprovalGate } from "../../approvals/gate.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import { createRecorder, type Recorder } from "../../recording/index.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import type { AcceptInfo, ConnectionHandler } from "../handler.ts";
import { assertSupportedSsh2 } from "./cert-auth.ts";
import { loadHostKey } from "./host-key.ts";
import { fingerprint, publicKeyLine } from "./keys.ts";
import { type SshSession, startSession } from "./session.ts";

export interface SshGuardOptions {
  /** Asked when a rule says requireApproval; absent → such requests are refused (fail closed). */
  approvals?: ApprovalGate;
  /** Where sessions are recorded; default: a recorder on ctx.logger writing to stdout. */
  recorder?: Recorder;
  /** OpenSSH or PEM private key text for the agent-facing host key. */
  hostKey?: string;
  /**
   * A file holding it: read at start when it exists (a mounted Secret, or the key an earlier start
   * generated), else generated once and written there. Ignored when hostKey is given. Neither:
   * an ephemeral key (tests).
   */
  hostKeyFile?: string;
  /** Upstream connect + authentication deadline (default 10 s). */
  connectTimeoutMs?: number;
  /** Masked output held this long without more output is released (default 50 ms). */
  idleFlushMs?: number;
}

export interface SshGuard extends ConnectionHandler {
  /** The agent-facing host key, `ssh-ed25519 AAAA...` (for the agent's known_hosts). */
  readonly hostPublicKey: string;
  /** Open agent sessions. */
  readonly sessions: number;
  /** Serves `connection` on a port of its own (tests; the sidecar's listeners call accept()). */
  listen(connection: CompiledConnection, opts?: { port?: number; host?: string }): Promise<AddressInfo>;
  /** Ends every session and listener now. */
  close(): Promise<void>;
}

const keyOf = (ip: string | undefined, port: number | undefined) => `${ip ?? ""}|${port ?? ""}`;

export function createSshGuard(ctx: SidecarContext, options: SshGuardOptions = {}): SshGuard {
  try {
    assertSupportedSsh2();
  } catch (err) {
    // Only certificate authentication depends on the pinned ssh2 internals: say so at start, and
    // let such sessions fail with the same message rather than taking the whole sidecar down.
    ctx.logger.error(
      { err: err instanceof Error ? err.message : String(err) },
      "ssh guard: certificates unavailable",
    );
  }
  const loaded = loadHostKey({
    ...(options.hostKey !== undefined ? { text: options.hostKey } : {}),
    ...(options.hostKeyFile ? { path: options.hostKeyFile } : {}),
  });
  const { key: hostKey, text: hostKeyText } = loaded;
  ctx.logger.info(
    {
      fingerprint: fingerprint(hostKey.publicBlob),
      type: hostKey.type,
      source: loaded.source,
      ...(loaded.path ? { path: loaded.path } : {}),
    },
    "ssh host key",
  );
  const recorder = options.recorder ?? createRecorder({ logger: ctx.logger });
  const sessions = new Set<SshSession>();
  const pending = new Map<string, CompiledConnection>();
  const listeners = new Set<NetServer>();
  let draining = false;
  let inflight = 0;
  const idle = new Set<() => void>();

  const server = new Server({ hostKeys: [hostKeyText], ident: "airlock" });
  server.on("error", (err: Error) => ctx.logger.warn({ err: err.message }, "ssh server error"));
  server.on("connection", (agent, info) => {
    const key = keyOf(info.ip, info.port);
    const connection = pending.get(key);
    pending.delete(key);
    if (!connection) {
      agent.end();
      return;
    }
    const session = startSession(
      {
        ctx,
        recorder,
        approvals: options.approvals,
        connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
        idleFlushMs: options.idleFlushMs ?? 50,
        draining: () => draining,
        begin: () => {
          inflight++;
        },
        done: () => {
          inflight--;
          if (inflight === 0) for (const r of idle) r();
        },
      },
      agent,
      connection,
    );
    sessions.add(session);
    agent.once("close", () => sessions.delete(session));
  });

  const accept = (socket: Socket, connection: CompiledConnection, info: AcceptInfo) => {
    if (draining) {
      socket.destroy();
      return;
    }
    socket.on("error", () => socket.destroy());
    if (info.head?.length) socket.unshift(info.head);
    // ssh2 announces the connection after the version exchange with the peer's address only:
    // that address (unique among live sockets) carries the policy connection across.
    const key = keyOf(socket.remoteAddress, socket.remotePort);
    pending.set(key, connection);
    socket.once("close", () => pending.delete(key));
    server.injectSocket(socket);
  };

  return {
    hostPublicKey: publicKeyLine(hostKey.publicBlob),
    get sessions() {
      return sessions.size;
    },
    accept,
    async listen(connection, opts = {}) {
      const tcp = createServer((socket) => {
        const current = ctx.policies.current().connections.get(connection.spec.name) ?? connection;
        accept(socket, current, { via: "listener" });
      });
      listeners.add(tcp);
      return new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(opts.port ?? connection.spec.listen?.port ?? 0, opts.host ?? "127.0.0.1", () =>
          resolve(tcp.address() as AddressInfo),
        );
      });
    },
    async drain() {
      draining = true;
      if (inflight === 0) return;
      await new Promise<void>((resolve) => {
        const r = () => {
          idle.delete(r);
          resolve();
        };
        idle.add(r);
      });
    },
    async close() {
      draining = true;
      for (const s of sessions) s.close();
      await Promise.all(
        [...listeners].map((l) => new Promise<void>((r) => (l.listening ? l.close(() => r()) : r()))),
      );
      listeners.clear();
      if (!options.recorder) await recorder.close();
    },
  };
}
