import { expect, it } from "vitest";
import { type LabelSelector, selectorMatches } from "./selector.ts";

const labels = { app: "analyst", tier: "agents" };
it.each<[string, LabelSelector | undefined, boolean]>([
  ["absent selects all", undefined, true],
  ["empty selects all", {}, true],
  ["matchLabels hit", { matchLabels: { app: "analyst" } }, true],
  ["matchLabels miss", { matchLabels: { app: "ops" } }, false],
  ["matchLabels needs all", { matchLabels: { app: "analyst", tier: "x" } }, false],
  ["In", { matchExpressions: [{ key: "tier", operator: "In", values: ["agents", "b"] }] }, true],
  ["In miss", { matchExpressions: [{ key: "tier", operator: "In", values: ["b"] }] }, false],
  ["NotIn", { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["b"] }] }, true],
  ["NotIn on absent key", { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["b"] }] }, true],
  ["Exists", { matchExpressions: [{ key: "app", operator: "Exists" }] }, true],
  ["DoesNotExist", { matchExpressions: [{ key: "app", operator: "DoesNotExist" }] }, false],
  ["unknown operator selects nothing", { matchExpressions: [{ key: "app", operator: "Like" }] }, false],
])("%s", (_label, selector, expected) => expect(selectorMatches(selector, labels)).toBe(expected));
