// The reply-matching state machine of one PostgreSQL session. A FIFO of what each forwarded
// message will produce ties every backend message to the message that caused it: which
// RowDescription describes which DataRows (for masking), which CommandComplete ends which
// statement (for audit), which ErrorResponse replaces a denial. After an ErrorResponse in the
// extended protocol the entries up to the next Sync are dropped, as the server skips those
// messages. Messages that are not rewritten are passed on as the exact bytes received; a message
// that fits no expectation closes the session (the guard never guesses).

import { type CopyPlan, copyPlan, maskCopyRow } from "./copy-masking.ts";
import type { BackendFramer, Frame } from "./framing.ts";
import { typeName } from "./framing.ts";
import {
  type Column,
  decodeLoose,
  message,
  ProtocolError,
  parseErrorFields,
  parseRowDescription,
  rowsOfTag,
  T,
} from "./protocol.ts";
import type { ResultMasking } from "./results.ts";
import { maskDataRow, type ResultPlan, rowNeedsMasking } from "./row-masking.ts";
import type { Op, PortalInfo, SessionStatements, StatementInfo } from "./statements.ts";

export type Pending =
  | {
      t: "query";
      op: Op;
      plan?: ResultPlan | undefined;
      /** The COPY ... TO running now, when its rows are masked. */
      copy?: CopyPlan | undefined;
      /** Called with the ordinal of each statement the server completed (its CommandComplete). */
      completed?: (ordinal: number) => void;
      done?: number;
    }
  /** `undo`: what to forget when the server refuses (or skips) the Parse. */
  | { t: "parse"; undo?: () => void }
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
  | {
      t: "execute";
      op: Op;
      portal: PortalInfo | undefined;
      plan?: ResultPlan | undefined;
      copy?: CopyPlan | undefined;
      /** Called when the server completed the statement (its session effects take effect). */
      completed?: () => void;
    }
  | { t: "sync" }
  | { t: "deny"; error: Buffer };

/** What the state machine needs of its session. */
export interface ReplyHost {
  readonly results: ResultMasking;
  readonly statements: SessionStatements;
  toAgent(b: Buffer): void;
  /** Ends an operation with its audit event (once per op). */
  finish(op: Op): void;
  /** Masked values of messages no operation owns (notifications): counted in metrics. */
  countMasked(counts: Readonly<Record<string, number>>): void;
  /** The upstream sent FATAL: it closes next; the session ends once the agent has the message. */
  fatalPassed(): void;
  /** Whether the session is closing (stop reading replies). */
  closing(): boolean;
  /** The server reported no transaction open (what the session changed is committed or gone). */
  transactionEnded(): void;
}

export class Queue<V> {
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
  /** Every entry, oldest first (for ending what is left when the session closes). */
  *[Symbol.iterator](): Iterator<V> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as V;
  }
}

export class ReplyMatcher {
  readonly #host: ReplyHost;
  readonly #pending = new Queue<Pending>();
  /** The server discards everything up to Sync after an error: it answers nothing we forward. */
  #serverSkipping = false;
  /** Transaction status of the last ReadyForQuery. */
  txStatus = "I";

  constructor(host: ReplyHost) {
    this.#host = host;
  }

  get length(): number {
    return this.#pending.length;
  }

  get serverSkipping(): boolean {
    return this.#serverSkipping;
  }

