// What of a session's results masking must touch: the response masking in force, where covered
// columns live in the catalog (learned at connect), and the plan for each result — which columns
// are masked as what — built from a RowDescription or from what a Describe recorded. Also what
// the server says outside rows: notices, errors and notifications are redacted by the same rules.
import type { ClassifiedStatement } from "../../sql/index.ts";
import type { BinaryKind } from "./binary-values.ts";
import { type Column, ProtocolError } from "./protocol.ts";
import {
  callsUserFunction,
  type MaskState,
  maskNotification,
  planResult,
  type ResultPlan,
  redactNotice,
} from "./row-masking.ts";
import type { PortalInfo } from "./statements.ts";

export class ResultMasking {
  /** The response masking in force, or undefined when nothing is masked. */
  mask: MaskState | undefined;
  /** `tableOid:attnum` → name of the table columns column rules cover (see row-masking.ts). */
  readonly origins = new Map<string, string>();
  /** Functions defined in the database (lower-cased names), when column rules apply. */
  readonly userFunctions = new Set<string>();
  /** Database-defined types whose binary form is text (citext, enums), learned at connect. */
  readonly types = new Map<number, BinaryKind>();

  constructor(mask: MaskState | undefined) {
    this.mask = mask;
  }

  /** Masking only ever tightens within a session: a policy that drops masking applies to new sessions. */
  update(mask: MaskState | undefined): void {
    this.mask = mask ?? this.mask;
  }

  #context(statements: readonly ClassifiedStatement[]) {
    const referenced = new Set<string>();
    for (const s of statements) for (const c of s.columns ?? []) referenced.add(c);
    // A database function may read a covered column the statement never names.
    if (callsUserFunction(statements, this.userFunctions)) referenced.add("*");
    return { origins: this.origins, types: this.types, referenced: [...referenced] };
  }

  /** The plan for rows described by `columns` (formats: from Bind, or the columns' own). */
  plan(
    statements: readonly ClassifiedStatement[],
    columns: readonly Column[],
    formats?: readonly number[],
  ): ResultPlan | undefined {
    const mask = this.mask;
    return mask ? planResult(mask, columns, formats, this.#context(statements)) : undefined;
  }

  /** The plan for an Execute's rows; throws when masking applies and the columns are unknown. */
  planFor(portal: PortalInfo | undefined): ResultPlan | undefined {
    if (!this.mask) return undefined;
    const statements = portal?.statements ?? [];
    if (portal?.columns) return this.plan(statements, portal.columns);
    const cols = portal?.statement?.columns;
    if (cols) return this.plan(statements, cols, portal?.formats ?? []);
    throw new ProtocolError(
      "result columns unknown on a connection with masking rules; refusing to send rows",
      "42501",
    );
  }

  /** A notification as the agent may see it (undefined: unchanged); masked values counted in `counts`. */
  notification(payload: Buffer, counts: Record<string, number>): Buffer | undefined {
    return this.mask ? maskNotification(this.mask, payload, counts) : undefined;
  }

  /** An error/notice as the agent may see it (undefined: unchanged). */
  notice(type: number, payload: Buffer, counts: Record<string, number>): Buffer | undefined {
    return this.mask ? redactNotice(this.mask, type, payload, counts) : undefined;
  }
}
