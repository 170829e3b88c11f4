import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy, MaskingRule } from "../../../../api/src/index.ts";
import { compilePolicies } from "../../policy/compile.ts";
import { compiledMaskingRules, rulesFor } from "./masking.ts";

const rules: MaskingRule[] = [
  { name: "all-conns", detectors: ["email"], strategy: "redact" },
  { name: "only-b", connections: ["b"], detectors: ["iban"], strategy: "redact" },
  { name: "prompts", detectors: ["jwt"], strategy: "redact", direction: "request" },
  { name: "both-ways", detectors: ["awsAccessKey"], strategy: "hash", direction: "both" },
];

describe("masking rule selection", () => {
  it("applies rules without connections everywhere and honours direction", () => {
    expect(rulesFor(rules, "a", "response").map((r) => r.name)).toEqual(["all-conns", "both-ways"]);
    expect(rulesFor(rules, "b", "response").map((r) => r.name)).toEqual(["all-conns", "only-b", "both-ways"]);
    expect(rulesFor(rules, "a", "request").map((r) => r.name)).toEqual(["prompts", "both-ways"]);
  });

  it("resolves a connection's rules from its owning policy", () => {
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
        masking: rules,
      },
    };
    const { set } = compilePolicies([p]);
    const names = (c: string) => {
      const conn = set.connections.get(c);
      if (!conn) throw new Error(`no connection ${c}`);
      return compiledMaskingRules(conn).map((r) => r.name);
    };
    expect(names("a")).toEqual(["all-conns", "prompts", "both-ways"]);
    expect(names("b")).toEqual(["all-conns", "only-b", "prompts", "both-ways"]);
  });
});
