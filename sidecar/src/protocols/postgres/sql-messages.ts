// The frontend messages that carry or run SQL: Query (simple protocol) and Parse, Bind, Describe,
// Execute, Close (extended protocol). Each statement is judged (session-judge.ts) when its text
// arrives (Query, Parse), re-judged at Bind when the policy or the catalog changed since Parse;
// what the server will answer is registered with the reply matcher (replies.ts) as the message
// goes upstream, and what it does to the session's named statements and cursors takes effect
// only when the server completes it (statements.ts).
import type { CredentialSource } from "../../credentials/index.ts";
import { refusal, type SqlJudgement } from "../../decisions/index.ts";
import type { Decision } from "../../policy/types.ts";
import { type Classification, type ClassifiedStatement, statementSpans } from "../../sql/index.ts";
import { FIRST_NORMAL_OID } from "../../sql/volatile-allow-list.ts";
import type { Verdict } from "./approval.ts";
import { type ApprovedRuns, notAloneReason } from "./approved-run.ts";
import type { SessionCatalog } from "./catalog-source.ts";
import type { Duplex } from "./duplex.ts";
import type { Frame } from "./framing.ts";
import {
  describeMessage,
  flushMessage,
  parseBind,
  parseExecute,
  parseParse,
  parseQuery,
  parseTarget,
} from "./protocol.ts";
import type { ReplyMatcher } from "./replies.ts";
import type { ResultMasking } from "./results.ts";
import type { SessionJudge } from "./session-judge.ts";
import type { Op, PortalInfo, SessionStatements, StatementInfo } from "./statements.ts";

/** What the SQL messages need of their session. */
export interface SqlMessageHost {
  readonly io: Duplex;
  readonly replies: ReplyMatcher;
  readonly statements: SessionStatements;
  readonly results: ResultMasking;
  readonly catalog: SessionCatalog;
  readonly judge: SessionJudge;
  readonly runs: ApprovedRuns;
  readonly maxPreparedStatements: number;
  /** Extended-protocol messages were forwarded since the last Sync. */
  unsynced(): boolean;
  /** A Sync (or a simple Query, its own) went upstream. */
  synced(): void;
  /** Rereads the catalog (after this session's DDL). */
  rereadCatalog(): Promise<void>;
  /** Asks for approval of a requireApproval judgement (`text`: what the approver is shown). */
  approve(j: Pick<SqlJudgement, "decision" | "statements">, text: string | undefined): Promise<Verdict>;
  /** The source of the credential approved statements run under, when the connection has one. */
  approvedSource(): CredentialSource | undefined;
  /** Begins the operation of a message: `decision` governs it, `audited` is what its event records. */
  newOp(statements: readonly ClassifiedStatement[], decision: Decision, audited?: Decision): Op;
  /** The operation of a verdict: its decision, and the approval asked, granted or refused. */
  opOf(statements: readonly ClassifiedStatement[], v: Verdict): Op;
  /** Refuses an operation (audited now; the upstream raises the error in order). */
  deny(op: Op, simple: boolean): void;
  denyVerdict(statements: readonly ClassifiedStatement[], v: Verdict, simple: boolean): void;
}

export class SqlMessages {
  readonly #h: SqlMessageHost;
  /** A SET went to the server in this session (an approved connection would not have it). */
  #settingsChanged = false;

  constructor(host: SqlMessageHost) {
    this.#h = host;
  }

  // ------------------------------------------------------------------------ decisions

