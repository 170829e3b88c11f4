// Validates objects against the same schema the CRDs carry, for policies that never pass through an
// API server (standalone files, `airlock policy test`) and for the controller and sidecar, which
// re-check what the API server stored. CEL rules are re-checked by the policy compiler; this covers
// shape, enums, patterns and bounds, and refuses fields the schema does not declare (a misspelled
// key must never loosen a policy by being ignored).
import { FormatRegistry, Kind, type TSchema, TypeRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { STRING_ENUM, STRING_MAP } from "./schema-kit.ts";
import { didYouMean } from "./suggest.ts";

if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", (v) => !Number.isNaN(Date.parse(v)));
for (const f of ["int32", "int64"]) if (!FormatRegistry.Has(f)) FormatRegistry.Set(f, () => true);

if (!TypeRegistry.Has(STRING_ENUM)) {
  TypeRegistry.Set<{ enum: string[] }>(
    STRING_ENUM,
    (schema, value) => typeof value === "string" && schema.enum.includes(value),
  );
}
if (!TypeRegistry.Has(STRING_MAP)) {
  TypeRegistry.Set(
    STRING_MAP,
    (_schema, value) =>
      typeof value === "object" &&
      value !== null &&
      !Array.isArray(value) &&
      Object.values(value).every((v) => typeof v === "string"),
  );
}

export interface SchemaProblem {
  /** Dotted path from the validated value, e.g. `.rules[2].match.http`; `` for the value itself. */
  path: string;
  message: string;
}

type Node = Record<string | symbol, unknown>;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const segment = (key: string | number) =>
  typeof key === "number"
    ? `[${key}]`
    : /^[A-Za-z_][\w-]*$/.test(key)
      ? `.${key}`
      : `[${JSON.stringify(key)}]`;

/** TypeBox's JSON pointer (`/rules/0/action`) as a dotted path (`.rules[0].action`). */
function fromPointer(pointer: string): string {
  if (!pointer) return "";
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"))
    .map((p) => segment(/^\d+$/.test(p) ? Number(p) : p))
    .join("");
}

function unknownFields(schema: Node, value: unknown, path: string, out: SchemaProblem[]): void {
  if (Array.isArray(value)) {
    const items = schema.items as Node | undefined;
    if (items)
      value.forEach((v, i) => {
        unknownFields(items, v, `${path}[${i}]`, out);
      });
    return;
  }
  const props = schema.properties as Record<string, Node> | undefined;
  if (!isObject(value) || !props || schema[Kind] === STRING_MAP) return;
  const known = Object.keys(props);
  for (const [key, child] of Object.entries(value)) {
    const sub = props[key];
    if (sub) unknownFields(sub, child, `${path}${segment(key)}`, out);
    else
      out.push({
        path: `${path}${segment(key)}`,
        message: `unknown field "${key}"${didYouMean(key, known)} (fields here: ${known.join(", ")})`,
      });
  }
}

function describe(error: { schema: Node; value: unknown; message: string }): string {
  if (error.schema[Kind] === STRING_ENUM) {
    const allowed = (error.schema.enum as string[]) ?? [];
    const got = JSON.stringify(error.value);
    const hint = typeof error.value === "string" ? didYouMean(error.value, allowed) : "";
    return `${got} is not one of: ${allowed.join(", ")}${hint}`;
  }
  if (error.schema[Kind] === STRING_MAP) return "must be a map of strings to strings";
  return error.message;
}

export function checkSchema(schema: TSchema, value: unknown): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  unknownFields(schema as unknown as Node, value, "", out);
  for (const e of Value.Errors(schema, value)) {
    out.push({
      path: fromPointer(e.path),
      message: describe(e as unknown as Parameters<typeof describe>[0]),
    });
  }
  return out;
}
