// One agent connection through the PostgreSQL guard: its phases, its pump and its ending.
//
// Frontend (agent → sidecar): startup (an SSLRequest/GSSENCRequest after the agent leg's TLS was
// settled (agent-tls.ts) is answered 'N', CancelRequest is mapped to the upstream's key,
// StartupMessage), agent authentication (trust, or a cleartext password carrying the end user's
// OIDC token when the policy requires one), the upstream session (session-start.ts), then typed
// messages: the ones that carry SQL are judged before anything reaches the upstream
// (sql-messages.ts, session-judge.ts); every other message is forwarded byte for byte.
//
// Denials keep PostgreSQL's own semantics: instead of the refused message the sidecar sends the
// upstream an Execute of a portal that cannot exist (plus Sync for a simple Query), so the
// server raises a real error — the transaction is aborted exactly as if the statement had
// failed, and extended-protocol messages up to Sync are skipped by the server — and the
// server's ErrorResponse is replaced by the sidecar's (SQLSTATE 42501, naming policy and rule).
// Locally, after a refused Parse or Bind, the sidecar also drops the agent's messages up to Sync.
//
// Backend (upstream → agent): replies.ts matches every reply to the message that caused it
// (masking plans, statement ends for audit, denials). The pump is duplex.ts; statement and portal
// bookkeeping statements.ts; result masking results.ts; an approved statement's own connection
// approved-run.ts, swapped in as the session's upstream attachment while it runs. Each
// statement is one operation of the shared lifecycle (operations/lifecycle.ts).
import { randomBytes, randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import { ApprovalWaitCanceled } from "../../approvals/gate.ts";
import type { HeldCredential } from "../../credentials/index.ts";
import { refusal, type SqlJudgement } from "../../decisions/index.ts";
import type { UserIdentity } from "../../identity/index.ts";
import { recordApproval } from "../../operations/approval-step.ts";
import { OperationLog } from "../../operations/lifecycle.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Decision } from "../../policy/types.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";
import type { ClassifiedStatement } from "../../sql/index.ts";
import { type ApprovalGate, askApproval, sqlApprovalAsk, type Verdict } from "./approval.ts";
import { ApprovedRuns, type Attachment, strayInApprovedBatch } from "./approved-run.ts";
import { SessionCatalog } from "./catalog-source.ts";
import { connectUpstream } from "./connect.ts";
import { Duplex, HIGH_WATER } from "./duplex.ts";
import { type BackendFramer, type Frame, FrontendFramer, type FrontendLimits, typeName } from "./framing.ts";
import {
  authenticationCleartext,
  errorResponse,
  executeMessage,
  ProtocolError,
  syncMessage,
  T,
  terminateMessage,
} from "./protocol.ts";
import { ReplyMatcher } from "./replies.ts";
import { ResultMasking } from "./results.ts";
import type { MaskState } from "./row-masking.ts";
import { SessionJudge } from "./session-judge.ts";
import { endBefore, readyMessages, startUpstream } from "./session-start.ts";
import { SqlMessages } from "./sql-messages.ts";
import { parseStartupPacket, verifyPasswordToken } from "./startup.ts";
import { auditOperation, type Op, SessionStatements } from "./statements.ts";
import { cancelUpstream, type UpstreamSession, type UpstreamTarget } from "./upstream.ts";

export interface SessionDeps {
  ctx: SidecarContext;
  /** The policy connection at accept time; refreshed by name when the policy set changes. */
  connection: CompiledConnection;
  limits: Partial<FrontendLimits>;
  connectTimeoutMs: number;
  startupTimeoutMs: number;
  maxPreparedStatements: number;
  /**
   * An approved batch (its Parse on the approved connection) left open this long by the agent
   * without Sync ends the session: the approved role would otherwise hold its uncommitted
   * work, row locks and lease for as long as the agent likes.
   */
  approvedBatchTimeoutMs: number;
  approvals: ApprovalGate | undefined;
  draining(): boolean;
  maskStateFor(connection: CompiledConnection): MaskState | undefined;
  parserReady: Promise<void>;
  /** Cancel keys: agent-visible `${pid}:${secret}` → session. */
  registerCancelKey(key: string, session: Session): void;
  cancelKey(pid: number, secret: number): void;
  onClose(session: Session): void;
}

/** Extended-protocol messages: after one, the batch is open until Sync. */
const EXTENDED = new Set<number>([T.Parse, T.Bind, T.Describe, T.Execute, T.Close, T.Flush]);

const DRAIN_MESSAGE =
  "terminating connection: the Airlock sidecar is shutting down (drain); reconnect to continue";
const DRAIN_DEADLINE_MESSAGE =
  "terminating connection: the Airlock sidecar is shutting down and its drain deadline passed; reconnect to continue";

export class Session {
  readonly id = randomUUID();
  readonly #d: SessionDeps;
  readonly #ctx: SidecarContext;
  readonly #agent: Socket;
  readonly #io: Duplex;
  readonly #front: FrontendFramer;
  #back: BackendFramer | undefined;
  #phase: "startup" | "auth" | "connecting" | "ready" | "closed" = "startup";
  readonly #name: string;
  #params: Record<string, string> = {};
  #negotiate: Buffer | undefined;
  #user: UserIdentity | undefined;
  #target: UpstreamTarget | undefined;
  #upKey: { pid: number; secret: number } | undefined;
  #agentKey: string | undefined;
  readonly #ops: OperationLog;
  readonly #results: ResultMasking;
  readonly #statements = new SessionStatements();
  readonly #replies: ReplyMatcher;
  /** The policy, subject, parser and catalog the session's SQL is judged with. */
  readonly #judge: SessionJudge;
  readonly #sql: SqlMessages;
  /** An approved statement running on a connection of its own (approved-run.ts). */
  readonly #runs: ApprovedRuns;
  #localSkip = false;
  readonly #bogusPortal = `airlock_denied_${randomBytes(12).toString("hex")}`;

  /** The upstream credential held for this session (a Vault lease is revoked at close). */
  #credential: HeldCredential | undefined;
  #pumping = false;
  #blocked = false;
  #approvalAbort: AbortController | undefined;
  /** Extended-protocol messages were forwarded since the last Sync. */
  #unsynced = false;
  /** Waiting for every forwarded message to be answered (#whenAnswered). */
  #answered: (() => void) | undefined;
  #startupTimer: NodeJS.Timeout | undefined;
  #closing = false;
  /** What open operations are audited with when the session ends under them. */
  #endedBy: "session_closed" | "upstream_closed" = "session_closed";
  /** The sidecar drains: end at the next boundary outside a transaction (see drain()). */
  #draining = false;
  #broken: unknown;
  /** The upstream's catalog the session judges with (decisions/sql.ts). */
  readonly #catalog = new SessionCatalog();

  constructor(deps: SessionDeps, agent: Socket) {
    this.#d = deps;
    this.#ctx = deps.ctx;
    this.#agent = agent;
    this.#name = deps.connection.spec.name;
    let mask: MaskState | undefined;
    try {
      mask = deps.maskStateFor(deps.connection);
    } catch (err) {
      this.#broken = err; // masking rules that do not compile: the session fails closed at start
    }
    this.#results = new ResultMasking(mask, (name) => this.#statements.cursorHistory.get(name));
    this.#front = new FrontendFramer(deps.limits);
    this.#judge = new SessionJudge(
      {
        ctx: deps.ctx,
        connection: deps.connection,
        maskStateFor: deps.maskStateFor,
        results: this.#results,
        catalog: this.#catalog,
        statements: this.#statements,
      },
      subjectFor(deps.ctx.workload),
    );
    const w = deps.ctx.workload;
    this.#ops = new OperationLog(deps.ctx, {
      session: this.id,
      connection: this.#name,
      protocol: "postgres",
      identity: Object.freeze({ serviceAccount: w.subject, pod: w.podName, namespace: w.namespace }),
      failClosed: (err) => this.#fatal(new ProtocolError(err.message, "58000")),
    });
    this.#io = new Duplex(agent, {
      holdAgent: () => this.#blocked && this.#front.buffered > HIGH_WATER,
      closed: () => this.#phase === "closed",
    });
    this.#replies = new ReplyMatcher({
      results: this.#results,
      statements: this.#statements,
      toAgent: (b) => this.#io.toAgent(b),
      finish: (op) => this.#finish(op),
      countMasked: (counts) => this.#countMasked(counts),
      fatalPassed: () => {
        this.#io.flushAgent();
        this.#fatalPassed();
      },
      closing: () => this.#closing,
      transactionEnded: () => this.#catalog.transactionEnded(),
    });
    this.#results.uncertain = () => !this.#catalog.certain;
    this.#runs = new ApprovedRuns({
      session: this.id,
      logger: deps.ctx.logger,
      io: this.#io,
      replies: this.#replies,
      statements: this.#statements,
      batchTimeoutMs: deps.approvedBatchTimeoutMs,
      connectionName: () => this.#name,
      connect: (source) =>
        connectUpstream({
          ctx: this.#ctx,
          session: this.id,
          connection: this.#conn,
          params: this.#params,
          readOnly: false,
          connectTimeoutMs: this.#d.connectTimeoutMs,
          results: this.#results,
          source,
        }),
      attached: () => this.#attached(),
      attach: (a) => this.#attach(a),
      readFrom: (up, current) => this.#readFrom(up, current),
      whenAnswered: () => this.#whenAnswered(),
      ending: () => this.#isClosed() || this.#closing,
      blocked: () => this.#blocked,
      fatal: (err) => this.#fatal(err),
    });
    this.#sql = new SqlMessages({
      io: this.#io,
      replies: this.#replies,
      statements: this.#statements,
      results: this.#results,
      catalog: this.#catalog,
      judge: this.#judge,
      runs: this.#runs,
      maxPreparedStatements: deps.maxPreparedStatements,
      unsynced: () => this.#unsynced,
      synced: () => this.#synced(),
      rereadCatalog: () => this.#rereadCatalog(),
      approve: (j, text) => this.#approve(j, text),
      approvedSource: () => this.#ctx.credentials.forApproved(this.#conn.spec),
      newOp: (statements, decision, audited) => this.#newOp(statements, decision, audited),
      opOf: (statements, v) => this.#opOf(statements, v),
      deny: (op, simple) => this.#deny(op, simple),
      denyVerdict: (statements, v, simple) => this.#denyVerdict(statements, v, simple),
    });
  }

  /** The policy connection in force. */
  get #conn(): CompiledConnection {
    return this.#judge.connection;
  }

  /** No statement is waiting for a response or a decision. */
  get idle(): boolean {
    return this.#phase === "closed" || (this.#replies.length === 0 && !this.#blocked && !this.#runs.current);
  }

  start(head?: Buffer) {
    const a = this.#agent;
    a.setNoDelay(true);
    a.on("data", (c: Buffer) => this.#onAgentData(c));
    a.on("error", () => this.close());
    a.on("close", () => this.close());
    a.on("end", () => this.close());
    this.#startupTimer = setTimeout(() => {
      if (this.#phase !== "ready")
        this.#fatal(new ProtocolError("startup did not complete in time", "08006"));
    }, this.#d.startupTimeoutMs);
    this.#startupTimer.unref();
    if (this.#d.draining()) {
      this.#fatal(new ProtocolError("the Airlock sidecar is shutting down", "57P03"));
      return;
    }
    if (this.#broken !== undefined) {
      this.#fatal(this.#broken);
      return;
    }
    if (head?.length) this.#onAgentData(head);
  }

  /**
   * The sidecar drains: end the session with 57P01 (what PostgreSQL's own shutdown sends) at its
   * next boundary outside a transaction (nothing in flight, ReadyForQuery 'I'), so clients and
   * pools reconnect elsewhere; a transaction in progress finishes first. Checked now and after
   * every batch from the upstream (every statement ends with one). `now`: the drain deadline
   * passed, end whatever the session is doing (what was in flight is audited session_closed).
   */
  drain(now = false) {
    this.#draining = true;
    if (now) this.#fatal(new ProtocolError(DRAIN_DEADLINE_MESSAGE, "57P01"));
    else this.#endIfDrained();
  }

  #endIfDrained() {
    if (this.#phase === "ready" && this.idle && this.#replies.txStatus === "I")
      this.#fatal(new ProtocolError(DRAIN_MESSAGE, "57P01"));
  }

  /** Cancel the statement in flight: stop waiting for an approval, and cancel upstream. */
  cancel() {
    this.#approvalAbort?.abort(new ApprovalWaitCanceled());
    const target = this.#target;
    const key = this.#upKey;
    if (!target || !key) return;
    cancelUpstream(target, key.pid, key.secret).catch((err: unknown) =>
      this.#ctx.logger.warn(
        { session: this.id, err: String(err) },
        "postgres: upstream cancel request failed",
      ),
    );
  }

  close() {
    if (this.#phase === "closed") return;
    const wasReady = this.#phase === "ready";
    this.#phase = "closed";
    clearTimeout(this.#startupTimer);
    this.#approvalAbort?.abort(new Error("the agent disconnected"));
    this.#agent.destroy();
    this.#io.up?.destroy();
    this.#runs.abandon();
    // Statements forwarded whose reply never came still get their one audit event.
    for (const op of this.#replies.openOperations()) {
      op.error ??= this.#endedBy;
      this.#finish(op);
    }
    if (wasReady) this.#ctx.metrics.sessions.dec({ connection: this.#name, protocol: "postgres" });
    this.#credential?.release();
    this.#d.onClose(this);
  }

  /** (A method, so TypeScript does not narrow the phase across awaits and callbacks.) */
  #isClosed(): boolean {
    return this.#phase === "closed";
  }

  get agentKey(): string | undefined {
    return this.#agentKey;
  }

  #onAgentData(chunk: Buffer) {
    if (this.#phase === "closed") return;
    this.#front.push(chunk);
    this.#pump();
  }

  /** Sends a FATAL ErrorResponse (when the agent can still read it) and closes. */
  #fatal(err: unknown) {
    if (this.#phase === "closed" || this.#closing) return;
    this.#closing = true;
    const pe =
      err instanceof ProtocolError
        ? err
        : new ProtocolError(
            `internal error in the Airlock sidecar: ${err instanceof Error ? err.message : String(err)}`,
            "XX000",
          );
    if (!(err instanceof ProtocolError))
      this.#ctx.logger.error({ session: this.id, err: String(err) }, "postgres: session failed");
    else
      this.#ctx.logger.info({ session: this.id, code: pe.code }, `postgres: closing session: ${pe.message}`);
    this.#io.discard();
    if (this.#io.up && this.#phase === "ready") this.#io.up.end(terminateMessage());
    this.#agent.end(errorResponse({ severity: "FATAL", code: pe.code, message: pe.message }));
    const t = setTimeout(() => this.close(), 2000);
    t.unref();
    this.#agent.once("finish", () => this.close());
  }

  // ----------------------------------------------------------------------------- frontend

  #pump() {
    if (this.#pumping || this.#phase === "closed" || this.#closing) return;
    this.#pumping = true;
    try {
      while (!this.#blocked && !this.#isClosed() && !this.#closing) {
        const f = this.#front.next();
        if (!f) break;
        const wait = this.#handle(f);
        if (wait) {
          this.#blocked = true;
          wait.then(
            () => {
              this.#blocked = false;
              if (this.#isClosed()) return;
              this.#io.flush();
              this.#io.flow();
              this.#pump();
              // The wait may have held the session busy past its last answer (an approved run).
              if (this.#draining) this.#endIfDrained();
            },
            (err: unknown) => this.#fatal(err),
          );
          break;
        }
      }
      this.#io.flush();
    } catch (err) {
      this.#fatal(err);
    } finally {
      this.#pumping = false;
    }
    this.#io.flow();
  }

  #handle(f: Frame): Promise<void> | undefined {
    switch (this.#phase) {
      case "startup":
        return this.#onStartupPacket(f);
      case "auth":
        return this.#onPassword(f);
      case "ready":
        return this.#onMessage(f);
      default:
        throw new ProtocolError("unexpected message before the session is ready");
    }
  }

  #onStartupPacket(f: Frame): Promise<void> | undefined {
    const p = parseStartupPacket(f);
    if (p.kind === "encryption") {
      this.#agent.write("N");
      return undefined;
    }
    if (p.kind === "cancel") {
      this.#d.cancelKey(p.pid, p.secret);
      this.close();
      return undefined;
    }
    this.#front.endStartup();
    this.#params = p.params;
    this.#negotiate = p.negotiate;
    if (this.#conn.requireUserToken) {
      this.#phase = "auth";
      if (this.#negotiate) this.#agent.write(this.#negotiate);
      this.#agent.write(authenticationCleartext());
      return undefined;
    }
    return this.#connect();
  }

  async #onPassword(f: Frame): Promise<void> {
    const user = await verifyPasswordToken(this.#ctx, this.#conn, f, {
      session: this.id,
      connection: this.#name,
    });
    this.#user = user;
    this.#judge.subject = subjectFor(this.#ctx.workload, { user: user.user, groups: user.groups });
    await this.#connect(true);
  }

  async #connect(authRequested = false): Promise<void> {
    this.#phase = "connecting";
    const ctx = this.#ctx;
    await this.#d.parserReady;
    const { target, up, readOnly, statementTimeoutMs, parser } = await startUpstream({
      ctx,
      session: this.id,
      connection: this.#conn,
      params: this.#params,
      subject: this.#judge.subject,
      connectTimeoutMs: this.#d.connectTimeoutMs,
      results: this.#results,
      catalog: this.#catalog,
      originsSql: this.#judge.originsSql(),
      holding: (credential) => {
        this.#credential = credential;
        // Every operation's audit event names the lease it ran under (not the secret).
        if (credential?.audit.lease) this.#ops.credential = credential.audit;
        credential?.onEnding?.((endsAt) =>
          endBefore(endsAt, {
            closed: () => this.#isClosed(),
            idle: () => this.idle,
            fatal: (err) => this.#fatal(err),
          }),
        );
        if (this.#isClosed()) credential?.release();
      },
    });
    this.#target = target;
    this.#statements.statementTimeout.default = statementTimeoutMs;
    this.#judge.parser = parser;
    if (this.#isClosed() || this.#closing) {
      up.socket.destroy();
      return;
    }
    this.#io.attachUpstream(up.socket);
    this.#attach({
      socket: up.socket,
      framer: up.framer,
      key: { pid: up.pid, secret: up.secret },
      credential: this.#ops.credential,
    });
    const agentSecret = randomBytes(4).readInt32BE(0);
    this.#agentKey = `${up.pid}:${agentSecret}`;
    this.#d.registerCancelKey(this.#agentKey, this);
    this.#replies.txStatus = up.txStatus;
    this.#agent.write(readyMessages(up, agentSecret, authRequested ? undefined : this.#negotiate));
    this.#phase = "ready";
    // The session's audit identity is fixed once it is ready (the user is known by then).
    if (this.#user) {
      const w = ctx.workload;
      this.#ops.identity = Object.freeze({
        serviceAccount: w.subject,
        pod: w.podName,
        namespace: w.namespace,
        user: this.#user.user,
        groups: this.#user.groups,
      });
    }
    clearTimeout(this.#startupTimer);
    ctx.metrics.sessions.inc({ connection: this.#name, protocol: "postgres" });
    ctx.logger.info(
      {
        session: this.id,
        connection: this.#name,
        user: this.#user?.user,
        readOnly,
        tls: up.tls,
        auth: up.auth,
      },
      "postgres: session ready",
    );
    this.#readFrom(up, () => true);
    if (this.#draining) this.#endIfDrained();
  }

  /** What the session writes to, reads replies from, cancels and audits under. */
  #attached(): Attachment {
    return { socket: this.#io.up, framer: this.#back, key: this.#upKey, credential: this.#ops.credential };
  }

  #attach(a: Attachment) {
    this.#io.up = a.socket;
    this.#back = a.framer;
    this.#upKey = a.key;
    this.#ops.credential = a.credential;
  }

  /** Reads `up`'s answers into the session while `current()`; bytes buffered at startup first. */
  #readFrom(up: UpstreamSession, current: () => boolean) {
    const s = up.socket;
    s.on("data", (c: Buffer) => {
      if (current()) this.#onUpstreamData(c);
    });
    const gone = () => {
      if (current()) this.#upstreamGone();
    };
    s.on("error", gone);
    s.on("close", gone);
    s.resume();
    if (up.framer.buffered > 0) this.#onUpstreamData(Buffer.alloc(0));
  }

  #onMessage(f: Frame): Promise<void> | undefined {
    const run = this.#runs.current;
    // After the approved batch's end went upstream, what the agent sends next waits for the
    // session's own connection.
    if (run?.synced) return run.done.then(() => (this.#isClosed() ? undefined : this.#onMessage(f)));
    if (run) this.#runs.arm();
    if (run && !this.#localSkip) {
      const stray = strayInApprovedBatch(f);
      if (stray) {
        // A Query or FunctionCall is answered with ReadyForQuery of its own, as the server would.
        this.#deny(
          this.#newOp([], refusal("sqlApprovedNotAlone", this.#conn.policy, stray)),
          f.type === T.Query || f.type === T.FunctionCall,
        );
        return undefined;
      }
    }
    const wait = this.#dispatch(f);
    if (EXTENDED.has(f.type)) this.#unsynced = true;
    return wait;
  }

  #dispatch(f: Frame): Promise<void> | undefined {
    if (this.#localSkip) {
      // Mirrors the server after an error: everything up to Sync is discarded.
      if (f.type === T.Sync) {
        this.#localSkip = false;
        this.#forwardSync(f.raw);
        return this.#runs.current?.done;
      } else if (f.type === T.Terminate) {
        this.#terminate(f.raw);
      }
      return undefined;
    }
    switch (f.type) {
      case T.Query:
        return this.#sql.query(f);
      case T.Parse:
        return this.#sql.parse(f);
      case T.Bind:
        return this.#sql.bind(f);
      case T.Describe:
        return this.#sql.describe(f);
      case T.Execute:
        return this.#sql.execute(f);
      case T.Close:
        this.#sql.close(f);
        return undefined;
      case T.Sync:
        this.#forwardSync(f.raw);
        return this.#runs.current?.done;
      case T.Flush:
      case T.CopyData:
      case T.CopyDone:
      case T.CopyFail:
        this.#io.toUp(f.raw);
        return undefined;
      case T.Terminate:
        this.#terminate(f.raw);
        return undefined;
      case T.FunctionCall: {
        this.#deny(this.#newOp([], refusal("sqlFastPathCall", this.#conn.policy)), true);
        return undefined;
      }
      default:
        throw new ProtocolError(`unexpected message type ${typeName(f.type)}`);
    }
  }

  #terminate(raw: Buffer) {
    this.#io.toUp(raw);
    this.#io.flushUp();
    this.#io.up?.end();
    this.#closing = true;
    this.#agent.end();
    const t = setTimeout(() => this.close(), 1000);
    t.unref();
  }

  #forwardSync(raw: Buffer) {
    this.#io.toUp(raw);
    this.#replies.sync();
    this.#synced();
  }

  /** A Sync (or a simple Query, its own) went upstream. */
  #synced() {
    this.#unsynced = false;
    this.#runs.synced();
  }

  /** Begins the operation of a message: `decision` governs it, `audited` is what its event records. */
  #newOp(statements: readonly ClassifiedStatement[], decision: Decision, audited: Decision = decision): Op {
    const rec = this.#ops.begin(auditOperation(statements));
    rec.decide(audited);
    return { rec, statements, decision, rows: 0, dataRows: 0, tagged: false };
  }

  #opOf(statements: readonly ClassifiedStatement[], v: Verdict): Op {
    const op = this.#newOp(statements, v.decision, v.audited);
    if (v.approval) op.rec.approved(v.approval);
    if (v.refused) recordApproval(op.rec, v.audited, v.refused);
    return op;
  }

  /** Asks for approval of a requireApproval judgement (`text`: what the approver is shown). */
  async #approve(
    j: Pick<SqlJudgement, "decision" | "statements">,
    text: string | undefined,
  ): Promise<Verdict> {
    const ac = new AbortController();
    this.#approvalAbort = ac;
    // The wait is part of the statement: the session's statement_timeout ends it, as it would
    // end the statement on the server (57014).
    const timeoutMs = this.#statements.statementTimeoutMs();
    const timer =
      timeoutMs > 0
        ? setTimeout(() => ac.abort(new ApprovalWaitCanceled("statement_timeout")), timeoutMs)
        : undefined;
    try {
      return await askApproval(
        {
          gate: this.#d.approvals,
          warn: (message, err) =>
            this.#ctx.logger.warn(
              { session: this.id, err: err instanceof Error ? err.message : String(err) },
              message,
            ),
          // The agent hears at once that (and for whom) it waits: a NoticeResponse may come any time.
          tell: (notice) => {
            if (this.#isClosed()) return;
            this.#io.toAgent(notice);
            this.#io.flushAgent();
          },
        },
        j,
        sqlApprovalAsk(j.statements, text, {
          connection: this.#name,
          subject: this.#judge.subject,
          session: this.id,
        }),
        ac.signal,
      );
    } finally {
      clearTimeout(timer);
      this.#approvalAbort = undefined;
    }
  }

  /** Resolves once every message forwarded so far is answered. */
  #whenAnswered(): Promise<void> {
    if (this.#replies.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#answered = resolve;
    });
  }

  /** Refuses an operation: audit now, and make the upstream raise the error in order (see top). */
  #deny(op: Op, simple: boolean, hint?: string, canceled = false, timedOut = false) {
    const d = op.decision;
    // A wait the client cancelled ends as PostgreSQL ends a cancelled statement (57014).
    const code = canceled ? "57014" : "42501";
    op.error = code;
    this.#finish(op);
    const where = `policy ${d.policy ?? "(none)"}, rule ${d.rule ?? "(none: no rule allows it)"}`;
    const error = errorResponse({
      severity: "ERROR",
      code,
      message: canceled
        ? `canceling statement due to ${timedOut ? "statement timeout" : "user request"}: ${d.reason} [${where}]`
        : `Airlock denied this statement: ${d.reason} [${where}]`,
      ...(hint ? { hint } : {}),
    });
    this.#io.toUp(executeMessage(this.#bogusPortal));
    this.#replies.expect({ t: "deny", error });
    if (simple) {
      this.#io.toUp(syncMessage());
      this.#replies.sync();
      this.#synced();
    } else {
      this.#localSkip = true;
    }
  }

  #denyVerdict(statements: readonly ClassifiedStatement[], v: Verdict, simple: boolean) {
    this.#deny(this.#opOf(statements, v), simple, v.refused?.hint, v.refused?.canceled, v.refused?.timedOut);
  }

  // ----------------------------------------------------------------------------- backend

  #onUpstreamData(chunk: Buffer) {
    const back = this.#back;
    if (!back || this.#phase === "closed" || this.#closing) return;
    back.push(chunk);
    try {
      this.#replies.receive(back);
      if (this.#closing) return;
    } catch (err) {
      this.#fatal(err);
      return;
    }
    if (this.#replies.length === 0) {
      const answered = this.#answered;
      this.#answered = undefined;
      answered?.();
      if (this.#runs.current?.synced) this.#runs.end();
    }
    this.#io.flushAgent();
    if (this.#draining) this.#endIfDrained();
  }

  #upstreamGone() {
    if (this.#phase === "closed" || this.#closing) return;
    this.#endedBy = "upstream_closed";
    this.#io.flushAgent();
    this.#fatal(new ProtocolError("the upstream database closed the connection", "08006"));
  }

  /** The upstream sent FATAL: it closes next; so do we, once the agent has the message. */
  #fatalPassed() {
    this.#closing = true;
    this.#agent.end();
    const t = setTimeout(() => this.close(), 1000);
    t.unref();
  }

  #countMasked(counts: Readonly<Record<string, number>>) {
    for (const [detector, n] of Object.entries(counts))
      this.#ctx.metrics.masked.inc({ connection: this.#name, detector }, n);
  }

  /** Rereads the catalog (after this session's DDL): judgements made with the old one are dropped. */
  async #rereadCatalog(): Promise<void> {
    if (await this.#catalog.reread()) this.#judge.forget();
    this.#results.origins = this.#catalog.origins;
  }

  /** Ends an operation with its audit event: rows, and the upstream outcome when it was forwarded. */
  #finish(op: Op) {
    const rec = op.rec;
    if (rec.finished) return; // ended by close() while its reply was still coming
    rec.rows = op.tagged ? op.rows : op.dataRows;
    const forwarded = op.decision.action === "allow";
    if (forwarded) {
      const upstream: NonNullable<typeof rec.upstream> = {};
      if (op.tag) upstream.status = op.tag;
      if (op.error) upstream.error = op.error;
      rec.upstream = upstream;
    }
    const ms = rec.finish();
    if (forwarded) this.#ops.upstreamSeconds.observe(ms / 1000);
    // Confirmed by the server, not merely sent: a failed CREATE changed nothing. (Inside a
    // transaction that later rolls back, rereading is only a wasted check.)
    if (forwarded && op.tagged) this.#catalog.completed(op.statements);
  }
}
