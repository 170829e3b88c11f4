// The session's named things, as the guard knows them: prepared statements (SQL PREPARE and
// protocol Parse), portals and SQL cursors, with the judgement each was made under; and the
// per-operation record a forwarded message carries until its reply completes.

import type { AuditOperation } from "../../audit/events.ts";
import type { SqlJudgement } from "../../decisions/index.ts";
import type { Operation } from "../../operations/lifecycle.ts";
import type { Decision } from "../../policy/types.ts";
import type { Classification, ClassifiedStatement } from "../../sql/index.ts";
import type { Column } from "./protocol.ts";

/** One operation in flight: the statements, what governs them, and what the reply said so far. */
export interface Op {
  readonly rec: Operation;
  readonly statements: readonly ClassifiedStatement[];
  /** The effective decision (after any approval): allow, or why it was refused. */
  readonly decision: Decision;
  rows: number;
  dataRows: number;
  tagged: boolean;
  tag?: string;
  error?: string;
}

export interface StatementInfo {
  statements: readonly ClassifiedStatement[];
  classification: Classification;
  judgement: SqlJudgement;
  generation: number;
  /** The catalog it was judged with (judged again when the session's catalog changed). */
  catalog?: unknown;
  /** The approval that let the statement through (audited with its execution). */
  approval?: NonNullable<Operation["approval"]>;
  /** The requireApproval decision, when the statement needed one: each execution asks again. */
  approvalDecision?: Decision;
  /** Binds so far. */
  uses?: number;
  /** The statement text (approval summaries of its Binds and of an EXECUTE of it). */
  text?: string;
  /** Result columns: from a Describe (the agent's or the sidecar's own). [] = no rows. */
  columns?: readonly Column[];
  describing?: Promise<void>;
}

export interface PortalInfo {
  statement?: StatementInfo;
  statements: readonly ClassifiedStatement[];
  formats?: readonly number[];
  /** From Describe Portal: the columns with their actual formats. */
  columns?: readonly Column[];
  describing?: Promise<void>;
  /** A SQL cursor (declared in SQL or by a function), executed by name: masking reads its history. */
  cursor?: string;
}

export class SessionStatements {
  /**
   * statement_timeout as the server applies it: the session's default (read at connect), what
   * SET changed it to, and a SET LOCAL for the current transaction. Approval waits end with it.
   */
  readonly statementTimeout: { default: number; session?: number | undefined; local?: number | undefined } = {
    default: 0,
  };
  readonly prepared = new Map<string, StatementInfo>();
  readonly portals = new Map<string, PortalInfo>();
  readonly cursors = new Map<string, readonly ClassifiedStatement[]>();
  /**
   * Every query a cursor of each name was declared with in this session, never forgotten: a
   * CLOSE or a DECLARE inside a transaction or savepoint that is rolled back comes undone on the
   * server, so what a FETCH reads may be any of them (masking takes all: see ResultMasking).
   */
  readonly cursorHistory = new Map<string, ClassifiedStatement[]>();

  /**
   * Records what an allowed text does to the session's named statements and cursors: all of it,
   * or only statement `index` (the one the server just completed). `active`: the portal running
   * it (extended protocol), which CLOSE ALL and DISCARD ALL leave in place, as the server does.
   * `text`: the text of the statement(s) applied, kept with a PREPARE for approval summaries.
   */
  applyEffects(
    c: Classification,
    decision: Decision,
    generation: number,
    index?: number,
    active?: string,
    text?: string,
  ): void {
    for (const s of c.statements) {
      const e = s.effect;
      if (!e || (index !== undefined && s.index !== index)) continue;
      switch (e.kind) {
        case "prepare": {
          // PREPARE was judged as the statement it prepares: that judgement carries over.
          const entries = c.statements
            .filter((x) => x.index === s.index)
            .map(({ effect: _e, ...rest }) => rest);
          if (this.prepared.has(e.name)) break; // the server refuses to redefine it
          this.prepared.set(e.name, {
            statements: entries,
            classification: { statements: entries, errors: [], denials: [] },
            judgement: { decision, statements: entries },
            generation,
            ...(text !== undefined ? { text } : {}),
          });
          break;
        }
        case "deallocate":
          if (e.name === undefined) this.#dropNamedStatements();
          else this.prepared.delete(e.name);
          break;
        case "discard":
          // DISCARD ALL = CLOSE ALL + DEALLOCATE ALL (+ settings, listens, locks, temp objects).
          this.#dropNamedStatements();
          this.#closeAll(active);
          break;
        case "declareCursor":
          // The server refuses DECLARE over an existing portal: whatever we knew by that name is gone.
          this.portals.delete(e.name);
          this.cursors.set(
            e.name,
            c.statements.filter((x) => x.index === s.index),
          );
          this.cursorHistory.set(e.name, [
            ...(this.cursorHistory.get(e.name) ?? []),
            ...c.statements.filter((x) => x.index === s.index),
          ]);
          break;
        case "closeCursor":
          if (e.name === undefined) this.#closeAll(active);
          else {
            this.cursors.delete(e.name);
            this.portals.delete(e.name);
          }
          break;
        case "statementTimeout": {
          const t = this.statementTimeout;
          if (e.local) t.local = e.ms ?? t.session ?? t.default;
          else {
            t.session = e.ms;
            t.local = undefined;
          }
          break;
        }
        case "execute":
        case "fetch":
          break;
      }
    }
  }

  /** DEALLOCATE ALL drops every named prepared statement (SQL and protocol); the unnamed one stays. */
  #dropNamedStatements(): void {
    for (const name of this.prepared.keys()) if (name !== "") this.prepared.delete(name);
  }

  /** CLOSE ALL drops every portal, protocol-level ones included, except the one running it. */
  #closeAll(active: string | undefined): void {
    this.cursors.clear();
    for (const name of this.portals.keys()) if (name !== active) this.portals.delete(name);
  }

  /** Close of a statement ('S') or portal ('P'). */
  close(kind: "S" | "P", name: string): void {
    if (kind === "S") this.prepared.delete(name);
    else {
      this.portals.delete(name);
      this.cursors.delete(name);
    }
  }

  /** The transaction ended: portals end with it (holdable cursors aside, which stay in cursors). */
  transactionEnded(): void {
    this.statementTimeout.local = undefined;
    for (const [name, p] of this.portals) if (p.statement) this.portals.delete(name);
  }

  /** The statement_timeout in force now, in ms (0: none). */
  statementTimeoutMs(): number {
    const t = this.statementTimeout;
    return t.local ?? t.session ?? t.default;
  }

  /** The portal an Execute names: a bound one, or a cursor declared in SQL (or by a function). */
  portalFor(name: string): PortalInfo {
    let info = this.portals.get(name);
    if (!info) {
      info = { statements: this.cursors.get(name) ?? [], cursor: name };
      this.portals.set(name, info);
    }
    return info;
  }
}

// Audit shapes of what is shared between statements: classifications are cached and frozen, so
// the same statement arrays come back statement after statement; their audit shapes are built
// once and frozen.
const auditOperations = new WeakMap<readonly ClassifiedStatement[], AuditOperation>();

export function auditOperation(statements: readonly ClassifiedStatement[]): AuditOperation {
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
