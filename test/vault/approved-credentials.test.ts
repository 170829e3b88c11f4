// credentials.vault.approvedPath against real parts (vault-dev → the harness PostgreSQL, Kubernetes
// auth → the shared kube-apiserver): the agent's session runs as a read-only role Vault minted
// for it; a statement a human approved runs alone on a connection of its own as a role minted
// for that statement (which may write), and that role is revoked as soon as it completes. What
// cannot run alone is refused before an approver is asked.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { ApprovalGate, ApprovalInput } from "../../sidecar/src/approvals/gate.ts";
import { connect } from "../envtest/connect.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { startVault, type VaultServer } from "../harness/vault.ts";
import {
  bindMessage,
  errorOf,
  executeMessage,
  parseMessage,
  RawClient,
  syncMessage,
} from "../postgres/raw-client.ts";
import { type GuardedPostgres, startGuard } from "../postgres/support.ts";
import { setUpVault, type VaultFixture, vaultPgPolicy, vaultRoles, vaultSources } from "./setup.ts";

let server: PostgresServer;
let vault: VaultServer;
let fx: VaultFixture;
const guards: GuardedPostgres[] = [];
const asked: ApprovalInput[] = [];
let answer: "approve" | "deny" = "approve";

// The approver: every request is recorded; the answer is what the test sets.
const gate: ApprovalGate = {
  async request(input) {
    asked.push(input);
    return answer === "approve"
      ? { approved: true, request: `areq-${asked.length}`, approvers: ["dana"] }
      : { approved: false, request: `areq-${asked.length}`, status: "denied", message: "not today" };
  },
};

beforeAll(async () => {
  const k8s = connect();
  [server, vault] = await Promise.all([startPostgres(), startVault()]);
  fx = await setUpVault(vault, server, k8s);
  await server.sql("INSERT INTO accounts VALUES (3, 'cy'), (4, 'di'), (5, 'ed')");
});

afterAll(async () => {
  for (const g of guards) await g.close();
  await vault?.stop();
  await server?.stop();
});

function policy(approvedPath = "database/creds/writer"): AgentAccessPolicy {
  return vaultPgPolicy(
    server,
    vault,
    [
      { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction", "set"] } } },
      {
        name: "changes-need-dba",
        action: "requireApproval",
        match: { sql: { statements: ["update", "delete"] } },
        approval: { approvers: { groups: ["dba"] } },
      },
    ],
    { approvedPath },
  );
}

async function guard(p: AgentAccessPolicy): Promise<GuardedPostgres> {
  const g = await startGuard(p, {
    credential: server.users.scram,
    approvals: gate,
    credentials: vaultSources(fx),
  });
  guards.push(g);
  return g;
}

async function session(g: GuardedPostgres): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: g.url() });
  await c.connect();
  return c;
}

const leaseLookup = (lease: string) => vault.raw("PUT", "sys/leases/lookup", { lease_id: lease });
const owner = async (id: number) => (await server.sql(`SELECT owner FROM accounts WHERE id = ${id}`)).trim();
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: Error & { code?: string }) => ({ code: e.code, message: e.message }),
  );

