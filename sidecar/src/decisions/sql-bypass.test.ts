// The table-driven bypass suite (test/fixtures/sql-bypass-cases.ts) judged exactly as the wire guard judges:
// classifier → built-in refusals → policy engine → opaque-statement check.
import { beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { BYPASS_CASES, BYPASS_POLICY } from "../../../test/fixtures/sql-bypass-cases.ts";
import { compilePolicies } from "../policy/compile.ts";
import type { Subject } from "../policy/types.ts";
import { type ClassifiedStatement, classifySync, loadSqlParser } from "../sql/index.ts";
import { BUILTIN_RULE } from "./refusals.ts";
import { judgeSql, readOnlySession } from "./sql.ts";

beforeAll(() => loadSqlParser());

const agent: Subject = { serviceAccount: "system:serviceaccount:agents:analyst", groups: [] };
const { set, problems } = compilePolicies([BYPASS_POLICY]);
const connection = set.connections.get("db");

function judge(
  sql: string,
  opts: { prepared?: Map<string, readonly ClassifiedStatement[]>; masking?: boolean } = {},
) {
  if (!connection) throw new Error("bypass policy did not compile");
  return judgeSql({
    classification: classifySync(sql),
    policies: set,
    connection,
    subject: agent,
    ...opts,
  }).decision;
}

describe("bypass suite", () => {
  it("the policy compiles", () => expect(problems).toEqual([]));
  it.each(BYPASS_CASES.map((c) => [c.why, c] as const))("%s", (_why, c) => {
    const d = judge(c.sql);
    expect({ sql: c.sql, action: d.action }).toEqual({ sql: c.sql, action: c.expect });
    if (c.builtin) expect(d.rule).toBe(BUILTIN_RULE);
    if (c.expect === "deny" && !c.builtin) expect(d.rule).not.toBe(BUILTIN_RULE);
  });
});

describe("EXECUTE is judged as what was prepared", () => {
  it("resolves to the prepared statements and refuses unknown names", () => {
    const prepared = new Map<string, readonly ClassifiedStatement[]>([
      ["ok", classifySync("PREPARE ok AS SELECT * FROM orders").statements],
      ["bad", classifySync("PREPARE bad AS SELECT * FROM secrets").statements],
    ]);
    expect(judge("EXECUTE ok", { prepared }).action).toBe("allow");
    expect(judge("EXECUTE bad", { prepared }).action).toBe("deny");
    expect(judge("EXECUTE other", { prepared })).toMatchObject({ action: "deny", rule: BUILTIN_RULE });
    expect(judge("EXECUTE ok (pg_sleep(1))", { prepared })).toMatchObject({
      action: "deny",
      rule: BUILTIN_RULE,
    });
  });
});

describe("masking-aware refusals", () => {
  it("refuses COPY TO that cannot be masked, and binary cursors, when masking applies", () => {
    expect(judge("COPY orders TO STDOUT").action).toBe("allow");
    for (const sql of [
      "COPY orders TO STDOUT",
      "COPY (SELECT * FROM orders) TO STDOUT",
      "COPY orders (id) TO STDOUT (FORMAT binary)",
      "COPY orders (id) TO STDOUT (DELIMITER '|')",
      "COPY orders (id) TO STDOUT (FORMAT csv, QUOTE '#')",
    ])
      expect(judge(sql, { masking: true }).reason, sql).toMatch(
        /COPY \.\.\. TO is masked only for a table with a column list/,
      );
    // pg_dump's form is masked row by row, so it is judged by the rules.
    expect(judge("COPY public.orders (id, total) TO stdout;", { masking: true }).action).toBe("allow");
    expect(judge("COPY orders (id) TO STDOUT WITH (FORMAT csv, HEADER)", { masking: true }).action).toBe(
      "allow",
    );
    expect(judge("DECLARE c BINARY CURSOR FOR SELECT * FROM orders", { masking: true }).reason).toMatch(
      /binary cursors/,
    );
    expect(judge("DECLARE c CURSOR FOR SELECT * FROM orders", { masking: true }).action).toBe("allow");
  });
});

function policy(rules: AgentAccessPolicy["spec"]["rules"]): AgentAccessPolicy {
  return { ...BYPASS_POLICY, spec: { ...BYPASS_POLICY.spec, rules } };
}

describe("opaque statements need an explicit rule", () => {
  const judgeWith = (rules: AgentAccessPolicy["spec"]["rules"], sql: string) => {
    const compiled = compilePolicies([policy(rules)]).set;
    const conn = compiled.connections.get("db");
    if (!conn) throw new Error("no connection");
    return judgeSql({
      classification: classifySync(sql),
      policies: compiled,
      connection: conn,
      subject: agent,
    }).decision;
  };
  it("a `*` rule does not let DO through; naming `do` does", () => {
    expect(
      judgeWith(
        [{ name: "all", action: "allow", match: { sql: { statements: ["*"] } } }],
        "DO $$ BEGIN END $$",
      ),
    ).toMatchObject({ action: "deny", reason: expect.stringMatching(/must list "do"/) });
    expect(judgeWith([{ name: "open", action: "allow" }], "CALL p()").action).toBe("deny");
    expect(
      judgeWith(
        [{ name: "do", action: "allow", match: { sql: { statements: ["do", "select"] } } }],
        "DO $$ BEGIN END $$",
      ).action,
    ).toBe("allow");
  });
});

describe("read-only sessions", () => {
  const ro = (rules: AgentAccessPolicy["spec"]["rules"], subject: Subject = agent) => {
    const { set } = compilePolicies([policy(rules)]);
    const conn = set.connections.get("db");
    if (!conn) throw new Error("no connection");
    return readOnlySession(set, conn, subject);
  };
  it("is read-only when every applicable allow/approval rule is a read", () => {
    expect(ro(BYPASS_POLICY.spec.rules)).toBe(true);
    expect(
      ro([{ name: "r", action: "allow", match: { sql: { statements: ["select", "show", "explain"] } } }]),
    ).toBe(true);
    expect(ro([])).toBe(true);
  });
  it("is read-write when any applicable rule could allow a write", () => {
    expect(ro([{ name: "w", action: "allow", match: { sql: { statements: ["read", "write"] } } }])).toBe(
      false,
    );
    expect(ro([{ name: "open", action: "allow" }])).toBe(false);
    expect(ro([{ name: "any", action: "allow", match: { sql: { tables: ["orders"] } } }])).toBe(false);
    expect(
      ro([
        { name: "r", action: "allow", match: { sql: { statements: ["read"] } } },
        {
          name: "approve-delete",
          action: "requireApproval",
          match: { sql: { statements: ["delete"] } },
          approval: { approvers: { groups: ["dba"] } },
        },
      ]),
    ).toBe(false);
  });
  it("ignores rules for other subjects and deny rules", () => {
    const rules: AgentAccessPolicy["spec"]["rules"] = [
      { name: "r", action: "allow", match: { sql: { statements: ["read"] } } },
      {
        name: "dba",
        action: "allow",
        subjects: { groups: ["dba"] },
        match: { sql: { statements: ["write"] } },
      },
      { name: "no", action: "deny", match: { sql: { statements: ["write"] } } },
    ];
    expect(ro(rules)).toBe(true);
    expect(ro(rules, { ...agent, user: "d", groups: ["dba"] })).toBe(false);
  });
});
