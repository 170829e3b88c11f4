// Binary-format result values under masking (asyncpg always asks for them, pgx when it knows the
// type, pgjdbc after prepareThreshold). Each type the guard knows is one of:
// - text: the binary form is the UTF-8 text itself (after a version byte for jsonb/jsonpath), so
//   it is masked exactly as the text form and stays a valid value of its type;
// - scalar: numbers, UUIDs and bytea are rendered to the text PostgreSQL would show and scanned
//   by the detectors; such a type cannot carry a masked value, so a finding ends the session
//   (rows may already have been sent: the server cannot be told to fail the statement) with an
//   error naming the column and the cast that works;
// - opaque: booleans, dates and times, catalog references carry nothing the detectors look for;
// - array: of any of the above, element by element (the array stays valid).
// A type the guard does not know is refused before any row flows when masking applies to it,
// and so is a column rule on a type that cannot carry a masked value.
import type { Masker } from "../../masking/index.ts";
import { ProtocolError } from "./protocol.ts";

type Render = (b: Buffer) => string;
type ScalarKind = { kind: "scalar"; type: string; render: Render };
type ElementKind = { kind: "text"; prefix: number } | ScalarKind | { kind: "opaque" };
export type BinaryKind = ElementKind | { kind: "array"; element: ElementKind; elementOid: number };

const TEXT: ElementKind = { kind: "text", prefix: 0 };
const VERSIONED: ElementKind = { kind: "text", prefix: 1 };
const OPAQUE: ElementKind = { kind: "opaque" };
const scalar = (type: string, render: Render): ScalarKind => ({ kind: "scalar", type, render });

const fixed =
  (size: number, render: Render): Render =>
  (b) => {
    if (b.length !== size)
      throw new ProtocolError(`binary value of ${b.length} bytes where ${size} were expected`);
    return render(b);
  };

/** PostgreSQL's numeric send format: ndigits, weight, sign, dscale, base-10000 digits. */
export function numericText(b: Buffer): string {
  if (b.length < 8) throw new ProtocolError("truncated binary numeric");
  const ndigits = b.readInt16BE(0);
  const weight = b.readInt16BE(2);
  const sign = b.readUInt16BE(4);
  const dscale = b.readInt16BE(6);
  if (sign === 0xc000) return "NaN";
  if (sign === 0xd000) return "Infinity";
  if (sign === 0xf000) return "-Infinity";
  if (ndigits < 0 || b.length !== 8 + 2 * ndigits || dscale < 0)
    throw new ProtocolError("malformed binary numeric");
  const digit = (i: number) => (i >= 0 && i < ndigits ? b.readInt16BE(8 + 2 * i) : 0);
  let s = "";
  if (weight < 0) s = "0";
  else for (let i = 0; i <= weight; i++) s += i === 0 ? String(digit(i)) : String(digit(i)).padStart(4, "0");
  if (dscale > 0) {
    let frac = "";
    for (let i = weight + 1; frac.length < dscale; i++) frac += String(digit(i)).padStart(4, "0");
    s += `.${frac.slice(0, dscale)}`;
  }
  return sign === 0x4000 ? `-${s}` : s;
}

const uuidText: Render = (b) => {
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};

const ELEMENTS = new Map<number, ElementKind>([
  [25, TEXT], // text
  [1043, TEXT], // varchar
  [1042, TEXT], // bpchar
  [19, TEXT], // name
  [18, TEXT], // "char"
  [114, TEXT], // json
  [142, TEXT], // xml (sent in the client encoding, forced to UTF8)
  [705, TEXT], // unknown
  [3802, VERSIONED], // jsonb
  [4072, VERSIONED], // jsonpath
  [
    21,
    scalar(
      "int2",
      fixed(2, (b) => String(b.readInt16BE(0))),
    ),
  ],
  [
    23,
    scalar(
      "int4",
      fixed(4, (b) => String(b.readInt32BE(0))),
    ),
  ],
  [
    20,
    scalar(
      "int8",
      fixed(8, (b) => b.readBigInt64BE(0).toString()),
    ),
  ],
  [
    26,
    scalar(
      "oid",
      fixed(4, (b) => String(b.readUInt32BE(0))),
    ),
  ],
  [
    700,
    scalar(
      "float4",
      fixed(4, (b) => String(b.readFloatBE(0))),
    ),
  ],
  [
    701,
    scalar(
      "float8",
      fixed(8, (b) => String(b.readDoubleBE(0))),
    ),
  ],
  [1700, scalar("numeric", numericText)],
  [2950, scalar("uuid", fixed(16, uuidText))],
  [17, scalar("bytea", (b) => `\\x${b.toString("hex")}`)],
  ...[16, 1082, 1083, 1114, 1184, 1186, 1266].map((oid) => [oid, OPAQUE] as const), // bool, dates and times
  ...[28, 29, 27, 3220].map((oid) => [oid, OPAQUE] as const), // xid, cid, tid, pg_lsn
  // regproc, regprocedure, regoper, regoperator, regclass, regtype, regconfig, regdictionary,
  // regnamespace, regrole, regcollation: an oid in binary, a catalog name in text.
  ...[24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191].map((oid) => [oid, OPAQUE] as const),
]);

