// Fuzz target: the policy loader and validator. The input is a policy file (YAML, several
// documents allowed), parsed as the standalone file source does (sidecar/src/sources/files.ts), then
// compiled as the policy store does (sidecar/src/policy/compile.ts, validate.ts; the CRD schema
// in api/src). Invariants:
//  - Reading refuses with a PolicyFileError only (naming the file); compiling never throws,
//    whatever shape the documents have: a malformed policy is a problem, not a crash.
//  - A policy that fails validation never loads: every policy in force has no problem, and
//    passes the CRD's own schema (checkSchema of AgentAccessPolicySpec); every policy with a
//    problem is absent, and every problem names its policy and says what is wrong.
//  - Nothing of a policy in force is dropped: its connections, rules and masking rules all reach
//    the compiled connections they apply to.
//  - The set in force answers: evaluate() on its connections returns a decision with an action
//    and a reason for an operation of each kind, and never throws.
import { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { checkSchema } from "../../api/src/validate.ts";
import { compilePolicies, policyKey } from "../../sidecar/src/policy/compile.ts";
import type { Operation, Subject } from "../../sidecar/src/policy/types.ts";
import { PolicyFileError, parsePolicyDocuments } from "../../sidecar/src/sources/files.ts";
import { check, fail } from "./support/invariant.ts";

const file = "policy.yaml";
const SUBJECT: Subject = { serviceAccount: "system:serviceaccount:agents:agent", groups: ["team-a"] };
const OPERATIONS: Operation[] = [
  { kind: "http", method: "GET", path: "/customers/1", websocket: false },
  { kind: "http-tunnel" },
  { kind: "sql", statements: [{ kind: "select", tables: ["public.orders"], functions: [] }] },
  { kind: "ssh-exec", command: "ls -la" },
  { kind: "ssh-shell" },
  { kind: "ssh-forward", target: "127.0.0.1:5432" },
  { kind: "ssh-sftp" },
  { kind: "mcp", method: "tools/call", tool: "search" },
];

export function fuzz(data: Buffer): void {
  const text = data.toString("utf8");
  let policies: ReturnType<typeof parsePolicyDocuments>;
  try {
    policies = parsePolicyDocuments(text, file);
  } catch (err) {
    if (err instanceof PolicyFileError) {
      check(err.message.startsWith(file), "a policy file error that does not name the file", {
        text,
        message: err.message,
      });
      return;
    }
    throw err;
  }
  const { set, problems } = compilePolicies(policies);
  for (const p of problems)
    check(typeof p.policy === "string" && p.message.length > 0, "a problem without its policy or message", {
      text,
      p,
    });
  const broken = new Set(problems.map((p) => p.policy));
  for (const key of set.policies) {
    if (broken.has(key)) fail("a policy with problems is in force", { text, key, problems });
    const policy = policies.find((p) => policyKey(p) === key);
    const schema = checkSchema(AgentAccessPolicySpec, policy?.spec);
    if (schema.length > 0) fail("a policy in force fails the CRD schema", { text, key, schema });
  }
  for (const p of policies) {
    const key = policyKey(p);
    if (!broken.has(key) && !set.policies.includes(key))
      fail("a valid policy did not load", { text, key, problems });
  }
  // Nothing of a policy in force is dropped: each connection is compiled as written, owned by its
  // policy, and carries each of its policy's rules (under the rule's action) and masking rules
  // that name it or no connection.
  for (const key of set.policies) {
    const policy = policies.find((p) => policyKey(p) === key) as (typeof policies)[number];
    for (const c of policy.spec.connections) {
      const compiled = set.connections.get(c.name);
      if (compiled?.policy !== key || compiled.spec !== c)
        fail("a connection of a policy in force is not compiled as written", { text, key, c: c.name });
      for (const r of policy.spec.rules)
        if (!r.connections?.length || r.connections.includes(c.name))
          check(
            compiled.rules[r.action].some((cr) => cr.rule === r),
            "a rule of a policy in force is missing from a connection it applies to",
            { text, key, connection: c.name, rule: r.name },
          );
      for (const m of policy.spec.masking ?? [])
        if (!m.connections?.length || m.connections.includes(c.name))
          check(compiled.masking.includes(m), "a masking rule is missing from a connection it applies to", {
            text,
            key,
            connection: c.name,
            masking: m.name,
          });
    }
  }
  for (const name of set.connections.keys())
    for (const op of OPERATIONS) {
      const d = set.evaluate(name, SUBJECT, op);
      check(
        ["allow", "deny", "requireApproval"].includes(d.action) && d.reason.length > 0,
        "a decision without action or reason",
        {
          text,
          name,
          op,
          d,
        },
      );
    }
}