  /** Expects the reply of a forwarded message (nothing, while the server skips to Sync). */
  expect(p: Pending): void {
    if (!this.#serverSkipping) this.#pending.push(p);
  }

  /** A Sync was forwarded: it is always answered, and ends any skipping. */
  sync(): void {
    this.#pending.push({ t: "sync" });
    this.#serverSkipping = false;
  }

  /** Operations still waiting for their reply (the session ends them when it closes). */
  *openOperations(): Iterable<Op> {
    for (const p of this.#pending) if (p.t === "query" || p.t === "execute") yield p.op;
  }

  /** Reads every complete backend message `back` holds and answers it. Throws to close the session. */
  receive(back: BackendFramer): void {
    const host = this.#host;
    for (;;) {
      // A run of DataRows that masking leaves alone (all of them without masking) is counted
      // and passed on as one slice; rows to mask, and the first rows before a plan exists,
      // go one by one below.
      const head = this.#pending.peek();
      if (head?.t === "query" || head?.t === "execute") {
        const mask = host.results.mask;
        const plan = head.plan;
        const run = !mask
          ? back.takeRun(T.DataRow)
          : plan === undefined
            ? undefined
            : back.takeRun(T.DataRow, (b, s, e) => !plan.any || !rowNeedsMasking(mask, plan, b, s, e));
        if (run) {
          head.op.dataRows += run.count;
          host.toAgent(run.raw);
          continue;
        }
      }
      const f = back.next();
      if (!f) break;
      this.#onBackend(f);
      if (host.closing()) return;
    }
  }

  #unexpected(f: Frame, head: Pending | undefined): never {
    throw new Error(
      `upstream message ${typeName(f.type)} does not fit the protocol state (${head?.t ?? "idle"}); closing to stay safe`,
    );
  }

  #onBackend(f: Frame): void {
    const host = this.#host;
    switch (f.type) {
      case T.NoticeResponse:
        host.toAgent(this.#redacted(f, undefined));
        return;
      case T.NotificationResponse:
        host.toAgent(this.#maskedNotification(f));
        return;
      case T.ParameterStatus:
        host.toAgent(f.raw);
        return;
    }
    const head = this.#pending.peek();
    if (!head) {
      if (f.type === T.ErrorResponse) {
        // e.g. FATAL on administrator shutdown: pass it on, the upstream closes next.
        host.toAgent(this.#redacted(f, undefined));
        return;
      }
      this.#unexpected(f, head);
    }
    if (f.type === T.ErrorResponse) {
      this.#onError(f, head);
      return;
    }
    switch (head.t) {
      case "query":
        this.#onQueryReply(f, head);
        return;
      case "execute":
        this.#onExecuteReply(f, head);
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
        this.#onDescribeReply(f, head);
        return;
      case "sync":
        if (f.type !== T.ReadyForQuery) this.#unexpected(f, head);
        this.#ready(f);
        break;
      default:
        this.#unexpected(f, head);
    }
    host.toAgent(f.raw);
    this.#pending.shift();
  }

  #ready(f: Frame): void {
    this.txStatus = String.fromCharCode(f.payload[0] ?? 0x49);
    if (this.txStatus === "I") {
      this.#host.statements.transactionEnded();
      this.#host.transactionEnded();
    }
  }

  #tag(op: Op, f: Frame): void {
    const tag = decodeLoose(f.payload.subarray(0, Math.max(0, f.payload.length - 1)));
    op.tag = tag;
    op.tagged = true;
    op.rows += rowsOfTag(tag);
  }

  /** Masks a DataRow when the plan says so; true when the masked row was sent. */
  #maskedRow(op: Op, plan: ResultPlan | undefined, f: Frame): boolean {
    const mask = this.#host.results.mask;
    if (!plan?.any || !mask) return false;
    const masked = maskDataRow(mask, plan, f.payload, op.rec.maskCounts());
    if (!masked) return false;
    this.#host.toAgent(masked);
    return true;
  }

