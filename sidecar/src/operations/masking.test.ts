import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy, MaskingRule } from "../../../api/src/index.ts";
import { compilePolicies } from "../policy/compile.ts";
import { connectionMasking, resolveMasking, rulesFor } from "./masking.ts";

const rules: MaskingRule[] = [
  { name: "all-conns", detectors: ["email"], strategy: "redact" },
  { name: "only-b", connections: ["b"], detectors: ["iban"], strategy: "redact" },
  { name: "prompts", detectors: ["jwt"], strategy: "redact", direction: "request" },
  { name: "both-ways", detectors: ["awsAccessKey"], strategy: "hash", direction: "both" },
];

function compiled(masking: MaskingRule[]) {
  const p: AgentAccessPolicy = {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "p", namespace: "ns" },
    spec: {
      connections: [
        { name: "a", protocol: "http", target: { host: "h", port: 80 } },
        { name: "b", protocol: "http", target: { host: "h2", port: 80 } },
      ],
      rules: [],
      masking,
    },
  };
  const { set } = compilePolicies([p]);
  return set;
}

const key = Buffer.alloc(32, 7);

describe("masking rule selection", () => {
  it("applies rules without connections everywhere and honours direction", () => {
    expect(rulesFor(rules, "a", "response").map((r) => r.name)).toEqual(["all-conns", "both-ways"]);
    expect(rulesFor(rules, "b", "response").map((r) => r.name)).toEqual(["all-conns", "only-b", "both-ways"]);
    expect(rulesFor(rules, "a", "request").map((r) => r.name)).toEqual(["prompts", "both-ways"]);
  });

  it("resolves a compiled connection once, split by direction", () => {
    const set = compiled(rules);
    const b = set.connections.get("b");
    if (!b) throw new Error("no connection");
    const m = connectionMasking(b, key);
    expect(m.responseRules.map((r) => r.name)).toEqual(["all-conns", "only-b", "both-ways"]);
    expect("masker" in m.request && m.request.masker).toBeTruthy();
    expect(m.request).not.toBe(m.response);
    expect(connectionMasking(b, key)).toBe(m);
    // A new policy generation compiles new connections: resolved again.
    const again = compiled(rules).connections.get("b");
    if (!again) throw new Error("no connection");
    expect(connectionMasking(again, key)).not.toBe(m);
  });

  it("a connection without rules in a direction has no masker there", () => {
    const a = compiled([{ name: "r", detectors: ["email"], strategy: "redact" }]).connections.get("a");
    if (!a) throw new Error("no connection");
    expect(connectionMasking(a, key).request).toEqual({ masker: undefined });
  });

  it("a rule that does not compile is an error slot, not a missing masker", () => {
    // The policy loader refuses such a rule; the resolution must still fail closed on its own.
    const m = resolveMasking([{ name: "bad", fields: ["$[?(@.x"], strategy: "redact" }], "a", key);
    expect("error" in m.response).toBe(true);
    expect(m.request).toEqual({ masker: undefined });
  });
});
