// The PostgreSQL guard (a ConnectionHandler): one Session per agent connection, a registry of
// cancel keys (the agent sees the sidecar's BackendKeyData, never the upstream's), masking state
// per compiled connection, and drain for preStop.
import type { Socket } from "node:net";
import { connectionMasking } from "../../operations/masking.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { loadSqlParser } from "../../sql/index.ts";
import type { AcceptInfo, ConnectionHandler } from "../handler.ts";
import type { PodCa } from "../http/tls/pod-ca.ts";
import { negotiateAgentTls } from "./agent-tls.ts";
import type { ApprovalGate } from "./approval.ts";
import type { FrontendLimits } from "./framing.ts";
import { createMaskState, type MaskState } from "./row-masking.ts";
import { Session } from "./session.ts";

export interface PostgresGuardOptions {
  /** Where requireApproval statements wait; absent → they are denied with a clear message. */
  approvals?: ApprovalGate;
  /** Frontend message size limits (defaults: startup 10000 B, Query/Parse 16 MiB, others 1 GiB). */
  limits?: Partial<FrontendLimits>;
  /** Upstream connect + TLS + authentication deadline (default 10 s). */
  connectTimeoutMs?: number;
  /** The agent must complete startup (and authentication) within this (default 30 s). */
  startupTimeoutMs?: number;
  /** Named prepared statements per session (default 10000). */
  maxPreparedStatements?: number;
  /** An approved statement's batch the agent leaves open without Sync ends the session after this (default 10 s). */
  approvedBatchTimeoutMs?: number;
  /** The pod CA in force, for connections with agentTls (TLS between the agent and the sidecar). */
  podCa?: () => PodCa | undefined;
}

export interface PostgresGuard extends ConnectionHandler {
  /** Open sessions. */
  readonly sessions: number;
  /** Resolves once the SQL parser is loaded (sessions wait for it on their own). */
  readonly ready: Promise<void>;
}

/** When the caller gives no drain deadline. */
const DEFAULT_DRAIN_MS = 20_000;

export function createPostgresGuard(ctx: SidecarContext, options: PostgresGuardOptions = {}): PostgresGuard {
  const sessions = new Set<Session>();
  const cancels = new Map<string, Session>();
  const masks = new WeakMap<CompiledConnection, MaskState | null>();
  const startupTimeoutMs = options.startupTimeoutMs ?? 30_000;
  let draining = false;
  const ready = loadSqlParser();
  ready.catch((err: unknown) =>
    ctx.logger.error({ err: String(err) }, "postgres: the SQL parser failed to load"),
  );

  // Throws when the connection's masking rules do not compile: the session then fails closed.
  const maskStateFor = (c: CompiledConnection): MaskState | undefined => {
    let m = masks.get(c);
    if (m === undefined) {
      m = createMaskState(connectionMasking(c, ctx.hashKey)) ?? null;
      masks.set(c, m);
    }
    return m ?? undefined;
  };

  return {
    get sessions() {
      return sessions.size;
    },
    ready,
    accept(raw: Socket, connection: CompiledConnection, info: AcceptInfo) {
      const spec = connection.spec;
      negotiateAgentTls(raw, info.head, {
        mode: spec.agentTls?.mode ?? "disable",
        ca: options.podCa?.(),
        names: [spec.target.host, ...(spec.target.aliases ?? [])],
        logger: ctx.logger,
        connection: spec.name,
        timeoutMs: startupTimeoutMs,
      }).then(
        (n) => {
          if (n) start(n.socket, connection, n.head);
        },
        (err: unknown) => {
          ctx.logger.info({ connection: spec.name, err: String(err) }, "postgres: agent startup failed");
          raw.destroy();
        },
      );
    },
    async drain(deadline = Date.now() + DEFAULT_DRAIN_MS) {
      draining = true;
      // Each session ends at its next boundary outside a transaction (57P01); at the deadline,
      // whatever is left ends as it is.
      for (const s of sessions) s.drain();
      const sleep = () => new Promise((r) => setTimeout(r, 50));
      while (sessions.size > 0 && Date.now() < deadline) await sleep();
      if (sessions.size > 0) {
        ctx.logger.warn(
          { sessions: sessions.size },
          "postgres: drain deadline passed; ending the sessions left",
        );
        for (const s of sessions) s.drain(true);
        // A session closes once the agent took its FATAL, or 2 s after (Session.#fatal).
        while (sessions.size > 0) await sleep();
      }
    },
  };

  function start(socket: Socket, connection: CompiledConnection, head: Buffer | undefined) {
    const session = new Session(
      {
        ctx,
        connection,
        limits: options.limits ?? {},
        connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
        startupTimeoutMs,
        maxPreparedStatements: options.maxPreparedStatements ?? 10_000,
        approvedBatchTimeoutMs: options.approvedBatchTimeoutMs ?? 10_000,
        approvals: options.approvals,
        draining: () => draining,
        maskStateFor,
        parserReady: ready,
        registerCancelKey: (key, s) => cancels.set(key, s),
        cancelKey: (pid, secret) => {
          const target = cancels.get(`${pid}:${secret}`);
          if (target) target.cancel();
          else
            ctx.logger.info(
              { connection: connection.spec.name },
              "postgres: cancel request for an unknown key ignored",
            );
        },
        onClose: (s) => {
          sessions.delete(s);
          const key = s.agentKey;
          if (key && cancels.get(key) === s) cancels.delete(key);
        },
      },
      socket,
    );
    sessions.add(session);
    session.start(head);
    socket.resume(); // paused while the first packet was read (agent-tls.ts)
  }
}
