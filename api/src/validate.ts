// Validates objects against the same schema the CRDs carry, for policies that never pass through an
// API server (standalone files, `airlock policy test`). CEL rules are re-checked by the policy
// compiler; this covers shape, enums, patterns and bounds.
import { FormatRegistry, type TSchema, TypeRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { STRING_ENUM, STRING_MAP } from "./schema-kit.ts";

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
  path: string;
  message: string;
}

export function checkSchema(schema: TSchema, value: unknown): SchemaProblem[] {
  return [...Value.Errors(schema, value)].map((e) => ({ path: e.path || "/", message: e.message }));
}
