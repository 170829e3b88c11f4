// The shapes SQL classification produces (classify.ts) and the policy engine and guards read.
import type { SqlStatement } from "../policy/types.ts";
import type { OperatorRef, RoutineRef, TypeRef } from "./collect.ts";
import type { CopyOut, StoredValue } from "./data-flow.ts";

/** What a statement does to the session's named objects, for the guard to track. */
export type SessionEffect =
  | { kind: "prepare"; name: string }
  | { kind: "execute"; name: string }
  /** `name` undefined: DEALLOCATE ALL. */
  | { kind: "deallocate"; name?: string }
  /** DISCARD ALL: drops prepared statements too. */
  | { kind: "discard" }
  | { kind: "declareCursor"; name: string; binary: boolean }
  /** FETCH / MOVE run the cursor's query: judge them as what was declared. */
  | { kind: "fetch"; name: string }
  /** `name` undefined: CLOSE ALL. */
  | { kind: "closeCursor"; name?: string }
  /** SET [LOCAL] / RESET statement_timeout: `ms` undefined is back to the session's default. */
  | { kind: "statementTimeout"; ms?: number; local: boolean };

export type { OperatorRef, RoutineRef, TypeRef } from "./collect.ts";
export type { CopyOut } from "./data-flow.ts";

export interface ClassifiedStatement extends SqlStatement {
  /** libpg-query fingerprint of the top-level statement (literals and layout ignored). */
  fingerprint: string;
  /**
   * Column names the statement references (lower-cased), with "*" for a whole-row reference.
   * Masking uses it for computed result columns (`upper(card_number)`, `row_to_json(c)`).
   */
  columns: readonly string[];
  /**
   * A plain top-level SELECT (no WITH, set operation, `*`, or FROM item that renames columns):
   * per output column, the columns its expression references (as `columns`). Masking then
   * taints only the output columns computed from a covered one (`count(*)` beside
   * `max(card_number)` stays readable).
   */
  targets?: readonly (readonly string[])[];
  /**
   * A set operation or a CTE column list: output columns take other names than the columns they
   * carry, and PostgreSQL describes them with no origin. Masking treats that as a whole-row
   * reference unless every relation read is a system catalog (ResultMasking).
   */
  renamesColumns?: true;
  /** COPY ... TO: what masking needs to read its rows (see copyOutOf). */
  copyOut?: CopyOut;
  /**
   * A statement that stores values in the database (INSERT, UPDATE, MERGE, CREATE TABLE AS,
   * SELECT INTO): per value, the columns it is computed from ("*" for a whole row) and the
   * column it is stored into when known (see writtenColumns). Masking cannot follow a covered
   * value stored under another name.
   */
  written?: readonly StoredValue[];
  /** 0-based position of the top-level statement in the text. */
  index: number;
  /** Functions called by name, with schema and argument count, for catalog resolution (catalog.ts). */
  routines: readonly RoutineRef[];
  /** Operators written in the text, and those implied by constructs (BETWEEN: `<=`, `>=`, ...). */
  operators: readonly OperatorRef[];
  /** Types the text casts to (`x::d`, `CAST(x AS d)`): casts to a domain run its CHECK constraints. */
  casts: readonly TypeRef[];
  /**
   * Last names of qualified column references and field selections (`o.f`, `(o).f`): PostgreSQL
   * reads one as a call `f(o)` of a one-argument function when `o` has no column `f`
   * (attribute notation), so catalog-judge.ts resolves them as possible calls too.
   */
  fieldCalls?: readonly string[];
  /** Custom (`x.y`) settings the statement changes: SET, RESET, set_config, ALTER ROLE ... SET. */
  customSettings?: readonly string[];
  /** Present on entries derived from inside a statement (`opaque`: catalog-judge.ts). */
  nested?: "cte" | "locking" | "sequence" | "opaque";
  effect?: SessionEffect;
}

/** A construct that is always denied, whatever the rules say. */
export interface BuiltinDenial {
  /** 0-based top-level statement index. */
  statement: number;
  /** What was refused, e.g. `function pg_read_file`, `SET search_path`, `COPY ... PROGRAM`. */
  what: string;
  reason: string;
}

export interface Classification {
  statements: readonly ClassifiedStatement[];
  /** Parse failures: the text must be refused (fail closed). */
  errors: readonly string[];
  /** `errors` joined, or undefined (for `airlock policy test --sql`). */
  error?: string;
  denials: readonly BuiltinDenial[];
}
