// What of a session's results masking must touch: the response masking in force, where covered
// columns live in the catalog (learned at connect), and the plan for each result — which columns
// are masked as what — built from a RowDescription or from what a Describe recorded. Also what
// the server says outside rows: notices, errors and notifications are redacted by the same rules.
import type { CoveredData } from "../../decisions/sql.ts";
import type { ClassifiedStatement } from "../../sql/index.ts";
import type { BinaryKind } from "./binary-values.ts";
import { NO_ORIGINS, type Origins } from "./origins.ts";
import { type Column, ProtocolError } from "./protocol.ts";
import {
  callsUserFunction,
  type MaskState,
  maskNotification,
  planResult,
  type ResultPlan,
  readsOnlySystemCatalogs,
  readsRelation,
  redactNotice,
  taintOf,
} from "./row-masking.ts";
import type { PortalInfo } from "./statements.ts";

export class ResultMasking {
  /** The response masking in force, or undefined when nothing is masked. */
  mask: MaskState | undefined;
  /** Where covered columns live, as of the catalog the session judges with (origins.ts). */
  origins: Origins = NO_ORIGINS;
  /**
   * Whether `origins` may not describe a result: a catalog change is unread or uncommitted.
   * Every column of such a result is masked (see ResultContext.uncertain).
   */
  uncertain: () => boolean = () => false;
  /** Every query a SQL cursor of this name was declared with (SessionStatements.cursorHistory), for FETCH. */
  readonly #cursor: (name: string) => readonly ClassifiedStatement[] | undefined;
  /** Database-defined types whose binary form is text (citext, enums), learned at connect. */
  readonly types = new Map<number, BinaryKind>();

  constructor(
    mask: MaskState | undefined,
    cursor: (name: string) => readonly ClassifiedStatement[] | undefined = () => undefined,
  ) {
    this.mask = mask;
    this.#cursor = cursor;
  }

  /** The column rules in force, for judging statements that store values (judgeSql `covered`). */
  covered(): { covered?: CoveredData } {
    const columns = this.mask?.columns;
    if (!columns?.size) return {};
    const { userFunctions, coveredRelations } = this.origins;
    return { covered: { columns, userFunctions, coveredRelations } };
  }

  /** Masking only ever tightens within a session: a policy that drops masking applies to new sessions. */
  update(mask: MaskState | undefined): void {
    this.mask = mask ?? this.mask;
  }

  /** `cursor`: a SQL cursor run by name through the extended protocol (a FETCH in effect). */
  #context(statements: readonly ClassifiedStatement[], cursor?: string) {
    const referenced = new Set<string>();
    // Set when something taints every computed column, whatever its expression.
    let wide = false;
    const add = (list: readonly ClassifiedStatement[]) => {
      for (const s of list) for (const c of s.columns ?? []) referenced.add(c);
      // Columns renamed by a set operation or a CTE column list may be any column read.
      if (list.some((s) => s.renamesColumns) && !readsOnlySystemCatalogs(list, this.origins.catalogShadows))
        referenced.add("*");
      // A database function may read a covered column the statement never names; so may a
      // computed column over a view that depends on one, or over the planner's statistics.
      if (
        callsUserFunction(list, this.origins.userFunctions) ||
        readsRelation(list, this.origins.coveredRelations)
      ) {
        referenced.add("*");
        wide = true;
      }
    };
    add(statements);
    // FETCH runs the cursor's query: its rows derive from what the DECLARE read. A cursor the
    // sidecar never saw declared (one a function opened) could hold anything.
    const fetched = statements.flatMap((s) => (s.effect?.kind === "fetch" ? [s.effect.name] : []));
    for (const name of cursor === undefined ? fetched : [...fetched, cursor]) {
      wide = true;
      const declared = this.#cursor(name);
      if (declared) add(declared);
      else referenced.add("*");
    }
    // One plain SELECT: each computed output column is tainted by its own expression only (see
    // ClassifiedStatement.targets), unless something statement-wide taints them all.
    const top = new Set(statements.map((s) => s.index));
    const targets =
      !wide && top.size === 1 ? statements.find((s) => s.targets && !s.nested)?.targets : undefined;
    return {
      origins: this.origins.columns,
      types: this.types,
      ...(this.uncertain() ? { uncertain: true } : {}),
      referenced: [...referenced],
      ...(targets ? { targets } : {}),
    };
  }

  /** The plan for rows described by `columns` (formats: from Bind, or the columns' own). */
  plan(
    statements: readonly ClassifiedStatement[],
    columns: readonly Column[],
    formats?: readonly number[],
    cursor?: string,
  ): ResultPlan | undefined {
    const mask = this.mask;
    return mask ? planResult(mask, columns, formats, this.#context(statements, cursor)) : undefined;
  }

  /** The plan for an Execute's rows; throws when masking applies and the columns are unknown. */
  planFor(portal: PortalInfo | undefined): ResultPlan | undefined {
    if (!this.mask) return undefined;
    // A SQL cursor executed by name reads what any of its declarations read (a FETCH in effect).
    const statements = portal?.statements ?? [];
    if (portal?.columns) return this.plan(statements, portal.columns, undefined, portal.cursor);
    const cols = portal?.statement?.columns;
    if (cols) return this.plan(statements, cols, portal?.formats ?? [], portal?.cursor);
    throw new ProtocolError(
      "result columns unknown on a connection with masking rules; refusing to send rows",
      "42501",
    );
  }

  /** A notification as the agent may see it (undefined: unchanged); masked values counted in `counts`. */
  notification(payload: Buffer, counts: Record<string, number>): Buffer | undefined {
    return this.mask ? maskNotification(this.mask, payload, counts) : undefined;
  }

  /**
   * An error/notice as the agent may see it (undefined: unchanged). `statements`: those it was
   * raised by, when known; unknown counts as reading covered data when column rules apply.
   */
  notice(
    type: number,
    payload: Buffer,
    counts: Record<string, number>,
    statements: readonly ClassifiedStatement[] | undefined,
  ): Buffer | undefined {
    const mask = this.mask;
    if (!mask) return undefined;
    const tainted =
      mask.columns.size > 0 &&
      (statements === undefined ||
        this.uncertain() ||
        taintOf(mask, this.#context(statements).referenced) !== undefined);
    return redactNotice(mask, type, payload, counts, tainted);
  }
}
