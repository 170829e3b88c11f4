// One agent connection through the PostgreSQL guard.
//
// Frontend (agent → sidecar): startup (SSLRequest/GSSENCRequest answered 'N' — in-pod traffic is
// plaintext —, CancelRequest mapped to the upstream's key, StartupMessage), agent authentication
// (trust, or a cleartext password carrying the end user's OIDC token when the policy requires
// one), then typed messages. Query and Parse are classified and judged before anything reaches
// the upstream; every other message is forwarded byte for byte.
//
// Denials keep PostgreSQL's own semantics: instead of the refused message the sidecar sends the
// upstream an Execute of a portal that cannot exist (plus Sync for a simple Query), so the
// server raises a real error — the transaction is aborted exactly as if the statement had
// failed, and extended-protocol messages up to Sync are skipped by the server — and the
// server's ErrorResponse is replaced by the sidecar's (SQLSTATE 42501, naming policy and rule).
// Locally, after a refused Parse or Bind, the sidecar also drops the agent's messages up to Sync.
//
// Backend (upstream → agent): a FIFO of what each forwarded message will produce ties every
// response to the message that caused it: which RowDescription describes which DataRows (for
// masking), which CommandComplete ends which statement (for audit), which ErrorResponse replaces
// a denial. After an ErrorResponse in the extended protocol the entries up to the next Sync are
// dropped, as the server skips those messages. Messages that are not rewritten are passed on as
// the exact bytes received.
import { randomBytes, randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import type { AuditEvent, AuditIdentity, AuditOperation } from "../../audit/events.ts";
import { isIdentityError, type UserIdentity } from "../../identity/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";
import { type Classification, type ClassifiedStatement, classifySync } from "../../sql/index.ts";
import type { CounterCell, HistogramCell } from "../../telemetry/hot-metrics.ts";
import type { Metrics } from "../../telemetry/metrics.ts";
import { type ApprovalGate, approvalReason, approvalSummary, NO_APPROVAL_SERVICE } from "./approval.ts";
import { judgeSql, readOnlySession, type SqlJudgement } from "./decide.ts";
import { type BackendFramer, type Frame, FrontendFramer, type FrontendLimits, typeName } from "./framing.ts";
import {
  authenticationCleartext,
  authenticationOk,
  backendKeyData,
  CANCEL_REQUEST,
  type Column,
  decodeLoose,
  describeMessage,
  errorResponse,
  executeMessage,
  flushMessage,
  GSSENC_REQUEST,
  negotiateProtocolVersion,
  ProtocolError,
  parseBind,
  parseErrorFields,
  parseExecute,
  parseParse,
  parseQuery,
  parseRowDescription,
  parseTarget,
  Reader,
  readyForQuery,
  rowsOfTag,
  SSL_REQUEST,
  syncMessage,
  T,
  terminateMessage,
} from "./protocol.ts";
import {
  callsUserFunction,
  type MaskState,
  maskDataRow,
  maskNotification,
  originsQuery,
  planResult,
  type ResultPlan,
  redactNotice,
  rowNeedsMasking,
  USER_FUNCTION,
} from "./row-masking.ts";
import {
  cancelUpstream,
  sidecarQuery,
  startUpstream,
  UpstreamConnectError,
  UpstreamError,
  type UpstreamTarget,
} from "./upstream.ts";

export interface SessionDeps {
  ctx: SidecarContext;
  /** The policy connection at accept time; refreshed by name when the policy set changes. */
  connection: CompiledConnection;
  limits: Partial<FrontendLimits>;
  connectTimeoutMs: number;
  startupTimeoutMs: number;
  maxPreparedStatements: number;
  approvals: ApprovalGate | undefined;
  draining(): boolean;
  maskStateFor(connection: CompiledConnection): MaskState | undefined;
  parserReady: Promise<void>;
  /** Cancel keys: agent-visible `${pid}:${secret}` → session. */
  registerCancelKey(key: string, session: Session): void;
  cancelKey(pid: number, secret: number): void;
  onClose(session: Session): void;
}

/** Upstream startup parameters the agent may choose (values are checked); everything else is dropped. */
const FORWARDED_PARAMS = new Set([
  "application_name",
  "datestyle",
  "timezone",
  "intervalstyle",
  "extra_float_digits",
]);
const SAFE_PARAM_VALUE = /^[A-Za-z0-9 _.,:/+-]{0,64}$/;

/** Frontend bytes held while the pump is blocked (approval, upstream connect) before pausing the agent. */
const HIGH_WATER = 1024 * 1024;

interface Op {
  statements: readonly ClassifiedStatement[];
  decision: Decision;
  approval?: AuditEvent["approval"];
  start: number;
  rows: number;
  dataRows: number;
  tagged: boolean;
  masked: Record<string, number>;
  tag?: string;
  error?: string;
}

interface StatementInfo {
  statements: readonly ClassifiedStatement[];
  classification: Classification;
  judgement: SqlJudgement;
  generation: number;
  /** The approval that let the statement through (audited with its execution). */
  approval?: AuditEvent["approval"];
  /** The requireApproval decision, when the statement needed one: each execution asks again. */
  approvalDecision?: Decision;
  /** Binds so far. */
  uses?: number;
  /** The statement text (for approval summaries when it is bound again). */
  text?: string;
  /** Result columns: from a Describe (the agent's or the sidecar's own). [] = no rows. */
  columns?: readonly Column[];
  describing?: Promise<void>;
}

interface PortalInfo {
  statement?: StatementInfo;
  statements: readonly ClassifiedStatement[];
  formats?: readonly number[];
  /** From Describe Portal: the columns with their actual formats. */
  columns?: readonly Column[];
  describing?: Promise<void>;
}

type Pending =
  | { t: "query"; op: Op; plan?: ResultPlan }
  | { t: "parse" }
  | { t: "bind" }
  | { t: "close" }
  | {
      t: "describe";
      kind: "S" | "P";
      name: string;
      internal: boolean;
      /** What the answer describes (resolved when the Describe was sent). */
      target: StatementInfo | PortalInfo | undefined;
      done?: () => void;
    }
  | { t: "execute"; op: Op; portal: PortalInfo | undefined; plan?: ResultPlan }
  | { t: "sync" }
  | { t: "deny"; error: Buffer };

class Queue<V> {
  #items: V[] = [];
  #head = 0;
  get length() {
    return this.#items.length - this.#head;
  }
  peek(): V | undefined {
    return this.#items[this.#head];
  }
  push(v: V) {
    this.#items.push(v);
  }
  shift(): V | undefined {
    const v = this.#items[this.#head];
    if (v === undefined) return undefined;
    this.#items[this.#head] = undefined as V;
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return v;
  }
  some(pred: (v: V) => boolean): boolean {
    for (let i = this.#head; i < this.#items.length; i++) if (pred(this.#items[i] as V)) return true;
    return false;
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const now = () => performance.now();

export class Session {
  readonly id = randomUUID();
  readonly #d: SessionDeps;
  readonly #ctx: SidecarContext;
  readonly #agent: Socket;
  #up: Socket | undefined;
  readonly #front: FrontendFramer;
  #back: BackendFramer | undefined;
  #phase: "startup" | "auth" | "connecting" | "ready" | "closed" = "startup";
  #conn: CompiledConnection;
  readonly #name: string;
  #gen: number;
  #mask: MaskState | undefined;
  #params: Record<string, string> = {};
  #negotiate: Buffer | undefined;
  #user: UserIdentity | undefined;
  #subject: Subject;
  #target: UpstreamTarget | undefined;
  #upKey: { pid: number; secret: number } | undefined;
  #agentKey: string | undefined;
  #identity: AuditIdentity | undefined;
  /** Metric cells of this session's label sets, resolved once (per-statement path). */
  readonly #cells: SessionCells;

  readonly #pending = new Queue<Pending>();
  #serverSkipping = false;
  #localSkip = false;
  #txStatus = "I";
  readonly #prepared = new Map<string, StatementInfo>();
  readonly #portals = new Map<string, PortalInfo>();
  readonly #cursors = new Map<string, readonly ClassifiedStatement[]>();
  readonly #bogusPortal = `airlock_denied_${randomBytes(12).toString("hex")}`;
  /** Judgements of the current policy generation, by classification (see #judge). */
  #judged = new WeakMap<Classification, SqlJudgement>();
  /** `tableOid:attnum` → name of the table columns column rules cover (see row-masking.ts). */
  readonly #origins = new Map<string, string>();
  /** Functions defined in the database (lower-cased names), when column rules apply. */
  readonly #userFunctions = new Set<string>();

  #pumping = false;
  #blocked = false;
  #upFull = false;
  #agentFull = false;
  #upOut: Buffer[] = [];
  #agentOut: Buffer[] = [];
  #approvalAbort: AbortController | undefined;
  #startupTimer: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(deps: SessionDeps, agent: Socket) {
    this.#d = deps;
    this.#ctx = deps.ctx;
    this.#agent = agent;
    this.#conn = deps.connection;
    this.#name = deps.connection.spec.name;
    this.#cells = sessionCells(deps.ctx.metrics, this.#name);
    this.#gen = deps.ctx.policies.generation();
    this.#mask = deps.maskStateFor(deps.connection);
    this.#front = new FrontendFramer(deps.limits);
    this.#subject = subjectFor(deps.ctx.workload);
  }

  /** No statement is waiting for a response or a decision. */
  get idle(): boolean {
    return this.#phase === "closed" || (this.#pending.length === 0 && !this.#blocked);
  }

  start(head?: Buffer) {
    const a = this.#agent;
    a.setNoDelay(true);
    a.on("data", (c: Buffer) => this.#onAgentData(c));
    a.on("drain", () => {
      this.#agentFull = false;
      this.#flow();
    });
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
    if (head?.length) this.#onAgentData(head);
  }

  /** Cancel the statement in flight: stop waiting for an approval, and cancel upstream. */
  cancel() {
    this.#approvalAbort?.abort(new Error("canceled by the client"));
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
    this.#up?.destroy();
    if (wasReady) this.#ctx.metrics.sessions.dec({ connection: this.#name, protocol: "postgres" });
    this.#d.onClose(this);
  }

  /** (A method, so TypeScript does not narrow the phase across awaits and callbacks.) */
  #isClosed(): boolean {
    return this.#phase === "closed";
  }

  get agentKey(): string | undefined {
    return this.#agentKey;
  }

  // ------------------------------------------------------------------------------------ I/O

  #onAgentData(chunk: Buffer) {
    if (this.#phase === "closed") return;
    this.#front.push(chunk);
    this.#pump();
  }

  #flow() {
    if (this.#phase === "closed") return;
    const holdAgent = this.#upFull || (this.#blocked && this.#front.buffered > HIGH_WATER);
    if (holdAgent) this.#agent.pause();
    else this.#agent.resume();
    if (this.#up) {
      if (this.#agentFull) this.#up.pause();
      else this.#up.resume();
    }
  }

  #toUp(b: Buffer) {
    this.#upOut.push(b);
  }

  #toAgent(b: Buffer) {
    this.#agentOut.push(b);
  }

  #flushUp() {
    const up = this.#up;
    if (!up || this.#upOut.length === 0) return;
    const out = coalesce(this.#upOut);
    this.#upOut = [];
    let ok = true;
    if (out.length === 1) ok = up.write(out[0] as Buffer);
    else {
      up.cork();
      for (const b of out) ok = up.write(b) && ok;
      up.uncork();
    }
    if (!ok) {
      this.#upFull = true;
      this.#flow();
    }
  }

  #flushAgent() {
    if (this.#agentOut.length === 0 || this.#phase === "closed") return;
    const out = coalesce(this.#agentOut);
    this.#agentOut = [];
    let ok = true;
    if (out.length === 1) ok = this.#agent.write(out[0] as Buffer);
    else {
      this.#agent.cork();
      for (const b of out) ok = this.#agent.write(b) && ok;
      this.#agent.uncork();
    }
    if (!ok) {
      this.#agentFull = true;
      this.#flow();
    }
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
    this.#agentOut = [];
    this.#upOut = [];
    if (this.#up && this.#phase === "ready") this.#up.end(terminateMessage());
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
              this.#flushUp();
              this.#flushAgent();
              this.#flow();
              this.#pump();
            },
            (err: unknown) => this.#fatal(err),
          );
          break;
        }
      }
      this.#flushUp();
      this.#flushAgent();
    } catch (err) {
      this.#fatal(err);
    } finally {
      this.#pumping = false;
    }
    this.#flow();
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
    const r = new Reader(f.payload);
    const code = r.int32("startup code");
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
      if (f.raw.length !== 8) throw new ProtocolError("malformed SSLRequest");
      // Agent ↔ sidecar stays inside the pod: no TLS there (the upstream leg is what TLS protects).
      this.#agent.write("N");
      return undefined;
    }
    if (code === CANCEL_REQUEST) {
      if (f.raw.length !== 16) throw new ProtocolError("malformed CancelRequest");
      this.#d.cancelKey(r.int32(), r.int32());
      this.close();
      return undefined;
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
    this.#front.endStartup();
    this.#params = params;
    if (minor > 0 || unrecognized.length) this.#negotiate = negotiateProtocolVersion(0, unrecognized);
    const replication = (params.replication ?? "false").toLowerCase();
    if (!["false", "off", "no", "0"].includes(replication))
      throw new ProtocolError("replication connections are not allowed through the Airlock sidecar", "42501");
    if (this.#conn.requireUserToken) {
      this.#phase = "auth";
      if (this.#negotiate) this.#agent.write(this.#negotiate);
      this.#agent.write(authenticationCleartext());
      return undefined;
    }
    return this.#connect();
  }

  async #onPassword(f: Frame): Promise<void> {
    if (f.type !== T.Password)
      throw new ProtocolError(`expected a password message, got ${typeName(f.type)}`);
    const r = new Reader(f.payload);
    const token = r.cstr("password");
    const verifier = this.#ctx.verifierFor(this.#conn);
    if (!verifier)
      throw new ProtocolError(
        "this connection requires an end-user token but its policy names no OIDC issuer",
        "28000",
      );
    try {
      const user = await verifier.verify(token);
      this.#user = user;
      this.#subject = subjectFor(this.#ctx.workload, { user: user.user, groups: user.groups });
    } catch (err) {
      if (isIdentityError(err)) {
        this.#ctx.logger.warn(
          { session: this.id, connection: this.#name, code: err.code },
          "postgres: identity token refused",
        );
        throw new ProtocolError(`the identity token was refused: ${err.message}`, "28P01");
      }
      throw err;
    }
    await this.#connect(true);
  }

  async #connect(authRequested = false): Promise<void> {
    this.#phase = "connecting";
    const ctx = this.#ctx;
    const spec = this.#conn.spec;
    await this.#d.parserReady;
    const tlsSpec = spec.tls;
    const mode = tlsSpec?.mode ?? "verify-full";
    let ca: string | undefined;
    try {
      if (mode !== "disable" && tlsSpec?.caSecretRef)
        ca = await ctx.secrets.get(tlsSpec.caSecretRef.name, tlsSpec.caSecretRef.key);
    } catch (err) {
      throw new ProtocolError(`the sidecar cannot read the upstream CA: ${(err as Error).message}`, "08006");
    }
    this.#target = {
      host: spec.target.host,
      port: spec.target.port,
      tls: {
        mode,
        ...(ca ? { ca } : {}),
        ...(tlsSpec?.serverName ? { serverName: tlsSpec.serverName } : {}),
      },
      connectTimeoutMs: this.#d.connectTimeoutMs,
    };
    let user = this.#params.user ?? "";
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
    const readOnly = readOnlySession(this.#conn, this.#subject);
    const params: Record<string, string> = {
      database: spec.database ?? this.#params.database ?? this.#params.user ?? user,
      client_encoding: "UTF8",
      standard_conforming_strings: "on",
      application_name: "airlock",
    };
    for (const [k, v] of Object.entries(this.#params)) {
      if (FORWARDED_PARAMS.has(k.toLowerCase()) && SAFE_PARAM_VALUE.test(v)) params[k] = v;
    }
    if (readOnly) params.default_transaction_read_only = "on";
    let up: Awaited<ReturnType<typeof startUpstream>>;
    try {
      up = await startUpstream(
        this.#target,
        { user, ...(password !== undefined ? { password } : {}) },
        params,
      );
    } catch (err) {
      const reason =
        err instanceof UpstreamConnectError ? err.reason : err instanceof UpstreamError ? "refused" : "error";
      ctx.metrics.upstreamErrors.inc({ connection: this.#name, protocol: "postgres", reason });
      if (err instanceof UpstreamError) {
        ctx.logger.warn(
          { session: this.id, connection: this.#name, code: err.code, message: err.message },
          "postgres: upstream refused the session",
        );
        // Authentication failures name the sidecar's credential: keep them in the sidecar's log.
        if (err.code.startsWith("28"))
          throw new ProtocolError(
            "the Airlock sidecar could not authenticate to the upstream database; see the sidecar log",
            "08006",
          );
        throw new ProtocolError(err.message, err.code);
      }
      ctx.logger.warn(
        { session: this.id, connection: this.#name, err: String(err) },
        "postgres: upstream connection failed",
      );
      throw new ProtocolError(
        err instanceof UpstreamConnectError ? err.message : `upstream connection failed: ${String(err)}`,
        "08006",
      );
    }
    // Column rules also cover table columns read under another name: learn where they live.
    const origins = this.#mask ? originsQuery(this.#mask) : undefined;
    if (origins) {
      try {
        for (const [oid, attnum, name] of await sidecarQuery(up, origins, this.#d.connectTimeoutMs)) {
          if (Number(attnum) === USER_FUNCTION) this.#userFunctions.add(name ?? "");
          else this.#origins.set(`${oid}:${attnum}`, name ?? "");
        }
      } catch (err) {
        up.socket.destroy();
        ctx.logger.warn({ session: this.id, err: String(err) }, "postgres: masking catalog lookup failed");
        throw new ProtocolError(
          "the Airlock sidecar could not prepare result masking; see the sidecar log",
          "08006",
        );
      }
    }
    if (this.#isClosed() || this.#closing) {
      up.socket.destroy();
      return;
    }
    this.#up = up.socket;
    this.#back = up.framer;
    this.#upKey = { pid: up.pid, secret: up.secret };
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
    this.#txStatus = up.txStatus;
    this.#agent.write(Buffer.concat(out));
    this.#phase = "ready";
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
    const s = up.socket;
    s.on("data", (c: Buffer) => this.#onUpstreamData(c));
    s.on("drain", () => {
      this.#upFull = false;
      this.#flow();
    });
    s.on("error", () => this.#upstreamGone());
    s.on("close", () => this.#upstreamGone());
    s.resume();
    if (up.framer.buffered > 0) this.#onUpstreamData(Buffer.alloc(0));
  }

  #onMessage(f: Frame): Promise<void> | undefined {
    if (this.#localSkip) {
      // Mirrors the server after an error: everything up to Sync is discarded.
      if (f.type === T.Sync) {
        this.#localSkip = false;
        this.#forwardSync(f.raw);
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
        return undefined;
      case T.Flush:
      case T.CopyData:
      case T.CopyDone:
      case T.CopyFail:
        this.#toUp(f.raw);
        return undefined;
      case T.Terminate:
        this.#terminate(f.raw);
        return undefined;
      case T.FunctionCall: {
        const op = this.#newOp([], {
          action: "deny",
          policy: this.#conn.policy,
          rule: "airlock-builtin",
          reason: "fast-path function calls are refused: they bypass statement classification",
        });
        this.#deny(op, true);
        return undefined;
      }
      default:
        throw new ProtocolError(`unexpected message type ${typeName(f.type)}`);
    }
  }

  #terminate(raw: Buffer) {
    this.#toUp(raw);
    this.#flushUp();
    this.#up?.end();
    this.#closing = true;
    this.#agent.end();
    const t = setTimeout(() => this.close(), 1000);
    t.unref();
  }

  #forwardSync(raw: Buffer) {
    this.#toUp(raw);
    this.#pending.push({ t: "sync" });
    this.#serverSkipping = false;
  }

  #expect(p: Pending) {
    // While the server skips to Sync after an error, it answers nothing we forward.
    if (!this.#serverSkipping) this.#pending.push(p);
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
      // Masking only ever tightens within a session: a policy that drops masking applies to new sessions.
      this.#mask = this.#d.maskStateFor(c) ?? this.#mask;
    }
  }

  #judge(text: string): { classification: Classification; judgement: SqlJudgement } {
    const t0 = now();
    const classification = classifySync(text);
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
        prepared: { get: (name) => this.#prepared.get(name)?.statements },
        masking: this.#mask !== undefined,
      });
      if (!classification.statements.some((s) => s.effect?.kind === "execute"))
        this.#judged.set(classification, judgement);
    }
    this.#cells.decisionSeconds.observe((now() - t0) / 1000);
    return { classification, judgement };
  }

  #newOp(statements: readonly ClassifiedStatement[], decision: Decision): Op {
    return { statements, decision, start: now(), rows: 0, dataRows: 0, tagged: false, masked: {} };
  }

  /** Resolves requireApproval through the gate: allow (with the approval recorded) or deny. */
  async #approve(
    j: Pick<SqlJudgement, "decision" | "statements">,
    text: string | undefined,
  ): Promise<{ decision: Decision; approval?: AuditEvent["approval"] }> {
    const d = j.decision;
    const gate = this.#d.approvals;
    const rule = d.rule ? `rule ${d.rule}: ` : "";
    if (!gate) return { decision: { ...d, action: "deny", reason: `${rule}${NO_APPROVAL_SERVICE}` } };
    const ac = new AbortController();
    this.#approvalAbort = ac;
    const summary = text === undefined ? undefined : approvalSummary(text);
    const reason = text === undefined ? undefined : approvalReason(text);
    try {
      const outcome = await gate.request({
        connection: this.#name,
        protocol: "postgres",
        decision: d,
        subject: this.#subject,
        operation: {
          kind: "sql",
          statements: j.statements.map((s) => ({
            kind: s.kind,
            tables: s.tables,
            fingerprint: s.fingerprint,
          })),
        },
        ...(summary ? { summary } : {}),
        fingerprint: j.statements.map((s) => s.fingerprint).join(","),
        ...(reason ? { reason } : {}),
        session: this.id,
        signal: ac.signal,
      });
      const approval = {
        request: outcome.request,
        approvers: outcome.approvers ?? [],
        ...(outcome.grant ? { grant: true } : {}),
      };
      if (outcome.approved)
        return {
          decision: { ...d, action: "allow", reason: `approved (${outcome.request}): ${d.reason}` },
          approval,
        };
      const why =
        outcome.message ??
        (outcome.status === "pending"
          ? `approval ${outcome.request} is pending; retry once it is approved`
          : `approval ${outcome.request} was ${outcome.status ?? "not granted"}`);
      return { decision: { ...d, action: "deny", reason: `${rule}${why}` }, approval };
    } catch (err) {
      return {
        decision: {
          ...d,
          action: "deny",
          reason: `${rule}approval failed: ${err instanceof Error ? err.message : String(err)}`,
        },
      };
    } finally {
      this.#approvalAbort = undefined;
    }
  }

  /**
   * Judges `text`; `then` runs with the final decision, synchronously when no approval is needed.
   */
  #decide(
    text: string,
    then: (
      j: SqlJudgement,
      decision: Decision,
      approval: AuditEvent["approval"] | undefined,
      c: Classification,
    ) => void,
  ): Promise<void> | undefined {
    const { classification, judgement } = this.#judge(text);
    if (judgement.decision.action !== "requireApproval") {
      then(judgement, judgement.decision, undefined, classification);
      return undefined;
    }
    return this.#approve(judgement, text).then(({ decision, approval }) =>
      then(judgement, decision, approval, classification),
    );
  }

  /** Refuses an operation: audit now, and make the upstream raise the error in order (see top). */
  #deny(op: Op, simple: boolean) {
    const d = op.decision;
    op.error = "42501";
    this.#audit(op);
    const where = `policy ${d.policy ?? "(none)"}, rule ${d.rule ?? "(none: no rule allows it)"}`;
    const error = errorResponse({
      severity: "ERROR",
      code: "42501",
      message: `Airlock denied this statement: ${d.reason} [${where}]`,
      ...(d.reason.includes(NO_APPROVAL_SERVICE)
        ? { hint: "ask an operator to configure Airlock approvals" }
        : {}),
    });
    this.#toUp(executeMessage(this.#bogusPortal));
    this.#expect({ t: "deny", error });
    if (simple) {
      this.#toUp(syncMessage());
      this.#pending.push({ t: "sync" });
      this.#serverSkipping = false;
    } else {
      this.#localSkip = true;
    }
  }

  /** Records what an allowed text does to the session's named statements and cursors. */
  #applyEffects(c: Classification, decision: Decision) {
    for (const s of c.statements) {
      const e = s.effect;
      if (!e) continue;
      switch (e.kind) {
        case "prepare": {
          // PREPARE was judged as the statement it prepares: that judgement carries over.
          const entries = c.statements
            .filter((x) => x.index === s.index)
            .map(({ effect: _e, ...rest }) => rest);
          if (this.#prepared.has(e.name)) break; // the server refuses to redefine it
          this.#prepared.set(e.name, {
            statements: entries,
            classification: { statements: entries, errors: [], denials: [] },
            judgement: { decision, statements: entries },
            generation: this.#gen,
          });
          break;
        }
        case "deallocate":
          if (e.name === undefined) this.#prepared.clear();
          else this.#prepared.delete(e.name);
          break;
        case "discard":
          this.#prepared.clear();
          this.#portals.clear();
          this.#cursors.clear();
          break;
        case "declareCursor":
          this.#cursors.set(
            e.name,
            c.statements.filter((x) => x.index === s.index),
          );
          break;
        case "execute":
          break;
      }
    }
  }

  // ------------------------------------------------------------------------ simple query

  #onQuery(f: Frame): Promise<void> | undefined {
    const text = parseQuery(f.payload);
    return this.#decide(text, (j, decision, approval, c) => {
      const op = this.#newOp(j.statements, decision);
      if (approval) op.approval = approval;
      if (decision.action !== "allow") {
        this.#deny(op, true);
        return;
      }
      this.#applyEffects(c, decision);
      this.#toUp(f.raw);
      this.#pending.push({ t: "query", op });
    });
  }

  // --------------------------------------------------------------------- extended query

  #onParse(f: Frame): Promise<void> | undefined {
    const { name, query } = parseParse(f.payload);
    if (name !== "" && !this.#prepared.has(name) && this.#prepared.size >= this.#d.maxPreparedStatements) {
      const op = this.#newOp([], {
        action: "deny",
        policy: this.#conn.policy,
        rule: "airlock-builtin",
        reason: `too many prepared statements in this session (limit ${this.#d.maxPreparedStatements}); close some`,
      });
      this.#deny(op, false);
      return undefined;
    }
    return this.#decide(query, (j, decision, approval, c) => {
      if (decision.action !== "allow") {
        const op = this.#newOp(j.statements, decision);
        if (approval) op.approval = approval;
        this.#deny(op, false);
        return;
      }
      this.#applyEffects(c, decision);
      this.#toUp(f.raw);
      this.#expect({ t: "parse" });
      // The server refuses to redefine a named statement: keep what we know about the one it keeps.
      if (name !== "" && this.#prepared.has(name)) return;
      const info: StatementInfo = {
        statements: j.statements,
        classification: c,
        judgement: { ...j, decision },
        generation: this.#gen,
        ...(approval ? { approval, approvalDecision: j.decision, text: query } : {}),
      };
      this.#prepared.set(name, info);
      // With masking on, learn the result columns now (pipelined, answered before any Execute).
      if (this.#mask) this.#describeInternally(info, "S", name);
    });
  }

  /** Sends Describe for a statement or portal; its answer is recorded and not shown to the agent. */
  #describeInternally(target: StatementInfo | PortalInfo, kind: "S" | "P", name: string) {
    const wait = deferred();
    target.describing = wait.promise;
    this.#toUp(describeMessage(kind, name));
    if (this.#serverSkipping) {
      wait.resolve();
      return;
    }
    this.#pending.push({ t: "describe", kind, name, internal: true, target, done: wait.resolve });
  }

  #onBind(f: Frame): Promise<void> | undefined {
    const b = parseBind(f.payload);
    const info = this.#prepared.get(b.statement);
    if (!info) {
      const op = this.#newOp([], {
        action: "deny",
        policy: this.#conn.policy,
        rule: "airlock-builtin",
        reason: `Bind to prepared statement "${b.statement}", which this session never prepared through the sidecar`,
      });
      this.#deny(op, false);
      return undefined;
    }
    // A policy change since Parse: judge the statement again.
    this.#refresh();
    if (info.generation !== this.#gen) {
      const j = judgeSql({
        classification: info.classification,
        policies: this.#ctx.policies.current(),
        connection: this.#conn,
        subject: this.#subject,
        prepared: { get: (name) => this.#prepared.get(name)?.statements },
        masking: this.#mask !== undefined,
      });
      info.judgement = j;
      info.generation = this.#gen;
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
      if (this.#mask && b.resultFormats.some((x) => x !== 0)) {
        const plan = planResult(
          this.#mask,
          info.columns ?? [],
          b.resultFormats,
          this.#resultContext(info.statements),
        );
        const refused =
          plan.refused ??
          (info.columns === undefined
            ? "binary-format results are refused on a connection with masking rules when the sidecar cannot tell the result columns"
            : undefined);
        if (refused) {
          this.#deny(
            this.#newOp(info.statements, {
              action: "deny",
              policy: this.#conn.policy,
              rule: "airlock-masking",
              reason: refused,
            }),
            false,
          );
          return;
        }
      }
      this.#toUp(f.raw);
      this.#expect({ t: "bind" });
      info.uses = (info.uses ?? 0) + 1;
      this.#portals.set(b.portal, { statement: info, statements: info.statements, formats: b.resultFormats });
    };
    const proceed = (): Promise<void> | undefined => {
      if (this.#mask && b.resultFormats.some((x) => x !== 0) && info.columns === undefined) {
        // A binary result on a masking connection: the columns must be known before rows flow.
        if (!info.describing) this.#describeInternally(info, "S", b.statement);
        this.#toUp(flushMessage());
        this.#flushUp();
        const waiting = info.describing as Promise<void>;
        return waiting.then(finish);
      }
      if (this.#mask && info.columns === undefined && !info.describing)
        this.#describeInternally(info, "S", b.statement);
      finish();
      return undefined;
    };
    // An approval covers one execution: binding an approved statement again asks again (the
    // approvals service answers at once while a grant from `grantTtl` lasts).
    const approvalDecision = info.approvalDecision;
    if (approvalDecision && (info.uses ?? 0) > 0) {
      return this.#approve({ decision: approvalDecision, statements: info.statements }, info.text).then(
        ({ decision, approval }) => {
          if (decision.action !== "allow") {
            const op = this.#newOp(info.statements, decision);
            if (approval) op.approval = approval;
            this.#deny(op, false);
            return undefined;
          }
          if (approval) info.approval = approval;
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
    if (kind === "S") target = this.#prepared.get(name);
    else {
      target = this.#portals.get(name);
      if (!target) {
        target = { statements: this.#cursors.get(name) ?? [] };
        this.#portals.set(name, target);
      }
    }
    this.#toUp(f.raw);
    this.#expect({ t: "describe", kind, name, internal: false, target });
    return undefined;
  }

  #onExecute(f: Frame): Promise<void> | undefined {
    const { portal } = parseExecute(f.payload);
    let info = this.#portals.get(portal);
    if (!info) {
      // A cursor declared in SQL (or returned by a function) is a portal too.
      const cursor = this.#cursors.get(portal);
      info = { statements: cursor ?? [] };
      this.#portals.set(portal, info);
    }
    if (
      this.#mask &&
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
    const op = this.#newOp(info.statements, decision);
    if (info.statement?.approval) op.approval = info.statement.approval;
    this.#toUp(f.raw);
    this.#expect({ t: "execute", op, portal: info });
    return undefined;
  }

  #onClose(f: Frame) {
    const { kind, name } = parseTarget(f.payload, "Close");
    this.#toUp(f.raw);
    this.#expect({ t: "close" });
    if (kind === "S") this.#prepared.delete(name);
    else {
      this.#portals.delete(name);
      this.#cursors.delete(name);
    }
  }

  // ----------------------------------------------------------------------------- backend

  #onUpstreamData(chunk: Buffer) {
    const back = this.#back;
    if (!back || this.#phase === "closed" || this.#closing) return;
    back.push(chunk);
    try {
      for (;;) {
        // A run of DataRows that masking leaves alone (all of them without masking) is counted
        // and passed on as one slice; rows to mask, and the first rows before a plan exists,
        // go one by one below.
        const head = this.#pending.peek();
        if (head?.t === "query" || head?.t === "execute") {
          const mask = this.#mask;
          const plan = head.plan;
          const run = !mask
            ? back.takeRun(T.DataRow)
            : plan === undefined
              ? undefined
              : back.takeRun(T.DataRow, (b, s, e) => !plan.any || !rowNeedsMasking(mask, plan, b, s, e));
          if (run) {
            head.op.dataRows += run.count;
            this.#toAgent(run.raw);
            continue;
          }
        }
        const f = back.next();
        if (!f) break;
        this.#onBackend(f);
        if (this.#closing) return;
      }
    } catch (err) {
      this.#fatal(err);
      return;
    }
    this.#flushAgent();
  }

  #upstreamGone() {
    if (this.#phase === "closed" || this.#closing) return;
    this.#flushAgent();
    this.#fatal(new ProtocolError("the upstream database closed the connection", "08006"));
  }

  #unexpected(f: Frame, head: Pending | undefined): never {
    throw new Error(
      `upstream message ${typeName(f.type)} does not fit the protocol state (${head?.t ?? "idle"}); closing to stay safe`,
    );
  }

  #onBackend(f: Frame) {
    switch (f.type) {
      case T.NoticeResponse:
        this.#toAgent(this.#redacted(f, undefined));
        return;
      case T.NotificationResponse:
        this.#toAgent(this.#maskedNotification(f));
        return;
      case T.ParameterStatus:
        this.#toAgent(f.raw);
        return;
    }
    const head = this.#pending.peek();
    if (!head) {
      if (f.type === T.ErrorResponse) {
        // e.g. FATAL on administrator shutdown: pass it on, the upstream closes next.
        this.#toAgent(this.#redacted(f, undefined));
        return;
      }
      this.#unexpected(f, head);
    }
    if (f.type === T.ErrorResponse) {
      this.#onBackendError(f, head);
      return;
    }
    switch (head.t) {
      case "query":
        this.#onQueryResponse(f, head);
        return;
      case "execute":
        this.#onExecuteResponse(f, head);
        return;
      case "parse":
        if (f.type !== T.ParseComplete) this.#unexpected(f, head);
        break;
      case "bind":
        if (f.type !== T.BindComplete) this.#unexpected(f, head);
        break;
      case "close":
        if (f.type !== T.CloseComplete) this.#unexpected(f, head);
        break;
      case "describe":
        this.#onDescribeResponse(f, head);
        return;
      case "sync":
        if (f.type !== T.ReadyForQuery) this.#unexpected(f, head);
        this.#ready(f);
        break;
      default:
        this.#unexpected(f, head);
    }
    this.#toAgent(f.raw);
    this.#pending.shift();
  }

  #ready(f: Frame) {
    this.#txStatus = String.fromCharCode(f.payload[0] ?? 0x49);
    if (this.#txStatus === "I") {
      // Portals end with their transaction (holdable cursors aside, which stay in #cursors).
      for (const [name, p] of this.#portals) if (p.statement) this.#portals.delete(name);
    }
  }

  #onQueryResponse(f: Frame, head: Extract<Pending, { t: "query" }>) {
    const op = head.op;
    switch (f.type) {
      case T.RowDescription: {
        head.plan = this.#mask
          ? planResult(
              this.#mask,
              parseRowDescription(f.payload),
              undefined,
              this.#resultContext(op.statements),
            )
          : undefined;
        if (head.plan?.refused) throw new ProtocolError(head.plan.refused, "42501");
        break;
      }
      case T.DataRow: {
        op.dataRows++;
        if (head.plan?.any && this.#mask) {
          const masked = maskDataRow(this.#mask, head.plan, f.payload, op.masked);
          if (masked) {
            this.#toAgent(masked);
            return;
          }
        }
        break;
      }
      case T.CommandComplete: {
        const tag = decodeLoose(f.payload.subarray(0, Math.max(0, f.payload.length - 1)));
        op.tag = tag;
        op.tagged = true;
        op.rows += rowsOfTag(tag);
        head.plan = undefined;
        break;
      }
      case T.ReadyForQuery:
        this.#ready(f);
        this.#audit(op);
        this.#toAgent(f.raw);
        this.#pending.shift();
        return;
      case T.EmptyQueryResponse:
      case T.CopyInResponse:
      case T.CopyOutResponse:
      case T.CopyData:
      case T.CopyDone:
        break;
      default:
        this.#unexpected(f, head);
    }
    this.#toAgent(f.raw);
  }

  #resultContext(statements: readonly ClassifiedStatement[]) {
    const referenced = new Set<string>();
    for (const s of statements) for (const c of s.columns ?? []) referenced.add(c);
    // A database function may read a covered column the statement never names.
    if (callsUserFunction(statements, this.#userFunctions)) referenced.add("*");
    return { origins: this.#origins, referenced: [...referenced] };
  }

  #planFor(portal: PortalInfo | undefined): ResultPlan | undefined {
    const mask = this.#mask;
    if (!mask) return undefined;
    const context = this.#resultContext(portal?.statements ?? []);
    if (portal?.columns) return planResult(mask, portal.columns, undefined, context);
    const cols = portal?.statement?.columns;
    if (cols) return planResult(mask, cols, portal?.formats ?? [], context);
    throw new ProtocolError(
      "result columns unknown on a connection with masking rules; refusing to send rows",
      "42501",
    );
  }

  #onExecuteResponse(f: Frame, head: Extract<Pending, { t: "execute" }>) {
    const op = head.op;
    switch (f.type) {
      case T.DataRow: {
        op.dataRows++;
        if (this.#mask) {
          head.plan ??= this.#planFor(head.portal);
          if (head.plan?.refused) throw new ProtocolError(head.plan.refused, "42501");
          if (head.plan?.any) {
            const masked = maskDataRow(this.#mask, head.plan, f.payload, op.masked);
            if (masked) {
              this.#toAgent(masked);
              return;
            }
          }
        }
        break;
      }
      case T.CommandComplete:
      case T.EmptyQueryResponse:
      case T.PortalSuspended: {
        if (f.type === T.CommandComplete) {
          const tag = decodeLoose(f.payload.subarray(0, Math.max(0, f.payload.length - 1)));
          op.tag = tag;
          op.tagged = true;
          op.rows += rowsOfTag(tag);
        } else op.tag = f.type === T.PortalSuspended ? "suspended" : "empty";
        this.#audit(op);
        this.#toAgent(f.raw);
        this.#pending.shift();
        return;
      }
      case T.CopyInResponse:
      case T.CopyOutResponse:
      case T.CopyData:
      case T.CopyDone:
        break;
      default:
        this.#unexpected(f, head);
    }
    this.#toAgent(f.raw);
  }

  #onDescribeResponse(f: Frame, head: Extract<Pending, { t: "describe" }>) {
    // Columns serve masking only. Without it they are not recorded: should a policy change turn
    // masking on later in the session, a statement or portal without columns is described again
    // (internally) before its rows flow, and rows of unknown columns are refused.
    const record = (cols: () => readonly Column[]) => {
      if (head.target && this.#mask) head.target.columns = cols();
    };
    switch (f.type) {
      case T.ParameterDescription:
        if (head.kind !== "S") this.#unexpected(f, head);
        if (!head.internal) this.#toAgent(f.raw);
        return;
      case T.RowDescription:
        record(() => parseRowDescription(f.payload));
        break;
      case T.NoData:
        record(() => []);
        break;
      default:
        this.#unexpected(f, head);
    }
    if (!head.internal) this.#toAgent(f.raw);
    head.done?.();
    this.#pending.shift();
  }

  #onBackendError(f: Frame, head: Pending) {
    const fields = parseErrorFields(f.payload);
    const code = fields.get("C") ?? "XX000";
    const severity = fields.get("V") ?? fields.get("S") ?? "ERROR";
    if (severity === "FATAL" || severity === "PANIC") {
      this.#toAgent(this.#redacted(f, undefined));
      this.#flushAgent();
      this.#fatalPassed();
      return;
    }
    switch (head.t) {
      case "query":
        head.op.error ??= code;
        this.#toAgent(this.#redacted(f, head.op));
        return; // the query entry ends at ReadyForQuery
      case "sync":
        // e.g. a deferred constraint failing at the implicit COMMIT of Sync.
        this.#toAgent(this.#redacted(f, undefined));
        return;
      case "deny":
        this.#toAgent(head.error);
        break;
      case "describe":
        head.done?.();
        this.#toAgent(this.#redacted(f, undefined));
        break;
      case "execute":
        head.op.error = code;
        this.#audit(head.op);
        this.#toAgent(this.#redacted(f, head.op));
        break;
      default:
        this.#toAgent(this.#redacted(f, undefined));
    }
    this.#pending.shift();
    // The server now discards everything up to Sync: so do our expectations.
    for (;;) {
      const p = this.#pending.peek();
      if (!p) {
        this.#serverSkipping = true;
        return;
      }
      if (p.t === "sync") return;
      this.#pending.shift();
      if (p.t === "describe") p.done?.();
      if (p.t === "execute" || p.t === "query") {
        p.op.error = "skipped";
        this.#audit(p.op);
      }
    }
  }

  /** The upstream sent FATAL: it closes next; so do we, once the agent has the message. */
  #fatalPassed() {
    this.#closing = true;
    this.#agent.end();
    const t = setTimeout(() => this.close(), 1000);
    t.unref();
  }

  /** A notification as the agent may see it; masked values count in metrics (no operation owns it). */
  #maskedNotification(f: Frame): Buffer {
    if (!this.#mask) return f.raw;
    const counts: Record<string, number> = {};
    const masked = maskNotification(this.#mask, f.payload, counts);
    this.#countMasked(counts);
    return masked ?? f.raw;
  }

  #countMasked(counts: Readonly<Record<string, number>>) {
    for (const [detector, n] of Object.entries(counts))
      this.#ctx.metrics.masked.inc({ connection: this.#name, detector }, n);
  }

  /** An error/notice as the agent may see it (values that could bypass masking redacted). */
  #redacted(f: Frame, op: Op | undefined): Buffer {
    if (!this.#mask) return f.raw;
    const counts: Record<string, number> = op?.masked ?? {};
    return redactNotice(this.#mask, f.type, f.payload, counts) ?? f.raw;
  }

  // ------------------------------------------------------------------------------- audit

  #audit(op: Op) {
    const ctx = this.#ctx;
    const d = op.decision;
    const durationMs = Math.round((now() - op.start) * 1000) / 1000;
    const masked = hasKeys(op.masked) ? op.masked : undefined;
    // (Optional fields are assigned, not spread into the literal: this runs once per statement.)
    const event: AuditEvent = {
      session: this.id,
      connection: this.#name,
      protocol: "postgres",
      identity: this.#auditIdentity(),
      operation: auditOperation(op.statements),
      decision: auditDecision(d),
      rows: op.tagged ? op.rows : op.dataRows,
      durationMs,
    };
    if (op.approval) event.approval = op.approval;
    if (masked) event.masked = masked;
    if (d.action === "allow") {
      const upstream: NonNullable<AuditEvent["upstream"]> = {};
      if (op.tag) upstream.status = op.tag;
      if (op.error) upstream.error = op.error;
      event.upstream = upstream;
    }
    ctx.audit.emit(event);
    this.#cells.operations[d.action].inc();
    if (d.action === "allow") this.#cells.upstreamSeconds.observe(durationMs / 1000);
    if (masked) this.#countMasked(masked);
  }

  /** The session's audit identity: fixed once the session is ready (the user is known by then). */
  #auditIdentity(): AuditIdentity {
    if (this.#identity) return this.#identity;
    const w = this.#ctx.workload;
    const identity: AuditIdentity = Object.freeze({
      serviceAccount: w.subject,
      pod: w.podName,
      namespace: w.namespace,
      ...(this.#user ? { user: this.#user.user, groups: this.#user.groups } : {}),
    });
    if (this.#phase === "ready") this.#identity = identity;
    return identity;
  }
}

interface SessionCells {
  decisionSeconds: HistogramCell;
  upstreamSeconds: HistogramCell;
  operations: Record<Decision["action"], CounterCell>;
}

function sessionCells(metrics: Metrics, connection: string): SessionCells {
  const op = (decision: Decision["action"]) =>
    metrics.operations.cell({ connection, protocol: "postgres", decision });
  return {
    decisionSeconds: metrics.decisionSeconds.cell({ protocol: "postgres" }),
    upstreamSeconds: metrics.upstreamSeconds.cell({ connection, protocol: "postgres" }),
    operations: { allow: op("allow"), deny: op("deny"), requireApproval: op("requireApproval") },
  };
}

function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

// Audit shapes of what is shared between statements: classifications are cached and frozen, and
// so are judgements' decisions within a policy generation (Session.#judge), so the same objects
// come back statement after statement. Their audit shapes are built once and frozen.
const auditOperations = new WeakMap<readonly ClassifiedStatement[], AuditOperation>();
const auditDecisions = new WeakMap<Decision, AuditEvent["decision"]>();

function auditOperation(statements: readonly ClassifiedStatement[]): AuditOperation {
  let o = auditOperations.get(statements);
  if (!o) {
    o = Object.freeze({
      kind: "sql" as const,
      statements: Object.freeze(
        statements.map((s) => Object.freeze({ kind: s.kind, tables: s.tables, fingerprint: s.fingerprint })),
      ),
    });
    auditOperations.set(statements, o);
  }
  return o;
}

function auditDecision(d: Decision): AuditEvent["decision"] {
  let a = auditDecisions.get(d);
  if (!a) {
    a = Object.freeze({
      action: d.action,
      ...(d.policy ? { policy: d.policy } : {}),
      ...(d.rule ? { rule: d.rule } : {}),
      reason: d.reason,
    });
    auditDecisions.set(d, a);
  }
  return a;
}

/** Merges adjacent views of the same memory so a pass-through burst is one write. */
function coalesce(bufs: Buffer[]): Buffer[] {
  if (bufs.length < 2) return bufs;
  const out: Buffer[] = [];
  let first = bufs[0] as Buffer; // first view of the current run
  let end = first.byteOffset + first.length; // end of the run in first.buffer
  let runs = 1; // views in the current run
  const close = () => {
    out.push(runs === 1 ? first : Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset));
  };
  for (let i = 1; i < bufs.length; i++) {
    const b = bufs[i] as Buffer;
    if (b.buffer === first.buffer && b.byteOffset === end) {
      end += b.length;
      runs++;
    } else {
      close();
      first = b;
      end = b.byteOffset + b.length;
      runs = 1;
    }
  }
  close();
  return out;
}
