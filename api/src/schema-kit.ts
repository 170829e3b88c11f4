// Small builders over TypeBox that keep every schema structural (Kubernetes rejects anyOf/const
// at the places TypeBox would put them) and force a description on every field, so that
// `kubectl explain` teaches the API. The TypeScript types come out of the same builders.
import { Kind, type Static, type TSchema, Type } from "@sinclair/typebox";

/** A CEL rule as Kubernetes' `x-kubernetes-validations` takes it. */
export interface CelRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  fieldPath?: string;
  reason?: "FieldValueInvalid" | "FieldValueForbidden" | "FieldValueRequired" | "FieldValueDuplicate";
}

/** Custom TypeBox kinds for the two structural shapes TypeBox has no native form for; validate.ts checks them. */
export const STRING_ENUM = "AirlockStringEnum";
export const STRING_MAP = "AirlockStringMap";

interface Common {
  description: string;
  validations?: CelRule[];
}

function k8s(opts: Common & object): Record<string, unknown> {
  const { validations, ...rest } = opts;
  return validations ? { ...rest, "x-kubernetes-validations": validations } : rest;
}

export const str = (
  opts: Common & {
    maxLength?: number;
    minLength?: number;
    pattern?: string;
    format?: string;
    default?: string;
  },
) => Type.String(k8s(opts));

/** A string enum: structural (`type: string` + `enum`), typed as the union of its values. */
export const oneOf = <const T extends readonly string[]>(values: T, opts: Common & { default?: T[number] }) =>
  Type.Unsafe<T[number]>({ [Kind]: STRING_ENUM, type: "string", enum: [...values], ...k8s(opts) });

export const int = (
  opts: Common & { minimum?: number; maximum?: number; default?: number; format?: "int32" | "int64" },
) => Type.Integer({ format: "int32", ...k8s(opts) });

export const bool = (opts: Common & { default?: boolean }) => Type.Boolean(k8s(opts));

export const list = <T extends TSchema>(
  items: T,
  opts: Common & { maxItems: number; minItems?: number; listType?: "atomic" | "set"; mapKeys?: string[] },
) => {
  const { listType, mapKeys, ...rest } = opts;
  const extra: Record<string, unknown> = {};
  if (mapKeys) {
    extra["x-kubernetes-list-type"] = "map";
    extra["x-kubernetes-list-map-keys"] = mapKeys;
  } else if (listType) {
    extra["x-kubernetes-list-type"] = listType;
  }
  return Type.Array(items, { ...k8s(rest), ...extra });
};

export const obj = <T extends Record<string, TSchema>>(props: T, opts: Common) =>
  Type.Object(props, k8s(opts));

/** map[string]string, structural: additionalProperties rather than TypeBox's patternProperties. */
export const stringMap = (opts: Common & { maxProperties?: number }) =>
  Type.Unsafe<Record<string, string>>({
    [Kind]: STRING_MAP,
    type: "object",
    additionalProperties: { type: "string", description: "A value.", maxLength: 1024 },
    ...k8s(opts),
  });

export const opt = Type.Optional;

/** Go-style duration restricted to units that make sense for policy timers. */
export const DURATION_PATTERN = "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$";
export const duration = (opts: Common & { default?: string; max?: string }) => {
  const rules: CelRule[] = [
    {
      rule: `self.matches('${DURATION_PATTERN}')`,
      message: "must be a duration such as 30s, 5m or 1h30m (units ms, s, m, h)",
    },
  ];
  if (opts.max) {
    rules.push({
      rule: `!self.matches('${DURATION_PATTERN}') || duration(self) <= duration('${opts.max}')`,
      message: `must be at most ${opts.max}`,
    });
  }
  const { max: _max, validations, ...rest } = opts;
  return str({ ...rest, maxLength: 32, validations: [...rules, ...(validations ?? [])] });
};

/** DNS-1123 label: the shape of connection, rule and masking names. */
export const NAME_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
export const name = (description: string) =>
  str({ description, pattern: NAME_PATTERN, minLength: 1, maxLength: 63 });

export type { Static };
