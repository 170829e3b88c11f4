// Shapes shared by both kinds: label selectors, Secret references, status conditions.
import type { TSchema } from "@sinclair/typebox";
import { int, list, obj, oneOf, opt, str, stringMap } from "./schema-kit.ts";

export const labelSelector = (description: string) =>
  obj(
    {
      matchLabels: opt(
        stringMap({ description: "Labels a pod must carry, all of them.", maxProperties: 64 }),
      ),
      matchExpressions: opt(
        list(
          obj(
            {
              key: str({ description: "Label key.", maxLength: 317 }),
              operator: oneOf(["In", "NotIn", "Exists", "DoesNotExist"] as const, {
                description: "How key and values relate.",
              }),
              values: opt(
                list(str({ description: "A label value.", maxLength: 63 }), {
                  description: "Values for In and NotIn.",
                  maxItems: 64,
                  listType: "atomic",
                }),
              ),
            },
            {
              description: "A label selector requirement.",
              validations: [
                {
                  rule: "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                  message: "In and NotIn need values; Exists and DoesNotExist take none",
                },
              ],
            },
          ),
          { description: "Label requirements, all of them.", maxItems: 16, listType: "atomic" },
        ),
      ),
    },
    { description },
  );

export const secretRef = (description: string) =>
  obj(
    { name: str({ description: "Secret name, in the policy's namespace.", minLength: 1, maxLength: 253 }) },
    { description },
  );

export const secretKeyRef = (description: string) =>
  obj(
    {
      name: str({ description: "Secret name, in the policy's namespace.", minLength: 1, maxLength: 253 }),
      key: str({ description: "Key within the Secret.", minLength: 1, maxLength: 253 }),
    },
    { description },
  );

export const condition = obj(
  {
    type: str({ description: "Condition type, e.g. Ready.", maxLength: 316 }),
    status: oneOf(["True", "False", "Unknown"] as const, { description: "Status of the condition." }),
    reason: str({ description: "Machine-readable CamelCase reason.", maxLength: 1024 }),
    message: opt(
      str({ description: "Human-readable details, including what to do next.", maxLength: 32768 }),
    ),
    lastTransitionTime: str({ description: "When the status last changed.", format: "date-time" }),
    observedGeneration: opt(
      int({
        description: "metadata.generation the condition was computed from.",
        minimum: 0,
        format: "int64",
      }),
    ),
  },
  { description: "A status condition in the standard Kubernetes shape." },
);

export const conditionsStatus = <T extends Record<string, TSchema>>(description: string, extra: T) =>
  obj(
    {
      ...extra,
      observedGeneration: opt(
        int({
          description: "metadata.generation the status was computed from.",
          minimum: 0,
          format: "int64",
        }),
      ),
      conditions: opt(
        list(condition, {
          description: "Current conditions; Ready tells whether the policy is usable.",
          maxItems: 16,
          mapKeys: ["type"],
        }),
      ),
    },
    { description },
  );
