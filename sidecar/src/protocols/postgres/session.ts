// One agent connection through the PostgreSQL guard.
//
// Frontend (agent → sidecar): startup (SSLRequest/GSSENCRequest answered 'N' — in-pod traffic is
// plaintext —, CancelRequest mapped to the upstream's key, StartupMessage), agent authentication
// (trust, or a cleartext password carrying the end user's OIDC token when the policy requires
// one), then typed messages. Query and Parse are classified and judged (decisions/sql.ts) before
// anything reaches the upstream; every other message is forwarded byte for byte.
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
// bookkeeping statements.ts; result masking results.ts; the upstream session connect.ts. Each
// statement is one operation of the shared lifecycle (operations/lifecycle.ts).
import { randomBytes, randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import { ApprovalWaitCanceled } from "../../approvals/gate.ts";
import type { CredentialSource, HeldCredential } from "../../credentials/index.ts";
import { judgeSql, readOnlySession, refusal, type SqlJudgement } from "../../decisions/index.ts";
import type { UserIdentity } from "../../identity/index.ts";
import { recordApproval } from "../../operations/approval-step.ts";
import { OperationLog } from "../../operations/lifecycle.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";
import { type Classification, type ClassifiedStatement, classifySync } from "../../sql/index.ts";
import { parserFor, type SqlParser } from "../../sql/parser.ts";
import type { HistogramCell } from "../../telemetry/hot-metrics.ts";
import { type ApprovalGate, askApproval, sqlApprovalAsk, type Verdict } from "./approval.ts";
import { type ApprovedRun, approvedRun, notAloneReason, strayInApprovedBatch } from "./approved-run.ts";
import { SessionCatalog } from "./catalog-source.ts";
import { connectUpstream } from "./connect.ts";
import { Duplex, HIGH_WATER } from "./duplex.ts";
import { type BackendFramer, type Frame, FrontendFramer, type FrontendLimits, typeName } from "./framing.ts";
import {
  authenticationCleartext,
  authenticationOk,
  backendKeyData,
  describeMessage,
  errorResponse,
  executeMessage,
  flushMessage,
  ProtocolError,
  parseBind,
  parseExecute,
  parseParse,
  parseQuery,
  parseTarget,
  readyForQuery,
  syncMessage,
  T,
  terminateMessage,
} from "./protocol.ts";
import { ReplyMatcher } from "./replies.ts";
import { ResultMasking } from "./results.ts";
import { type MaskState, originsQuery } from "./row-masking.ts";
import { parseStartupPacket, verifyPasswordToken } from "./startup.ts";
import {
  auditOperation,
  type Op,
  type PortalInfo,
  SessionStatements,
  type StatementInfo,
} from "./statements.ts";
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

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const now = () => performance.now();

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
  #conn: CompiledConnection;
  readonly #name: string;
  #gen: number;
  #params: Record<string, string> = {};
  #negotiate: Buffer | undefined;
  #user: UserIdentity | undefined;
  #subject: Subject;
  #target: UpstreamTarget | undefined;
  #upKey: { pid: number; secret: number } | undefined;
  #agentKey: string | undefined;
  readonly #ops: OperationLog;
  readonly #decisionSeconds: HistogramCell;
  readonly #results: ResultMasking;
  readonly #statements = new SessionStatements();
  readonly #replies: ReplyMatcher;
  #localSkip = false;
  readonly #bogusPortal = `airlock_denied_${randomBytes(12).toString("hex")}`;
  /** Judgements of the current policy generation, by classification (see #judge). */
  #judged = new WeakMap<Classification, SqlJudgement>();

  /** The upstream credential held for this session (a Vault lease is revoked at close). */
  #credential: HeldCredential | undefined;
  #pumping = false;
  #blocked = false;
  #approvalAbort: AbortController | undefined;
  /** An approved statement running on a connection of its own (approved-run.ts). */
  #run: ApprovedRun | undefined;
  /** Extended-protocol messages were forwarded since the last Sync. */
  #unsynced = false;
  /** A SET went to the server in this session (an approved connection would not have it). */
  #settingsChanged = false;
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
  /** The libpg-query line of the upstream's major version. */
  #parser: SqlParser | undefined;

  constructor(deps: SessionDeps, agent: Socket) {
    this.#d = deps;
    this.#ctx = deps.ctx;
    this.#agent = agent;
    this.#conn = deps.connection;
    this.#name = deps.connection.spec.name;
    this.#gen = deps.ctx.policies.generation();
    let mask: MaskState | undefined;
    try {
      mask = deps.maskStateFor(deps.connection);
    } catch (err) {
      this.#broken = err; // masking rules that do not compile: the session fails closed at start
    }
    this.#results = new ResultMasking(mask, (name) => this.#statements.cursorHistory.get(name));
    this.#front = new FrontendFramer(deps.limits);
    this.#subject = subjectFor(deps.ctx.workload);
    const w = deps.ctx.workload;
    this.#ops = new OperationLog(deps.ctx, {
      session: this.id,
      connection: this.#name,
      protocol: "postgres",
      identity: Object.freeze({ serviceAccount: w.subject, pod: w.podName, namespace: w.namespace }),
      failClosed: (err) => this.#fatal(new ProtocolError(err.message, "58000")),
    });
    this.#decisionSeconds = deps.ctx.metrics.decisionSeconds.cell({ protocol: "postgres" });
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
  }

  /** No statement is waiting for a response or a decision. */
  get idle(): boolean {
    return this.#phase === "closed" || (this.#replies.length === 0 && !this.#blocked && !this.#run);
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
   * The credential stops working at `endsAt` (a Vault lease at its max TTL): end the session
   * while it is idle (no statement in flight) in the last stretch before then, or at `endsAt`
   * whatever it is doing, with 57P01 so clients and pools reconnect (and get a new credential)
   * instead of failing on a dropped role mid-statement.
   */
  #endBefore(endsAt: number) {
    const end = () =>
      this.#fatal(
        new ProtocolError(
          "Airlock ended this session: its database credential reaches the end of its lifetime (Vault max TTL); reconnect to get a new one",
          "57P01",
        ),
      );
    const window = Math.min(5_000, Math.max(0, (endsAt - Date.now()) / 2));
    const start = setTimeout(
      () => {
        const poll = setInterval(() => {
          if (this.#isClosed()) clearInterval(poll);
          else if (this.idle || Date.now() >= endsAt - 250) {
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
    const run = this.#run;
    if (run) {
      this.#run = undefined;
      run.main.socket?.destroy();
      run.credential?.release();
      run.finish();
    }
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
    this.#subject = subjectFor(this.#ctx.workload, { user: user.user, groups: user.groups });
    await this.#connect(true);
  }

  async #connect(authRequested = false): Promise<void> {
    this.#phase = "connecting";
    const ctx = this.#ctx;
    await this.#d.parserReady;
    const readOnly = readOnlySession(ctx.policies.current(), this.#conn, this.#subject);
    const { target, up, catalog, statementTimeoutMs, credential } = await connectUpstream({
      ctx,
      session: this.id,
      connection: this.#conn,
      params: this.#params,
      readOnly,
      connectTimeoutMs: this.#d.connectTimeoutMs,
      results: this.#results,
    });
    this.#target = target;
    this.#statements.statementTimeout.default = statementTimeoutMs;
    this.#credential = credential;
    // Every operation's audit event names the lease it ran under (not the secret).
    if (credential?.audit.lease) this.#ops.credential = credential.audit;
    credential?.onEnding?.((endsAt) => this.#endBefore(endsAt));
    if (this.#isClosed()) credential?.release();
    try {
      // Judge with the grammar of the server in front of us; a major we have none for is refused.
      this.#parser = await parserFor(up.parameters.server_version ?? "").catch((err: unknown) => {
        throw new ProtocolError(err instanceof Error ? err.message : String(err), "0A000");
      });
      await this.#catalog.open({ ...catalog, parser: this.#parser }, this.#originsSql());
      this.#results.origins = this.#catalog.origins;
    } catch (err) {
      up.socket.destroy();
      throw err;
    }
    if (this.#isClosed() || this.#closing) {
      up.socket.destroy();
      return;
    }
    this.#useUpstream(up);
    const agentSecret = randomBytes(4).readInt32BE(0);
    this.#agentKey = `${up.pid}:${agentSecret}`;
    this.#d.registerCancelKey(this.#agentKey, this);
    const out: Buffer[] = [];
    if (this.#negotiate && !authRequested) out.push(this.#negotiate);
    out.push(
      authenticationOk(),
      ...up.relay,
      backendKeyData(up.pid, agentSecret),
      readyForQuery(up.txStatus),
    );
    this.#replies.txStatus = up.txStatus;
    this.#agent.write(Buffer.concat(out));
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

  /** Makes `up` the connection the session writes to, reads replies from and cancels. */
  #useUpstream(up: UpstreamSession) {
    this.#io.attachUpstream(up.socket);
    this.#back = up.framer;
    this.#upKey = { pid: up.pid, secret: up.secret };
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
    const run = this.#run;
    // After the approved batch's end went upstream, what the agent sends next waits for the
    // session's own connection.
    if (run?.synced) return run.done.then(() => (this.#isClosed() ? undefined : this.#onMessage(f)));
    if (run) this.#armBatchTimer(run);
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
        return this.#run?.done;
      } else if (f.type === T.Terminate) {
        this.#terminate(f.raw);
      }
      return undefined;
    }
    switch (f.type) {
      case T.Query:
        return this.#onQuery(f);
      case T.Parse:
        return this.#onParse(f);
      case T.Bind:
        return this.#onBind(f);
      case T.Describe:
        return this.#onDescribe(f);
      case T.Execute:
        return this.#onExecute(f);
      case T.Close:
        this.#onClose(f);
        return undefined;
      case T.Sync:
        this.#forwardSync(f.raw);
        return this.#run?.done;
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
    const run = this.#run;
    if (run && !run.synced) {
      run.synced = true;
      clearTimeout(run.timer);
      this.#io.flushUp();
    }
  }

  // --------------------------------------------------------------------------- decisions

  #refresh() {
    const gen = this.#ctx.policies.generation();
    if (gen === this.#gen) return;
    this.#gen = gen;
    this.#judged = new WeakMap();
    const c = this.#ctx.policies.current().connections.get(this.#name);
    if (c) {
      this.#conn = c;
      this.#results.update(this.#d.maskStateFor(c));
      this.#catalog.maskChanged(this.#originsSql());
    }
  }

  /** originsQuery for the column rules in force (undefined: none). */
  #originsSql(): string | undefined {
    const mask = this.#results.mask;
    return mask ? originsQuery(mask) : undefined;
  }

  #judge(text: string): { classification: Classification; judgement: SqlJudgement } {
    const t0 = now();
    const classification = classifySync(text, this.#parser);
    this.#refresh();
    // Classifications are shared, frozen cache entries (sql/classify.ts): the same object comes
    // back for the same text (or numeric shape), so its judgement is kept until the policy
    // generation changes (#refresh clears it). Everything else judgeSql reads is fixed for a
    // generation (connection, masking) or for the session (subject); the session's prepared
    // statements are not, so a text with EXECUTE is judged every time.
    let judgement = this.#judged.get(classification);
    if (!judgement) {
      judgement = judgeSql({
        classification,
        policies: this.#ctx.policies.current(),
        connection: this.#conn,
        subject: this.#subject,
        prepared: { get: (name) => this.#statements.prepared.get(name)?.statements },
        masking: this.#results.mask !== undefined,
        ...this.#results.covered(),
        ...(this.#catalog.catalog ? { catalog: this.#catalog.catalog } : {}),
        text,
      });
      if (!classification.statements.some((s) => s.effect?.kind === "execute"))
        this.#judged.set(classification, judgement);
    }
    this.#decisionSeconds.observe((now() - t0) / 1000);
    return { classification, judgement };
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
          subject: this.#subject,
          session: this.id,
        }),
        ac.signal,
      );
    } finally {
      clearTimeout(timer);
      this.#approvalAbort = undefined;
    }
  }

  /**
   * Judges `text`; `then` runs with the verdict, synchronously when no approval is needed.
   * `parseName`: the statement's name when it came in a Parse.
   */
  #decide(
    text: string,
    then: (v: Verdict, c: Classification) => Promise<void> | undefined,
    parseName?: string,
  ): Promise<void> | undefined {
    if (this.#catalog.stale) return this.#rereadCatalog().then(() => this.#decide(text, then, parseName));
    const { classification, judgement } = this.#judge(text);
    if (judgement.decision.action !== "requireApproval") {
      then({ judgement, decision: judgement.decision, audited: judgement.decision }, classification);
      return undefined;
    }
    // Under a credential for approved statements, what cannot run alone is refused before anyone
    // is asked.
    let why: string | undefined;
    if (this.#approvedSource()) {
      const pending = this.#pendingKinds();
      why = notAloneReason(classification.statements, {
        txStatus: this.#replies.txStatus,
        unsynced: this.#unsynced,
        copyOpen: pending.has("copyFrom"),
        transactionPending: pending.has("transaction") || pending.has("twoPhaseCommit"),
        settingsChanged: this.#settingsChanged,
        parseName,
      });
    }
    if (why) {
      const d = refusal("sqlApprovedNotAlone", this.#conn.policy, why);
      then({ judgement, decision: d, audited: d }, classification);
      return undefined;
    }
    return this.#approve(judgement, text).then((v) => then({ ...v, judgement }, classification));
  }

  /** Statement kinds of what the session forwarded that is not answered yet. */
  #pendingKinds(): Set<string> {
    const kinds = new Set<string>();
    for (const op of this.#replies.openOperations()) for (const s of op.statements) kinds.add(s.kind);
    return kinds;
  }

  /** The source of the credential approved statements run under, when the connection has one. */
  #approvedSource(): CredentialSource | undefined {
    return this.#ctx.credentials.forApproved(this.#conn.spec);
  }

  /**
   * Sets the session's upstream aside and opens a connection of its own for an approved
   * statement, once everything sent before it is answered (approved-run.ts). False: it cannot
   * run (refused here, with the approval recorded) or the session is ending.
   */
  async #startRun(
    source: CredentialSource,
    statements: readonly ClassifiedStatement[],
    v: Verdict,
    simple: boolean,
  ): Promise<boolean> {
    await this.#whenAnswered();
    if (this.#isClosed() || this.#closing) return false;
    let failure: { kind: "sqlApprovedNotAlone" | "sqlApprovedCredential"; why: string } | undefined;
    let c: Awaited<ReturnType<typeof connectUpstream>> | undefined;
    if (this.#replies.txStatus !== "I")
      failure = {
        kind: "sqlApprovedNotAlone",
        why: "the statements before it opened a transaction block; send it outside BEGIN ... COMMIT (it commits on its own)",
      };
    else
      try {
        c = await connectUpstream({
          ctx: this.#ctx,
          session: this.id,
          connection: this.#conn,
          params: this.#params,
          readOnly: false,
          connectTimeoutMs: this.#d.connectTimeoutMs,
          results: this.#results,
          source,
        });
      } catch (err) {
        failure = { kind: "sqlApprovedCredential", why: err instanceof Error ? err.message : String(err) };
      }
    if (this.#isClosed() || this.#closing) {
      c?.up.socket.destroy();
      c?.credential?.release();
      return false;
    }
    if (!c) {
      const d = refusal(failure?.kind ?? "sqlApprovedCredential", this.#conn.policy, failure?.why ?? "");
      this.#denyVerdict(statements, { ...v, decision: d, audited: d }, simple);
      this.#io.flush();
      return false;
    }
    const up = c.up;
    const main = {
      socket: this.#io.up,
      framer: this.#back,
      key: this.#upKey,
      credential: this.#ops.credential,
    };
    // Notifications on the session's own connection wait until the approved statement is done.
    main.socket?.pause();
    const run = approvedRun(up, c.credential, main);
    this.#run = run;
    this.#useUpstream(up);
    this.#ops.credential = c.credential?.audit;
    this.#ctx.logger.info(
      { session: this.id, connection: this.#name, lease: c.credential?.audit.lease },
      "postgres: an approved statement runs under its own credential",
    );
    this.#readFrom(up, () => this.#run === run);
    this.#armBatchTimer(run);
    return true;
  }

  /**
   * (Re)starts the wait for the approved batch's Sync. It counts only while the agent owes the
   * next message: not while an approval inside the batch is asked, nor while the server has not
   * taken what was sent (the Sync may be behind it) or still works on it.
   */
  #armBatchTimer(run: ApprovedRun) {
    clearTimeout(run.timer);
    if (run.synced) return;
    const ms = this.#d.approvedBatchTimeoutMs;
    run.timer = setTimeout(() => {
      if (this.#run !== run || run.synced) return;
      if (this.#blocked || run.up.socket.writableLength > 0) return this.#armBatchTimer(run);
      if (this.#replies.length > 0) {
        // Without Flush the server holds its answers until Sync: ask for them, so that a
        // statement still running is told from one done and waiting.
        this.#io.toUp(flushMessage());
        this.#io.flushUp();
        return this.#armBatchTimer(run);
      }
      this.#fatal(
        new ProtocolError(
          `terminating connection: the approved statement's batch was left open without Sync for ${ms} ms; its credential is revoked and nothing of it commits`,
          "25P03",
        ),
      );
    }, ms);
    run.timer.unref();
  }

  /** The approved batch is answered: back to the session's own connection; the lease is revoked. */
  #endRun() {
    const run = this.#run;
    if (!run) return;
    this.#run = undefined;
    run.up.socket.end(terminateMessage());
    run.credential?.release();
    const m = run.main;
    this.#io.up = m.socket;
    this.#back = m.framer;
    this.#upKey = m.key;
    this.#ops.credential = m.credential;
    // What the batch named (the unnamed statement and portal) exists on that connection only.
    this.#statements.prepared.delete("");
    this.#statements.portals.delete("");
    run.finish();
    this.#io.flow();
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

  // ------------------------------------------------------------------------ simple query

  #onQuery(f: Frame): Promise<void> | undefined {
    const text = parseQuery(f.payload);
    return this.#decide(text, (v, c) => {
      const statements = v.judgement.statements;
      if (v.decision.action !== "allow") {
        this.#denyVerdict(statements, v, true);
        return;
      }
      if (c.statements.some((s) => s.kind === "set")) this.#settingsChanged = true;
      const forward = () => {
        const op = this.#opOf(statements, v);
        this.#io.toUp(f.raw);
        // What the text does to the session's named statements and cursors takes effect statement
        // by statement as the server completes them: a PREPARE it refuses (in an aborted
        // transaction, after an earlier error) is never recorded.
        const effects = c.statements.some((s) => s.effect !== undefined);
        const order = effects ? [...new Set(c.statements.map((s) => s.index))] : [];
        const gen = this.#gen;
        this.#replies.expect({
          t: "query",
          op,
          ...(effects
            ? {
                completed: (k: number) => {
                  const index = order[k];
                  if (index !== undefined) this.#statements.applyEffects(c, v.decision, gen, index);
                },
              }
            : {}),
        });
      };
      const source = v.approval ? this.#approvedSource() : undefined;
      if (!source) {
        forward();
        return undefined;
      }
      return this.#startRun(source, statements, v, true).then((ok) => {
        if (!ok) return undefined;
        forward();
        this.#synced();
        return this.#run?.done;
      });
    });
  }

  // --------------------------------------------------------------------- extended query

  #onParse(f: Frame): Promise<void> | undefined {
    const { name, query } = parseParse(f.payload);
    if (
      name !== "" &&
      !this.#statements.prepared.has(name) &&
      this.#statements.prepared.size >= this.#d.maxPreparedStatements
    ) {
      const limit = String(this.#d.maxPreparedStatements);
      this.#deny(this.#newOp([], refusal("sqlTooManyPrepared", this.#conn.policy, limit)), false);
      return undefined;
    }
    return this.#decide(
      query,
      (v, c) => {
        const j = v.judgement;
        if (v.decision.action !== "allow") {
          this.#denyVerdict(j.statements, v, false);
          return undefined;
        }
        if (c.statements.some((s) => s.kind === "set")) this.#settingsChanged = true;
        const source = v.approval ? this.#approvedSource() : undefined;
        if (!source) {
          this.#forwardParse(f, name, query, v, c);
          return undefined;
        }
        return this.#startRun(source, j.statements, v, false).then((ok) => {
          if (ok) this.#forwardParse(f, name, query, v, c);
        });
      },
      name,
    );
  }

  #forwardParse(f: Frame, name: string, query: string, v: Verdict, c: Classification) {
    const j = v.judgement;
    const { decision, approval } = v;
    this.#io.toUp(f.raw);
    // The server skips everything up to Sync after an error: this Parse will not happen.
    if (this.#replies.serverSkipping) return;
    // The server refuses to redefine a named statement: keep what we know about the one it keeps.
    if (name !== "" && this.#statements.prepared.has(name)) {
      this.#replies.expect({ t: "parse" });
      return;
    }
    const info: StatementInfo = {
      statements: j.statements,
      classification: c,
      judgement: { ...j, decision },
      generation: this.#gen,
      catalog: this.#catalog.catalog,
      ...(approval ? { approval, approvalDecision: j.decision, text: query } : {}),
    };
    // Recorded now, for the Bind/Execute pipelined behind it; forgotten if the server refuses the
    // Parse (or skips it after an earlier error): a failed Parse of the unnamed statement also
    // drops the server's previous one.
    this.#statements.prepared.set(name, info);
    this.#replies.expect({
      t: "parse",
      undo: () => {
        if (this.#statements.prepared.get(name) === info) this.#statements.prepared.delete(name);
      },
    });
    // With masking on, learn the result columns now (pipelined, answered before any Execute).
    if (this.#results.mask) this.#describeInternally(info, "S", name);
  }

  /** Sends Describe for a statement or portal; its answer is recorded and not shown to the agent. */
  #describeInternally(target: StatementInfo | PortalInfo, kind: "S" | "P", name: string) {
    const wait = deferred();
    target.describing = wait.promise;
    this.#io.toUp(describeMessage(kind, name));
    if (this.#replies.serverSkipping) {
      wait.resolve();
      return;
    }
    this.#replies.expect({ t: "describe", kind, name, internal: true, target, done: wait.resolve });
  }

  #onBind(f: Frame): Promise<void> | undefined {
    if (this.#catalog.stale) return this.#rereadCatalog().then(() => this.#onBind(f));
    const b = parseBind(f.payload);
    const info = this.#statements.prepared.get(b.statement);
    if (!info) {
      this.#deny(this.#newOp([], refusal("sqlBindUnprepared", this.#conn.policy, b.statement)), false);
      return undefined;
    }
    // A policy or catalog change since Parse: judge the statement again.
    this.#refresh();
    if (info.generation !== this.#gen || info.catalog !== this.#catalog.catalog) {
      const j = judgeSql({
        classification: info.classification,
        policies: this.#ctx.policies.current(),
        connection: this.#conn,
        subject: this.#subject,
        prepared: { get: (name) => this.#statements.prepared.get(name)?.statements },
        masking: this.#results.mask !== undefined,
        ...this.#results.covered(),
        ...(this.#catalog.catalog ? { catalog: this.#catalog.catalog } : {}),
      });
      info.judgement = j;
      info.generation = this.#gen;
      info.catalog = this.#catalog.catalog;
    }
    if (info.judgement.decision.action !== "allow") {
      const d = info.judgement.decision;
      const op = this.#newOp(info.statements, {
        ...d,
        action: "deny",
        reason:
          d.action === "requireApproval"
            ? `the policy changed since this statement was prepared; prepare it again (${d.reason})`
            : d.reason,
      });
      this.#deny(op, false);
      return undefined;
    }
    const finish = () => {
      if (this.#results.mask && b.resultFormats.some((x) => x !== 0)) {
        const plan = this.#results.plan(info.statements, info.columns ?? [], b.resultFormats);
        const refused =
          plan?.refused ??
          (info.columns === undefined
            ? "binary-format results are refused on a connection with masking rules when the sidecar cannot tell the result columns"
            : undefined);
        if (refused) {
          this.#deny(
            this.#newOp(info.statements, refusal("maskingBinaryResult", this.#conn.policy, refused)),
            false,
          );
          return;
        }
      }
      this.#io.toUp(f.raw);
      this.#replies.expect({ t: "bind" });
      info.uses = (info.uses ?? 0) + 1;
      this.#statements.portals.set(b.portal, {
        statement: info,
        statements: info.statements,
        formats: b.resultFormats,
      });
    };
    const proceed = (): Promise<void> | undefined => {
      if (this.#results.mask && b.resultFormats.some((x) => x !== 0) && info.columns === undefined) {
        // A binary result on a masking connection: the columns must be known before rows flow.
        if (!info.describing) this.#describeInternally(info, "S", b.statement);
        this.#io.toUp(flushMessage());
        this.#io.flushUp();
        const waiting = info.describing as Promise<void>;
        return waiting.then(finish);
      }
      if (this.#results.mask && info.columns === undefined && !info.describing)
        this.#describeInternally(info, "S", b.statement);
      finish();
      return undefined;
    };
    // An approval covers one execution: binding an approved statement again asks again (the
    // approvals service answers at once while a grant from `grantTtl` lasts).
    const approvalDecision = info.approvalDecision;
    if (approvalDecision && (info.uses ?? 0) > 0) {
      return this.#approve({ decision: approvalDecision, statements: info.statements }, info.text).then(
        (v) => {
          if (v.decision.action !== "allow") {
            this.#denyVerdict(info.statements, v, false);
            return undefined;
          }
          if (v.approval) info.approval = v.approval;
          return proceed();
        },
      );
    }
    return proceed();
  }

  #onDescribe(f: Frame): Promise<void> | undefined {
    const { kind, name } = parseTarget(f.payload, "Describe");
    // The answer describes the statement or portal that has this name *now* (a later Parse or
    // Bind in the same pipeline may reuse the name before the answer arrives).
    let target: StatementInfo | PortalInfo | undefined;
    if (kind === "S") target = this.#statements.prepared.get(name);
    else {
      target = this.#statements.portals.get(name);
      if (!target) {
        target = { statements: this.#statements.cursors.get(name) ?? [] };
        this.#statements.portals.set(name, target);
      }
    }
    this.#io.toUp(f.raw);
    this.#replies.expect({ t: "describe", kind, name, internal: false, target });
    return undefined;
  }

  #onExecute(f: Frame): Promise<void> | undefined {
    const { portal } = parseExecute(f.payload);
    // A cursor declared in SQL (or returned by a function) is a portal too.
    const info = this.#statements.portalFor(portal);
    if (
      this.#results.mask &&
      !info.columns &&
      !info.statement?.columns &&
      !info.statement?.describing &&
      !info.describing
    ) {
      this.#describeInternally(info, "P", portal);
    }
    const decision: Decision = info.statement?.judgement.decision ?? {
      action: "allow",
      policy: this.#conn.policy,
      reason: "portal of a statement judged when it was declared",
    };
    const op = this.#newOp(info.statements, decision, info.statement?.approvalDecision ?? decision);
    if (info.statement?.approval) op.rec.approved(info.statement.approval);
    this.#io.toUp(f.raw);
    // PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD sent through Parse/Bind/Execute change the
    // session's named things too, once the server completed them (the running portal survives).
    const st = info.statement;
    const effects = st?.classification.statements.some((s) => s.effect !== undefined);
    const gen = this.#gen;
    this.#replies.expect({
      t: "execute",
      op,
      portal: info,
      ...(st && effects
        ? {
            completed: () =>
              this.#statements.applyEffects(st.classification, st.judgement.decision, gen, undefined, portal),
          }
        : {}),
    });
    return undefined;
  }

  #onClose(f: Frame) {
    const { kind, name } = parseTarget(f.payload, "Close");
    this.#io.toUp(f.raw);
    this.#replies.expect({ t: "close" });
    this.#statements.close(kind, name);
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
      if (this.#run?.synced) this.#endRun();
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
    if (await this.#catalog.reread()) this.#judged = new WeakMap();
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