  #onQueryReply(f: Frame, head: Extract<Pending, { t: "query" }>): void {
    const op = head.op;
    const host = this.#host;
    switch (f.type) {
      case T.RowDescription: {
        // Columns serve masking only (as in #onDescribeReply): without it they are not read.
        head.plan = host.results.mask
          ? host.results.plan(op.statements, parseRowDescription(f.payload))
          : undefined;
        if (head.plan?.refused) throw new ProtocolError(head.plan.refused, "42501");
        break;
      }
      case T.DataRow:
        op.dataRows++;
        if (this.#maskedRow(op, head.plan, f)) return;
        break;
      case T.CommandComplete:
        this.#tag(op, f);
        head.plan = undefined;
        head.done = (head.done ?? 0) + 1;
        head.completed?.(head.done - 1);
        break;
      case T.ReadyForQuery:
        // Finished first: a catalog change it completed is then known to have ended with the
        // transaction this ReadyForQuery may report closed.
        host.finish(op);
        this.#ready(f);
        host.toAgent(f.raw);
        this.#pending.shift();
        return;
      case T.CopyOutResponse:
      case T.CopyData:
      case T.CopyDone:
        if (this.#copyOut(op, head, f)) return;
        break;
      case T.EmptyQueryResponse:
      case T.CopyInResponse:
        break;
      default:
        this.#unexpected(f, head);
    }
    host.toAgent(f.raw);
  }

  #onExecuteReply(f: Frame, head: Extract<Pending, { t: "execute" }>): void {
    const op = head.op;
    const host = this.#host;
    switch (f.type) {
      case T.DataRow: {
        op.dataRows++;
        if (host.results.mask) {
          head.plan ??= host.results.planFor(head.portal);
          if (head.plan?.refused) throw new ProtocolError(head.plan.refused, "42501");
          if (this.#maskedRow(op, head.plan, f)) return;
        }
        break;
      }
      case T.CommandComplete:
      case T.EmptyQueryResponse:
      case T.PortalSuspended: {
        if (f.type === T.CommandComplete) {
          this.#tag(op, f);
          head.completed?.();
        } else op.tag = f.type === T.PortalSuspended ? "suspended" : "empty";
        host.finish(op);
        host.toAgent(f.raw);
        this.#pending.shift();
        return;
      }
      case T.CopyOutResponse:
      case T.CopyData:
      case T.CopyDone:
        if (this.#copyOut(op, head, f)) return;
        break;
      case T.CopyInResponse:
        break;
      default:
        this.#unexpected(f, head);
    }
    host.toAgent(f.raw);
  }

  /**
   * COPY ... TO rows under masking (copy-masking.ts); true when a masked row was sent instead of
   * the frame. A COPY the statement's text does not describe is refused, never passed on.
   */
  #copyOut(op: Op, head: { copy?: CopyPlan | undefined }, f: Frame): boolean {
    const mask = this.#host.results.mask;
    if (!mask) return false;
    if (f.type === T.CopyOutResponse) {
      const copies = op.statements.filter((s) => s.kind === "copyTo" && !s.nested);
      const copy = copies.length === 1 ? copies[0]?.copyOut : undefined;
      if (!copy)
        throw new ProtocolError("COPY ... TO that the guard cannot mask; refusing its rows", "42501");
      head.copy = copyPlan(mask, copy);
      return false;
    }
    if (f.type === T.CopyDone) {
      head.copy = undefined;
      return false;
    }
    if (!head.copy) return false;
    const masked = maskCopyRow(mask, head.copy, f.payload, op.rec.maskCounts());
    if (!masked) return false;
    this.#host.toAgent(message(T.CopyData, masked));
    return true;
  }

  #onDescribeReply(f: Frame, head: Extract<Pending, { t: "describe" }>): void {
    // Columns serve masking only. Without it they are not recorded: should a policy change turn
    // masking on later in the session, a statement or portal without columns is described again
    // (internally) before its rows flow, and rows of unknown columns are refused.
    const record = (cols: () => readonly Column[]) => {
      if (head.target && this.#host.results.mask) head.target.columns = cols();
    };
    switch (f.type) {
      case T.ParameterDescription:
        if (head.kind !== "S") this.#unexpected(f, head);
        if (!head.internal) this.#host.toAgent(f.raw);
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
    if (!head.internal) this.#host.toAgent(f.raw);
    head.done?.();
    this.#pending.shift();
  }

  #onError(f: Frame, head: Pending): void {
    const host = this.#host;
    const fields = parseErrorFields(f.payload);
    const code = fields.get("C") ?? "XX000";
    const severity = fields.get("V") ?? fields.get("S") ?? "ERROR";
    if (severity === "FATAL" || severity === "PANIC") {
      host.toAgent(this.#redacted(f, undefined));
      host.fatalPassed();
      return;
    }
    switch (head.t) {
      case "query":
        head.op.error ??= code;
        host.toAgent(this.#redacted(f, head.op));
        return; // the query entry ends at ReadyForQuery
      case "sync":
        // e.g. a deferred constraint failing at the implicit COMMIT of Sync.
        host.toAgent(this.#redacted(f, undefined));
        return;
      case "deny":
        host.toAgent(head.error);
        break;
      case "describe":
        head.done?.();
        host.toAgent(this.#redacted(f, undefined));
        break;
      case "parse":
        head.undo?.();
        host.toAgent(this.#redacted(f, undefined));
        break;
      case "execute":
        head.op.error = code;
        host.finish(head.op);
        host.toAgent(this.#redacted(f, head.op));
        break;
      default:
        host.toAgent(this.#redacted(f, undefined));
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
      if (p.t === "parse") p.undo?.();
      if (p.t === "execute" || p.t === "query") {
        p.op.error = "skipped";
        host.finish(p.op);
      }
    }
  }

  /** A notification as the agent may see it; masked values count in metrics (no operation owns it). */
  #maskedNotification(f: Frame): Buffer {
    if (!this.#host.results.mask) return f.raw;
    const counts: Record<string, number> = {};
    const masked = this.#host.results.notification(f.payload, counts);
    this.#host.countMasked(counts);
    return masked ?? f.raw;
  }

  /**
   * An error/notice as the agent may see it (values that could bypass masking redacted). `op`:
   * the operation it belongs to; a notice belongs to the statement running when it arrives.
   */
  #redacted(f: Frame, op: Op | undefined): Buffer {
    if (!this.#host.results.mask) return f.raw;
    const head = this.#pending.peek();
    const owner = op ?? (head && (head.t === "query" || head.t === "execute") ? head.op : undefined);
    const counts: Record<string, number> = owner ? owner.rec.maskCounts() : {};
    let statements = owner?.statements;
    // COMMIT runs the queries of the WITH HOLD cursors open in the transaction (they are
    // materialized then): its errors may quote what those read.
    if (statements?.some((s) => s.kind === "transaction" || s.kind === "twoPhaseCommit")) {
      const cursors = [...this.#host.statements.cursors.values()].flat();
      if (cursors.length) statements = [...statements, ...cursors];
    }
    return this.#host.results.notice(f.type, f.payload, counts, statements) ?? f.raw;
  }
}