describe("an approved statement runs under a credential minted for it", () => {
  let g: GuardedPostgres;
  beforeAll(async () => {
    g = await guard(policy());
  });

  it("simple Query: runs as the approved role, audited with its own lease, revoked when done", async () => {
    const c = await session(g);
    const me = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    // The session's own role cannot write: the approved UPDATE succeeding means it ran elsewhere.
    const privilege = await c.query("SELECT has_table_privilege(current_user, 'accounts', 'UPDATE') AS may");
    expect(privilege.rows).toEqual([{ may: false }]);
    const roles = await vaultRoles(server);
    asked.length = 0;
    const r = await c.query("UPDATE accounts SET owner = 'carol' WHERE id = 1 RETURNING owner");
    expect(r.rowCount).toBe(1);
    expect(r.rows).toEqual([{ owner: "carol" }]);
    expect(asked).toHaveLength(1);
    expect(await owner(1)).toBe("carol"); // committed on its own
    // Back on the session's own connection, as its own role.
    expect((await c.query("SELECT current_user AS u")).rows[0].u).toBe(me);

    const events = g.audit.filter((e) => e.operation.kind === "sql");
    const update = events.find((e) => e.approval && e.rows === 1);
    const sessionLease = events.find((e) => e !== update)?.credential?.lease ?? "";
    expect(sessionLease).toMatch(/^database\/creds\/ro\//);
    expect(update?.credential).toEqual({
      source: "vault",
      lease: expect.stringMatching(/^database\/creds\/writer\//),
    });
    // The writer role existed for the statement only: revoked at once (its TTL is 1 h).
    await expect
      .poll(async () => (await leaseLookup(update?.credential?.lease ?? "")).status, { timeout: 10_000 })
      .toBe(400);
    expect(await vaultRoles(server)).toEqual(roles);
    expect((await leaseLookup(sessionLease)).status).toBe(200);
    await c.end();
  });

  it("extended protocol (a parameterised DELETE) runs the same way; the session goes on", async () => {
    const c = await session(g);
    asked.length = 0;
    const r = await c.query("DELETE FROM accounts WHERE id = $1", [5]);
    expect(r.rowCount).toBe(1);
    expect(asked).toHaveLength(1);
    expect(await owner(5)).toBe("");
    // The unnamed statement lived on the approved connection: the next ones work as usual.
    const after = await c.query("SELECT count(*)::int AS n FROM accounts WHERE id > $1", [0]);
    expect(after.rows[0].n).toBe(4);
    await c.end();
  });

  it("an approver's refusal: nothing is minted, nothing changes", async () => {
    const c = await session(g);
    const issued = await g.metrics.registry.getSingleMetric("airlock_credentials_issued_total")?.get();
    const before = issued?.values.filter((v) => v.labels.source === "vault-approved").length ?? 0;
    answer = "deny";
    try {
      const e = await failure(c.query("UPDATE accounts SET owner = 'mallory' WHERE id = 2"));
      expect(e?.code).toBe("42501");
    } finally {
      answer = "approve";
    }
    expect(await owner(2)).toBe("bob");
    const now = await g.metrics.registry.getSingleMetric("airlock_credentials_issued_total")?.get();
    expect(now?.values.filter((v) => v.labels.source === "vault-approved").length ?? 0).toBe(before);
    await c.end();
  });

  it("inside a transaction block: refused before anyone is asked; the transaction goes on", async () => {
    const c = await session(g);
    await c.query("BEGIN");
    asked.length = 0;
    const e = await failure(c.query("UPDATE accounts SET owner = 'x' WHERE id = 2"));
    expect(e?.code).toBe("42501");
    expect(e?.message).toMatch(/outside BEGIN \.\.\. COMMIT/);
    expect(asked).toHaveLength(0);
    await c.query("ROLLBACK");
    expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await c.end();
  });

  it("after SET, or with the statement beside others: refused before anyone is asked", async () => {
    const c = await session(g);
    asked.length = 0;
    const both = await failure(c.query("UPDATE accounts SET owner = 'x' WHERE id = 2; BEGIN"));
    expect(both?.message).toMatch(/contains transaction/);
    await c.query("SET work_mem = '8MB'");
    const e = await failure(c.query("DELETE FROM accounts WHERE id = 2"));
    expect(e?.code).toBe("42501");
    expect(e?.message).toMatch(/changed settings with SET/);
    expect(asked).toHaveLength(0);
    expect(await owner(2)).toBe("bob");
    await c.end();
  });
});

describe("the approved batch is the statement alone", () => {
  it("a message that is not part of it is refused; the server rolls the batch back", async () => {
    const g = await guard(policy());
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      asked.length = 0;
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = 'mallory' WHERE id = 3"),
          bindMessage("", "", []),
          executeMessage(""),
          // Would run as the approved role, beside the approved statement.
          parseMessage("more", "SELECT owner FROM accounts"),
          syncMessage(),
        ]),
      );
      const r = await c.until("Z");
      expect(asked).toHaveLength(1);
      const e = errorOf(r.find((m) => m.type === "E"));
      expect(e?.code).toBe("42501");
      expect(e?.message).toMatch(/only Bind, Describe, Execute and Close of the unnamed statement/);
      expect(await owner(3)).toBe("cy");
      // Named and unnamed statements of the batch are gone with its connection: Bind is refused.
      await c.write(Buffer.concat([bindMessage("", "", []), executeMessage(""), syncMessage()]));
      const again = await c.until("Z");
      expect(errorOf(again.find((m) => m.type === "E"))?.message).toMatch(/never prepared/);
      expect(await owner(3)).toBe("cy");
    } finally {
      c.socket.destroy();
    }
  });

  it("a named prepared statement is refused before anyone is asked", async () => {
    const g = await guard(policy());
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      asked.length = 0;
      await c.write(Buffer.concat([parseMessage("p", "DELETE FROM accounts WHERE id = 3"), syncMessage()]));
      const r = await c.until("Z");
      expect(errorOf(r.find((m) => m.type === "E"))?.message).toMatch(/use the unnamed statement/);
      expect(asked).toHaveLength(0);
    } finally {
      c.socket.destroy();
    }
  });
});

describe("the approved role cannot be had", () => {
  it("Vault refuses the path: approved, then refused with Vault's reason; the session goes on", async () => {
    const g = await guard(policy("database/creds/other"));
    const c = await session(g);
    asked.length = 0;
    const e = await failure(c.query("DELETE FROM accounts WHERE id = 2"));
    expect(asked).toHaveLength(1);
    expect(e?.code).toBe("42501");
    expect(e?.message).toMatch(/approved, but the credential for approved statements could not be had/);
    expect(await owner(2)).toBe("bob");
    expect((await c.query("SELECT count(*)::int AS n FROM accounts")).rows[0].n).toBe(4);
    const event = g.audit.find((ev) => /could not be had/.test(ev.decision.reason ?? ""));
    expect(event?.approval).toBeDefined();
    await c.end();
  });
});
