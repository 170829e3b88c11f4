// Masking of COPY ... TO STDOUT rows (pg_dump --data-only, psql's \copy). The server sends one
// CopyData message per row, in the text or CSV format of the statement's options. The columns are
// known by name from the statement's column list (COPY t (a, b) TO STDOUT: t is a table, so each
// name is that table's column, and column rules match by name); each field is decoded, masked as
// a DataRow value would be, and encoded again. Anything else (no column list, a query, binary,
// custom delimiters or quoting) is refused before it runs (decisions/sql.ts), never sent unmasked.
import type { CopyOut } from "../../sql/index.ts";
import { ProtocolError } from "./protocol.ts";
import type { MaskState } from "./row-masking.ts";

export interface CopyPlan {
  format: "text" | "csv";
  /** Per column: the name to mask it as (a covered column, or any column when detectors run). */
  names: readonly (string | undefined)[];
  ruled: readonly boolean[];
  /** A CSV header line is still to come (it holds column names, not values). */
  headerPending: boolean;
}

/** The plan for a COPY's rows, or undefined when nothing of it is masked. */
export function copyPlan(state: MaskState, copy: CopyOut): CopyPlan | undefined {
  if (!copy.columns || !copy.plain || copy.format === "binary")
    throw new ProtocolError("COPY ... TO without a column list cannot be masked; refusing its rows", "42501");
  const ruled = copy.columns.map((c) => state.columns.has(c));
  const names = copy.columns.map((c, i) => (ruled[i] || state.detectors ? c : undefined));
  if (!names.some((n) => n !== undefined)) return undefined;
  return { format: copy.format, names, ruled, headerPending: copy.format === "csv" && copy.header };
}

const TEXT_ESCAPES: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };
const TEXT_ENCODE: Record<string, string> = {
  "\\": "\\\\",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\v": "\\v",
};

/** A text-format field's value (backslash escapes decoded); undefined for \N (NULL). */
function decodeText(field: string): string | undefined {
  if (field === "\\N") return undefined;
  return field.replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/gs, (_m, e: string) => {
    if (e[0] === "x" && e.length > 1) return String.fromCharCode(Number.parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(Number.parseInt(e, 8));
    return TEXT_ESCAPES[e] ?? e;
  });
}

const TEXT_SPECIAL = /[\\\b\f\n\r\t\v]/g;
const encodeText = (value: string) => value.replace(TEXT_SPECIAL, (c) => TEXT_ENCODE[c] ?? c);

/** CSV fields of one row with whether each was quoted (an unquoted empty field is NULL). */
function splitCsv(row: string): { value: string; quoted: boolean }[] {
  const out: { value: string; quoted: boolean }[] = [];
  let i = 0;
  for (;;) {
    if (row[i] === '"') {
      let value = "";
      i++;
      for (;;) {
        const q = row.indexOf('"', i);
        if (q < 0) throw new ProtocolError("malformed CSV row from the server (unterminated quote)", "08P01");
        value += row.slice(i, q);
        if (row[q + 1] === '"') {
          value += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      out.push({ value, quoted: true });
    } else {
      const c = row.indexOf(",", i);
      const end = c < 0 ? row.length : c;
      out.push({ value: row.slice(i, end), quoted: false });
      i = end;
    }
    if (i >= row.length) return out;
    if (row[i] !== ",") throw new ProtocolError("malformed CSV row from the server", "08P01");
    i++;
  }
}

const csvField = (value: string) => `"${value.replace(/"/g, '""')}"`;

/** The masked CopyData payload for one row, or undefined when nothing changed. */
export function maskCopyRow(
  state: MaskState,
  plan: CopyPlan,
  payload: Buffer,
  counts: Record<string, number>,
): Buffer | undefined {
  if (plan.headerPending) {
    plan.headerPending = false;
    return undefined;
  }
  const text = payload.toString("utf8");
  const eol = text.endsWith("\r\n") ? "\r\n" : text.endsWith("\n") ? "\n" : "";
  const row = text.slice(0, text.length - eol.length);
  const mask = (i: number, value: string): string | undefined => {
    const as = plan.names[i];
    if (as === undefined) return undefined;
    const res = state.masker.maskColumn(as, value);
    if (res.findings.length === 0 || res.value === value) return undefined;
    for (const f of res.findings) counts[f.detector] = (counts[f.detector] ?? 0) + 1;
    return res.value;
  };
  let changed = false;
  let out: string;
  if (plan.format === "text") {
    const fields = row.split("\t");
    if (fields.length !== plan.names.length)
      throw new ProtocolError("COPY row does not have the columns the statement listed", "08P01");
    out = fields
      .map((f, i) => {
        const value = decodeText(f);
        const masked = value === undefined ? undefined : mask(i, value);
        if (masked === undefined) return f;
        changed = true;
        return encodeText(masked);
      })
      .join("\t");
  } else {
    const fields = splitCsv(row);
    if (fields.length !== plan.names.length)
      throw new ProtocolError("COPY row does not have the columns the statement listed", "08P01");
    out = fields
      .map((f, i) => {
        const masked = !f.quoted && f.value === "" ? undefined : mask(i, f.value);
        if (masked === undefined) return f.quoted ? csvField(f.value) : f.value;
        changed = true;
        return csvField(masked);
      })
      .join(",");
  }
  return changed ? Buffer.from(out + eol, "utf8") : undefined;
}