  /**
   * Judges `text`; `then` runs with the verdict, synchronously when no approval is needed.
   * `parseName`: the statement's name when it came in a Parse.
   */
  #decide(
    text: string,
    then: (v: Verdict, c: Classification) => Promise<void> | undefined,
    parseName?: string,
  ): Promise<void> | undefined {
    const h = this.#h;
    if (h.catalog.stale) return h.rereadCatalog().then(() => this.#decide(text, then, parseName));
    const { classification, judgement } = h.judge.judge(text);
    if (judgement.decision.action !== "requireApproval") {
      then({ judgement, decision: judgement.decision, audited: judgement.decision }, classification);
      return undefined;
    }
    // Under a credential for approved statements, what cannot run alone is refused before anyone
    // is asked.
    let why: string | undefined;
    if (h.approvedSource()) {
      const pending = this.#pendingKinds();
      why = notAloneReason(classification.statements, {
        txStatus: h.replies.txStatus,
        unsynced: h.unsynced(),
        copyOpen: pending.has("copyFrom"),
        transactionPending: pending.has("transaction") || pending.has("twoPhaseCommit"),
        settingsChanged: this.#settingsChanged,
        parseName,
      });
    }
    if (why) {
      const d = refusal("sqlApprovedNotAlone", h.judge.connection.policy, why);
      then({ judgement, decision: d, audited: d }, classification);
      return undefined;
    }
    return h
      .approve(judgement, this.#shownText(text, classification))
      .then((v) => then({ ...v, judgement }, classification));
  }

  /**
   * What an approver is shown for `text`: an EXECUTE names a statement, not what it runs, so the
   * text of every statement it executes follows (as this session prepared it), or the approver
   * is told it is not known.
   */
  #shownText(text: string, c: Classification): string {
    const shown: string[] = [];
    for (const s of c.statements) {
      if (s.effect?.kind !== "execute") continue;
      const prepared = this.#h.statements.prepared.get(s.effect.name)?.text;
      shown.push(
        prepared === undefined
          ? `/* ${s.effect.name}: text not known */`
          : prepared.trim().replace(/;\s*$/, ""),
      );
    }
    return shown.length ? `${text.trim().replace(/;\s*$/, "")};\n${[...new Set(shown)].join(";\n")}` : text;
  }

  /** Statement kinds of what the session forwarded that is not answered yet. */
  #pendingKinds(): Set<string> {
    const kinds = new Set<string>();
    for (const op of this.#h.replies.openOperations()) for (const s of op.statements) kinds.add(s.kind);
    return kinds;
  }

  /** An approved statement under a credential of its own: its run, or its refusal (false). */
  #startRun(
    source: CredentialSource,
    statements: readonly ClassifiedStatement[],
    v: Verdict,
    simple: boolean,
  ): Promise<boolean> {
    const h = this.#h;
    return h.runs.start(source, (r) => {
      const d = refusal(r.kind, h.judge.connection.policy, r.why);
      h.denyVerdict(statements, { ...v, decision: d, audited: d }, simple);
      h.io.flush();
    });
  }

  // ------------------------------------------------------------------------ simple query

  query(f: Frame): Promise<void> | undefined {
    const h = this.#h;
    const text = parseQuery(f.payload);
    return this.#decide(text, (v, c) => {
      const statements = v.judgement.statements;
      if (v.decision.action !== "allow") {
        h.denyVerdict(statements, v, true);
        return;
      }
      if (c.statements.some((s) => s.kind === "set")) this.#settingsChanged = true;
      const forward = () => {
        const op = h.opOf(statements, v);
        h.io.toUp(f.raw);
        // What the text does to the session's named statements and cursors takes effect statement
        // by statement as the server completes them: a PREPARE it refuses (in an aborted
        // transaction, after an earlier error) is never recorded.
        const effects = c.statements.some((s) => s.effect !== undefined);
        const order = effects ? [...new Set(c.statements.map((s) => s.index))] : [];
        const gen = h.judge.generation;
        h.replies.expect({
          t: "query",
          op,
          ...(effects
            ? {
                completed: (k: number) => {
                  const index = order[k];
                  if (index === undefined) return;
                  const span = statementSpans(text)[index];
                  const own = span ? text.slice(span.start, span.end).trim() : undefined;
                  h.statements.applyEffects(c, v.decision, gen, index, undefined, own);
                },
              }
            : {}),
        });
      };
      const source = v.approval ? h.approvedSource() : undefined;
      if (!source) {
        forward();
        return undefined;
      }
      return this.#startRun(source, statements, v, true).then((ok) => {
        if (!ok) return undefined;
        forward();
        h.synced();
        return h.runs.current?.done;
      });
    });
  }

  // --------------------------------------------------------------------- extended query

  parse(f: Frame): Promise<void> | undefined {
    const h = this.#h;
    const { name, query, types } = parseParse(f.payload);
    // A parameter declared of a domain type (or a composite with a domain field) runs the
    // domain's CHECKs at every Bind: code the text does not show.
    if (types.some((t) => t >= FIRST_NORMAL_OID)) {
      if (h.catalog.stale) return h.rereadCatalog().then(() => this.parse(f));
      const opaque = types.find((t) => h.catalog.catalog?.opaqueTypes.has(t));
      if (opaque !== undefined) {
        const why = `parameter type ${opaque} is a domain (or holds one) whose CHECK may write or run code the statement does not show`;
        h.deny(h.newOp([], refusal("sqlUnjudgeable", h.judge.connection.policy, why)), false);
        return undefined;
      }
    }
    if (
      name !== "" &&
      !h.statements.prepared.has(name) &&
      h.statements.prepared.size >= h.maxPreparedStatements
    ) {
      const limit = String(h.maxPreparedStatements);
      h.deny(h.newOp([], refusal("sqlTooManyPrepared", h.judge.connection.policy, limit)), false);
      return undefined;
    }
    return this.#decide(
      query,
      (v, c) => {
        const j = v.judgement;
        if (v.decision.action !== "allow") {
          h.denyVerdict(j.statements, v, false);
          return undefined;
        }
        if (c.statements.some((s) => s.kind === "set")) this.#settingsChanged = true;
        const source = v.approval ? h.approvedSource() : undefined;
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
    const h = this.#h;
    const j = v.judgement;
    const { decision, approval } = v;
    h.io.toUp(f.raw);
    // The server skips everything up to Sync after an error: this Parse will not happen.
    if (h.replies.serverSkipping) return;
    // The server refuses to redefine a named statement: keep what we know about the one it keeps.
    if (name !== "" && h.statements.prepared.has(name)) {
      h.replies.expect({ t: "parse" });
      return;
    }
    const info: StatementInfo = {
      statements: j.statements,
      classification: c,
      judgement: { ...j, decision },
      generation: h.judge.generation,
      catalog: h.catalog.catalog,
      text: query,
      ...(approval ? { approval, approvalDecision: j.decision } : {}),
    };
    // Recorded now, for the Bind/Execute pipelined behind it; forgotten if the server refuses the
    // Parse (or skips it after an earlier error): a failed Parse of the unnamed statement also
    // drops the server's previous one.
    h.statements.prepared.set(name, info);
    h.replies.expect({
      t: "parse",
      undo: () => {
        if (h.statements.prepared.get(name) === info) h.statements.prepared.delete(name);
      },
    });
    // With masking on, learn the result columns now (pipelined, answered before any Execute).
    if (h.results.mask) this.#describeInternally(info, "S", name);
  }

  /** Sends Describe for a statement or portal; its answer is recorded and not shown to the agent. */
  #describeInternally(target: StatementInfo | PortalInfo, kind: "S" | "P", name: string) {
    const h = this.#h;
    const wait = Promise.withResolvers<void>();
    target.describing = wait.promise;
    h.io.toUp(describeMessage(kind, name));
    if (h.replies.serverSkipping) {
      wait.resolve();
      return;
    }
    h.replies.expect({ t: "describe", kind, name, internal: true, target, done: wait.resolve });
  }

  bind(f: Frame): Promise<void> | undefined {
    const h = this.#h;
    if (h.catalog.stale) return h.rereadCatalog().then(() => this.bind(f));
    const b = parseBind(f.payload);
    const info = h.statements.prepared.get(b.statement);
    if (!info) {
      h.deny(h.newOp([], refusal("sqlBindUnprepared", h.judge.connection.policy, b.statement)), false);
      return undefined;
    }
    // A policy or catalog change since Parse: judge the statement again.
    h.judge.refresh();
    if (info.generation !== h.judge.generation || info.catalog !== h.catalog.catalog) {
      info.judgement = h.judge.judgeAgain(info.classification);
      info.generation = h.judge.generation;
      info.catalog = h.catalog.catalog;
    }
    if (info.judgement.decision.action !== "allow") {
      const d = info.judgement.decision;
      const op = h.newOp(info.statements, {
        ...d,
        action: "deny",
        reason:
          d.action === "requireApproval"
            ? `the policy changed since this statement was prepared; prepare it again (${d.reason})`
            : d.reason,
      });
      h.deny(op, false);
      return undefined;
    }
    const finish = () => {
      if (h.results.mask && b.resultFormats.some((x) => x !== 0)) {
        const plan = h.results.plan(info.statements, info.columns ?? [], b.resultFormats);
        const refused =
          plan?.refused ??
          (info.columns === undefined
            ? "binary-format results are refused on a connection with masking rules when the sidecar cannot tell the result columns"
            : undefined);
        if (refused) {
          h.deny(
            h.newOp(info.statements, refusal("maskingBinaryResult", h.judge.connection.policy, refused)),
            false,
          );
          return;
        }
      }
      h.io.toUp(f.raw);
      h.replies.expect({ t: "bind" });
      info.uses = (info.uses ?? 0) + 1;
      h.statements.portals.set(b.portal, {
        statement: info,
        statements: info.statements,
        formats: b.resultFormats,
      });
    };
    const proceed = (): Promise<void> | undefined => {
      if (h.results.mask && b.resultFormats.some((x) => x !== 0) && info.columns === undefined) {
        // A binary result on a masking connection: the columns must be known before rows flow.
        if (!info.describing) this.#describeInternally(info, "S", b.statement);
        h.io.toUp(flushMessage());
        h.io.flushUp();
        const waiting = info.describing as Promise<void>;
        return waiting.then(finish);
      }
      if (h.results.mask && info.columns === undefined && !info.describing)
        this.#describeInternally(info, "S", b.statement);
      finish();
      return undefined;
    };
    // An approval covers one execution: binding an approved statement again asks again (the
    // approvals service answers at once while a grant from `grantTtl` lasts).
    const approvalDecision = info.approvalDecision;
    if (approvalDecision && (info.uses ?? 0) > 0) {
      return h.approve({ decision: approvalDecision, statements: info.statements }, info.text).then((v) => {
        if (v.decision.action !== "allow") {
          h.denyVerdict(info.statements, v, false);
          return undefined;
        }
        if (v.approval) info.approval = v.approval;
        return proceed();
      });
    }
    return proceed();
  }

  describe(f: Frame): Promise<void> | undefined {
    const h = this.#h;
    const { kind, name } = parseTarget(f.payload, "Describe");
    // The answer describes the statement or portal that has this name *now* (a later Parse or
    // Bind in the same pipeline may reuse the name before the answer arrives).
    let target: StatementInfo | PortalInfo | undefined;
    if (kind === "S") target = h.statements.prepared.get(name);
    else {
      target = h.statements.portals.get(name);
      if (!target) {
        target = { statements: h.statements.cursors.get(name) ?? [] };
        h.statements.portals.set(name, target);
      }
    }
    h.io.toUp(f.raw);
    h.replies.expect({ t: "describe", kind, name, internal: false, target });
    return undefined;
  }

  execute(f: Frame): Promise<void> | undefined {
    const h = this.#h;
    const { portal } = parseExecute(f.payload);
    // A cursor declared in SQL (or returned by a function) is a portal too.
    const info = h.statements.portalFor(portal);
    if (
      h.results.mask &&
      !info.columns &&
      !info.statement?.columns &&
      !info.statement?.describing &&
      !info.describing
    ) {
      this.#describeInternally(info, "P", portal);
    }
    const decision: Decision = info.statement?.judgement.decision ?? {
      action: "allow",
      policy: h.judge.connection.policy,
      reason: "portal of a statement judged when it was declared",
    };
    const op = h.newOp(info.statements, decision, info.statement?.approvalDecision ?? decision);
    if (info.statement?.approval) op.rec.approved(info.statement.approval);
    h.io.toUp(f.raw);
    // PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD sent through Parse/Bind/Execute change the
    // session's named things too, once the server completed them (the running portal survives).
    const st = info.statement;
    const effects = st?.classification.statements.some((s) => s.effect !== undefined);
    const gen = h.judge.generation;
    h.replies.expect({
      t: "execute",
      op,
      portal: info,
      ...(st && effects
        ? {
            completed: () =>
              h.statements.applyEffects(
                st.classification,
                st.judgement.decision,
                gen,
                undefined,
                portal,
                st.text,
              ),
          }
        : {}),
    });
    return undefined;
  }

  close(f: Frame) {
    const h = this.#h;
    const { kind, name } = parseTarget(f.payload, "Close");
    h.io.toUp(f.raw);
    h.replies.expect({ t: "close" });
    h.statements.close(kind, name);
  }
}