/** Array type → element type, for the element types above. */
const ARRAYS = new Map<number, number>([
  [1009, 25],
  [1015, 1043],
  [1014, 1042],
  [1003, 19],
  [1002, 18],
  [199, 114],
  [143, 142],
  [3807, 3802],
  [1005, 21],
  [1007, 23],
  [1016, 20],
  [1028, 26],
  [1021, 700],
  [1022, 701],
  [1231, 1700],
  [2951, 2950],
  [1001, 17],
  [1000, 16],
  [1182, 1082],
  [1183, 1083],
  [1115, 1114],
  [1185, 1184],
  [1187, 1186],
  [1270, 1266],
  [1011, 28],
  [1008, 24],
  [2210, 2205],
  [2211, 2206],
]);

/**
 * Types defined in the database whose binary form is their text (citext and other types sent by
 * textsend, enums by enum_send): `oid, arrayOid` rows. Read at connect when masking applies.
 * Domains need nothing: RowDescription names their base type.
 */
export const TEXT_TYPES_QUERY = `SELECT t.oid::pg_catalog.int8, t.typarray::pg_catalog.int8
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_proc p ON p.oid = t.typsend
  WHERE t.oid >= 16384 AND p.prolang = 12
    AND p.prosrc IN ('textsend', 'enum_send', 'varcharsend', 'bpcharsend')`;

/** The kinds of database-defined text types and their arrays, from TEXT_TYPES_QUERY rows. */
export function textTypeKinds(rows: readonly (readonly (string | null)[])[]): Map<number, BinaryKind> {
  const out = new Map<number, BinaryKind>();
  for (const [oid, array] of rows) {
    const o = Number(oid);
    if (!Number.isInteger(o) || o <= 0) continue;
    out.set(o, TEXT);
    const a = Number(array);
    if (Number.isInteger(a) && a > 0) out.set(a, { kind: "array", element: TEXT, elementOid: o });
  }
  return out;
}

/**
 * How the guard reads a binary value of this type, or undefined for a type it does not know.
 * `known`: database-defined types (textTypeKinds).
 */
export function binaryKindOf(
  typeOid: number,
  known?: ReadonlyMap<number, BinaryKind>,
): BinaryKind | undefined {
  const e = ELEMENTS.get(typeOid) ?? known?.get(typeOid);
  if (e) return e;
  const elementOid = ARRAYS.get(typeOid);
  const element = elementOid === undefined ? undefined : ELEMENTS.get(elementOid);
  return element && elementOid !== undefined ? { kind: "array", element, elementOid } : undefined;
}

const castHint = (column: string) =>
  `select it as text (${/^[a-z_][a-z0-9_$]*$/.test(column) ? column : `"${column.replace(/"/g, '""')}"`}::text) or request text results`;

/**
 * Why a binary column cannot be sent under masking (before any row flows), or undefined when it
 * can: `ruled` when a column rule masks it whole, else only detectors look at it.
 */
export function binaryRefusal(
  column: string,
  typeOid: number,
  ruled: boolean,
  known?: ReadonlyMap<number, BinaryKind>,
): string | undefined {
  const kind = binaryKindOf(typeOid, known);
  const element = kind?.kind === "array" ? kind.element : kind;
  if (!element)
    return `binary-format results are refused for column "${column}" (type oid ${typeOid}): masking applies to it and the sidecar cannot read that type in binary; ${castHint(column)}`;
  if (ruled && element.kind !== "text")
    return `binary-format results are refused for column "${column}": a masking rule covers it and its type cannot carry a masked value in binary; ${castHint(column)}`;
  return undefined;
}

