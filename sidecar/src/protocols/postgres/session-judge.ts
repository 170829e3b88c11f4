// What one session judges its SQL with (decisions/sql.ts): the policy connection of the current
// policy generation, the session's subject, its prepared statements, the column rules in force
// and the upstream's catalog, in the grammar of the upstream's major version. Judgements are kept
// per classification until the policy generation or the catalog changes.
import { judgeSql, type SqlJudgement } from "../../decisions/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { type Classification, classifySync } from "../../sql/index.ts";
import type { SqlParser } from "../../sql/parser.ts";
import type { HistogramCell } from "../../telemetry/hot-metrics.ts";
import type { SessionCatalog } from "./catalog-source.ts";
import type { ResultMasking } from "./results.ts";
import { type MaskState, originsQuery } from "./row-masking.ts";
import type { SessionStatements } from "./statements.ts";

export interface SessionJudgeDeps {
  ctx: SidecarContext;
  connection: CompiledConnection;
  maskStateFor(connection: CompiledConnection): MaskState | undefined;
  results: ResultMasking;
  catalog: SessionCatalog;
  statements: SessionStatements;
}

const now = () => performance.now();

export class SessionJudge {
  /** The policy connection in force (refreshed by name when the policy set changes). */
  connection: CompiledConnection;
  /** The policy generation `connection` and the kept judgements belong to. */
  generation: number;
  /** Who asks: the workload, and the end user once the agent authenticated. */
  subject: Subject;
  /** The libpg-query line of the upstream's major version (set when the session connects). */
  parser: SqlParser | undefined;
  readonly #d: SessionJudgeDeps;
  readonly #seconds: HistogramCell;
  #judged = new WeakMap<Classification, SqlJudgement>();

  constructor(deps: SessionJudgeDeps, subject: Subject) {
    this.#d = deps;
    this.connection = deps.connection;
    this.generation = deps.ctx.policies.generation();
    this.subject = subject;
    this.#seconds = deps.ctx.metrics.decisionSeconds.cell({ protocol: "postgres" });
  }

  /** Follows a policy change: the connection by name, its masking, and no kept judgement. */
  refresh() {
    const { ctx, results, catalog } = this.#d;
    const gen = ctx.policies.generation();
    if (gen === this.generation) return;
    this.generation = gen;
    this.#judged = new WeakMap();
    const c = ctx.policies.current().connections.get(this.connection.spec.name);
    if (c) {
      this.connection = c;
      results.update(this.#d.maskStateFor(c));
      catalog.maskChanged(this.originsSql());
    }
  }

  /** The catalog was reread: judgements made with the old one no longer hold. */
  forget() {
    this.#judged = new WeakMap();
  }

  /** originsQuery for the column rules in force (undefined: none). */
  originsSql(): string | undefined {
    const mask = this.#d.results.mask;
    return mask ? originsQuery(mask) : undefined;
  }

  /** Classifies and judges `text` under the policy in force. */
  judge(text: string): { classification: Classification; judgement: SqlJudgement } {
    const t0 = now();
    const classification = classifySync(text, this.parser);
    this.refresh();
    // Classifications are shared, frozen cache entries (sql/classify.ts): the same object comes
    // back for the same text (or numeric shape), so its judgement is kept until the policy
    // generation changes (refresh clears it). Everything else judgeSql reads is fixed for a
    // generation (connection, masking) or for the session (subject); the session's prepared
    // statements are not, so a text with EXECUTE is judged every time.
    // Judgements made while the session's own catalog change is uncommitted are not kept (nor
    // are earlier ones used): they depend on that state, not only on the catalog.
    const keep = !this.#d.catalog.uncommitted;
    let judgement = keep ? this.#judged.get(classification) : undefined;
    if (!judgement) {
      judgement = this.judgeAgain(classification, text);
      if (keep && !classification.statements.some((s) => s.effect?.kind === "execute"))
        this.#judged.set(classification, judgement);
    }
    this.#seconds.observe((now() - t0) / 1000);
    return { classification, judgement };
  }

  /** Judges a classification afresh (a prepared statement bound after a policy or catalog change). */
  judgeAgain(classification: Classification, text?: string): SqlJudgement {
    const { ctx, results, catalog, statements } = this.#d;
    return judgeSql({
      classification,
      policies: ctx.policies.current(),
      connection: this.connection,
      subject: this.subject,
      prepared: { get: (name) => statements.prepared.get(name)?.statements },
      masking: results.mask !== undefined,
      ...results.covered(),
      ...(catalog.catalog ? { catalog: catalog.catalog } : {}),
      ...(catalog.uncommitted ? { catalogUncommitted: true } : {}),
      ...(text !== undefined ? { text } : {}),
    });
  }
}
