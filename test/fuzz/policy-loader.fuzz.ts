// Fuzz target: the policy loader and validator. The input is a policy file (YAML, several
// documents allowed), read by the standalone file source (sidecar/src/sources/files.ts), then
// compiled as the policy store does (sidecar/src/policy/compile.ts, validate.ts; the CRD schema
// in api/src). Invariants:
//  - Reading refuses with a PolicyFileError only (naming the file); compiling never throws,
//    whatever shape the documents have: a malformed policy is a problem, not a crash.
//  - A policy that fails validation never loads: every policy in force has no problem, and
//    passes the CRD's own schema (checkSchema of AgentAccessPolicySpec); every policy with a
//    problem is absent, and every problem names its policy and says what is wrong.
//  - The set in force answers: evaluate() on its connections returns a decision with an action
//    and a reason for an operation of each kind, and never throws.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { checkSchema } from "../../api/src/validate.ts";
import { compilePolicies, policyKey } from "../../sidecar/src/policy/compile.ts";
import type { Operation, Subject } from "../../sidecar/src/policy/types.ts";
import { PolicyFileError, readPolicyFiles } from "../../sidecar/src/sources/files.ts";
import { check, fail } from "./support/invariant.ts";

const file = join(mkdtempSync(join(tmpdir(), "airlock-fuzz-policy-")), "policy.yaml");
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

export async function fuzz(data: Buffer): Promise<void> {
  const text = data.toString("utf8");
  writeFileSync(file, text);
  let policies: Awaited<ReturnType<typeof readPolicyFiles>>;
  try {
    policies = await readPolicyFiles([file]);
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