/** Whether a binary value needs the slow path (decoding) rather than passing as it is. */
export function binaryMayNeedMasking(
  masker: Masker,
  kind: BinaryKind,
  ruled: boolean,
  buf: Buffer,
  start: number,
  end: number,
): boolean {
  switch (kind.kind) {
    case "opaque":
      return false;
    case "text":
      return ruled || masker.mayDetect(buf, start + kind.prefix, end);
    default:
      return true;
  }
}

interface Target {
  masker: Masker;
  /** Column name the value is masked as (a rule's column, or its own). */
  as: string;
  /** The result column's name, for errors. */
  column: string;
  counts: Record<string, number>;
  /** Masked as a covered column it is not itself: redacted whole (Masker.maskColumn). */
  derived: boolean;
}

function maskElement(t: Target, kind: ElementKind, value: Buffer): Buffer | undefined {
  if (kind.kind === "opaque") return undefined;
  if (kind.kind === "text") {
    if (value.length < kind.prefix) throw new ProtocolError(`truncated binary value in column "${t.column}"`);
    const text = value.toString("utf8", kind.prefix);
    const res = t.masker.maskColumn(t.as, text, { derived: t.derived });
    if (res.findings.length === 0 || res.value === text) return undefined;
    for (const f of res.findings) t.counts[f.detector] = (t.counts[f.detector] ?? 0) + 1;
    return Buffer.concat([value.subarray(0, kind.prefix), Buffer.from(res.value, "utf8")]);
  }
  const text = kind.render(value);
  const bytes = Buffer.from(text, "latin1");
  if (!t.masker.mayDetect(bytes, 0, bytes.length)) return undefined;
  const res = t.masker.maskColumn(t.as, text);
  if (res.findings.length === 0 || res.value === text) return undefined;
  throw new ProtocolError(
    `a value in column "${t.column}" (${kind.type}, binary format) needs masking, which its type cannot carry; nothing more of this result is sent; ${castHint(t.column)}`,
    "42501",
  );
}

/** A binary array with each element masked, or undefined when nothing changed. */
function maskArray(
  t: Target,
  kind: Extract<BinaryKind, { kind: "array" }>,
  value: Buffer,
): Buffer | undefined {
  const fail = () => new ProtocolError(`malformed binary array in column "${t.column}"`);
  if (value.length < 12) throw fail();
  const ndim = value.readInt32BE(0);
  const elementOid = value.readUInt32BE(8);
  if (ndim < 0 || ndim > 6 || elementOid !== kind.elementOid || value.length < 12 + 8 * ndim) throw fail();
  let count = ndim === 0 ? 0 : 1;
  for (let d = 0; d < ndim; d++) count *= value.readInt32BE(12 + 8 * d);
  let off = 12 + 8 * ndim;
  let parts: Buffer[] | undefined;
  let copied = 0;
  for (let i = 0; i < count; i++) {
    if (off + 4 > value.length) throw fail();
    const len = value.readInt32BE(off);
    off += 4;
    if (len < 0) continue;
    if (off + len > value.length) throw fail();
    const masked = maskElement(t, kind.element, value.subarray(off, off + len));
    if (masked) {
      parts ??= [];
      const lenBytes = Buffer.allocUnsafe(4);
      lenBytes.writeInt32BE(masked.length);
      parts.push(value.subarray(copied, off - 4), lenBytes, masked);
      copied = off + len;
    }
    off += len;
  }
  if (off !== value.length) throw fail();
  if (!parts) return undefined;
  parts.push(value.subarray(copied));
  return Buffer.concat(parts);
}

/**
 * The masked bytes of one binary value, or undefined when it is unchanged. Throws a ProtocolError
 * (the session ends) when a value needs masking that its type cannot carry.
 */
export function maskBinaryValue(
  masker: Masker,
  kind: BinaryKind,
  as: string,
  column: string,
  value: Buffer,
  counts: Record<string, number>,
  derived = false,
): Buffer | undefined {
  const t = { masker, as, column, counts, derived };
  return kind.kind === "array" ? maskArray(t, kind, value) : maskElement(t, kind, value);
}
