// Judging SQL with the upstream's catalog, the way the guard is to combine it: classification →
// catalog judgement (opaque calls become `call` entries) → the PostgreSQL guard's rule check
// (decisions/sql.ts: built-in refusals, EXECUTE resolution, policy evaluation, CALL needs an explicit
// kind). Also a catalog query function over a node-postgres client.
import type pg from "pg";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { judgeSql } from "../../sidecar/src/decisions/sql.ts";
import { compilePolicies, type PolicySet } from "../../sidecar/src/policy/compile.ts";
import type { Decision, Subject } from "../../sidecar/src/policy/types.ts";
import type { Catalog, CatalogQuery } from "../../sidecar/src/sql/catalog.ts";
import {
  type ClassificationCalls,
  classificationCalls,
  withOpaqueCalls,
} from "../../sidecar/src/sql/catalog-judge.ts";
import { type Classification, type ClassifiedStatement, classifySync } from "../../sidecar/src/sql/index.ts";
import type { SqlParser } from "../../sidecar/src/sql/parser.ts";

export const SUBJECT: Subject = { serviceAccount: "system:serviceaccount:agents:agent", groups: [] };

/** A policy with one postgres connection `db` and the given rules. */
export function sqlPolicy(rules: AgentAccessPolicy["spec"]["rules"]): PolicySet {
  const { set, problems } = compilePolicies([
    {
      apiVersion: "airlock.dev/v1alpha1",
      kind: "AgentAccessPolicy",
      metadata: { name: "catalog", namespace: "agents" },
      spec: {
        connections: [{ name: "db", protocol: "postgres", target: { host: "127.0.0.1", port: 5432 } }],
        rules,
      },
    },
  ]);
  if (problems.length) throw new Error(`policy problems: ${JSON.stringify(problems)}`);
  return set;
}

/** Reads only: the rule the differential judges with. */
export const READ_POLICY = sqlPolicy([
  { name: "read", action: "allow", match: { sql: { statements: ["read"] } } },
]);

export interface CatalogJudgement {
  decision: Decision;
  classification: Classification;
  calls?: ClassificationCalls;
}

/** Named statements of the session (PREPARE, DECLARE), as the guard records them. */
export type Named = { get(name: string): readonly ClassifiedStatement[] | undefined };

export function judgeWithCatalog(
  sql: string,
  catalog: Catalog,
  policies: PolicySet = READ_POLICY,
  named: { prepared?: Named; cursors?: Named; parser?: SqlParser } = {},
): CatalogJudgement {
  const classification = classifySync(sql, named.parser);
  const connection = policies.connections.get("db");
  if (!connection) throw new Error("policy has no connection db");
  // EXECUTE runs what was prepared, FETCH / MOVE the declared query: judged as that, with
  // today's catalog (an unknown name is refused). EXECUTE's own arguments stay with it.
  let statements: ClassifiedStatement[] = [];
  for (const s of classification.statements) {
    const e = s.effect;
    if (e?.kind !== "fetch" && e?.kind !== "execute") {
      statements.push(s);
      continue;
    }
    const recorded = (e.kind === "fetch" ? named.cursors : named.prepared)?.get(e.name);
    if (!recorded)
      return {
        decision: { action: "deny", reason: `${e.kind} of ${e.name}, which this session never defined` },
        classification,
      };
    if (e.kind === "execute")
      statements.push({ ...s, kind: "select", effect: undefined } as ClassifiedStatement);
    for (const d of recorded) {
      const { effect: _e, ...plain } = d;
      statements.push({ ...plain, index: s.index });
    }
  }
  const resolved: Classification = { ...classification, statements };
  const calls = classification.errors.length ? undefined : classificationCalls(resolved, catalog);
  if (calls) statements = withOpaqueCalls(resolved, calls);
  const judgement = judgeSql({
    classification: { ...resolved, statements },
    policies,
    connection,
    subject: SUBJECT,
  });
  return { decision: judgement.decision, classification, ...(calls ? { calls } : {}) };
}

/** Catalog queries over a node-postgres client. */
export function clientQuery(client: pg.Client): CatalogQuery {
  return async (sql) => (await client.query(sql)).rows;
}
