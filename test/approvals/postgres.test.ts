// A DELETE through the real PostgreSQL guard (a real PostgreSQL behind it) waits on the approval
// service and runs once approved with the real plugin. The store here is the standalone one behind
// the sidecar's admin routes: the guard's test support pins the workload to namespace `agents`,
// which the Kubernetes suite (kubernetes.test.ts) cannot use with a real service-account token.

import { mkdtempSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAdminServer } from "../../sidecar/src/admin/server.ts";
import { ensureApproverCredential } from "../../sidecar/src/approvals/credentials.ts";
import {
  approvalRoutes,
  createApprovalMetrics,
  createApprovalService,
  createLocalStore,
} from "../../sidecar/src/approvals/index.ts";
import { cancelRequest } from "../../sidecar/src/protocols/postgres/protocol.ts";
import { createMetrics } from "../../sidecar/src/telemetry/metrics.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard, WORKLOAD } from "../postgres/support.ts";
import { plugin } from "./cluster.ts";

let server: PostgresServer;
let guard: GuardedPostgres;
let admin: { port: number; close(): Promise<void> };
const store = createLocalStore({ namespace: "agents" });
const gate = createApprovalService({
  store,
  workload: WORKLOAD,
  logger: pino({ level: "silent" }),
  metrics: createApprovalMetrics(new Registry()),
});

// Standalone decisions need an approver credential (owner-only file); the plugin reads the same file.
const credentialsFile = join(mkdtempSync(join(tmpdir(), "airlock-pg-approvals-")), "approver-tokens");
ensureApproverCredential(credentialsFile, "dana");

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE sink (a int, b text);
    INSERT INTO sink VALUES (1, 'one'), (2, 'two');
    GRANT ALL ON sink TO airlock_scram;
  `);
  guard = await startGuard(
    pgPolicy(server, {
      rules: [
        {
          name: "delete-needs-dba",
          action: "requireApproval",
          match: { sql: { statements: ["delete"] } },
          approval: { approvers: { users: ["dana"] }, timeout: "30s" },
        },
        { name: "read", action: "allow", match: { sql: { statements: ["read", "set"] } } },
      ],
    }),
    { credential: server.users.scram, approvals: gate },
  );
  const metrics = createMetrics({ defaultMetrics: false });
  admin = await startAdminServer({
    host: "127.0.0.1",
    port: 0,
    metrics,
    logger: pino({ level: "silent" }),
    notReadyReason: () => undefined,
    drain: async () => undefined,
    routes: [approvalRoutes(gate, { credentialsFile })],
  });
});

afterAll(async () => {
  await gate.close();
  await admin?.close();
  await guard?.close();
  await server?.stop();
});

describe("approval through the PostgreSQL guard", () => {
  it("holds a DELETE until approved; approvers see the normalized statement and the reason", async () => {
    const client = new pg.Client({ connectionString: guard.url() });
    const notices: string[] = [];
    client.on("notice", (n) => notices.push(n.message ?? ""));
    await client.connect();
    try {
      const held = client.query("-- duplicate row, ticket 7\nDELETE FROM sink WHERE a = 2");
      let name = "";
      for (let i = 0; i < 100 && !name; i++) {
        name = store.list()[0]?.metadata.name ?? "";
        if (!name) await new Promise((r) => setTimeout(r, 50));
      }
      const req = store.list()[0];
      expect(req?.spec).toMatchObject({
        rule: "delete-needs-dba",
        connection: "db",
        operation: {
          protocol: "postgres",
          summary: expect.stringMatching(/DELETE FROM sink WHERE a = \$1$/),
        },
        reason: "duplicate row, ticket 7",
      });
      expect(JSON.stringify(req)).not.toMatch(/a = 2/);
      // The client is told at once that the statement waits, and what an approver runs.
      await expect
        .poll(() => notices, { timeout: 5000 })
        .toEqual([
          expect.stringMatching(
            new RegExp(`^waiting for approval: .*approve ${name}.*access request ${name}, expires `),
          ),
        ]);
      const url = `http://127.0.0.1:${admin.port}`;
      const ok = await plugin(["approve", name, "--sidecar", url, "--approver-token-file", credentialsFile]);
      expect(ok.code, ok.stderr).toBe(0);
      expect((await held).rowCount).toBe(1);
      expect((await client.query("SELECT count(*)::int AS n FROM sink")).rows[0]).toEqual({ n: 1 });
    } finally {
      await client.end();
    }
    expect(guard.audit.find((e) => e.approval)).toMatchObject({
      protocol: "postgres",
      approval: { approvers: ["dana"] },
    });
  });

  it("a client's cancel ends the wait with 57014, saying the request stays pending", async () => {
    const client = new pg.Client({ connectionString: guard.url() });
    await client.connect();
    const notices: string[] = [];
    client.on("notice", (n) => notices.push(n.message ?? ""));
    try {
      const held = client.query("DELETE FROM sink WHERE a = 3");
      await expect.poll(() => notices.length, { timeout: 5000 }).toBe(1);
      // A CancelRequest on a second connection, as psql's Ctrl-C and drivers' timeouts send it.
      const keys = client as unknown as { processID: number; secretKey: number };
      await new Promise<void>((resolve, reject) => {
        const s = connect(guard.port, "127.0.0.1", () =>
          s.end(cancelRequest(keys.processID, keys.secretKey)),
        );
        s.on("close", () => resolve());
        s.on("error", reject);
      });
      await expect(held).rejects.toMatchObject({
        code: "57014",
        message: expect.stringMatching(/canceling statement due to user request: .*canceled the wait/),
      });
      // The session stays usable.
      expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  });

  it("statement_timeout ends the wait with 57014 as on the server: set in the session, or the role's default", async () => {
    const waitFor = async (client: pg.Client, setup: string[]) => {
      for (const q of setup) await client.query(q);
      const started = Date.now();
      const err = await client.query("DELETE FROM sink WHERE a = 4").catch((e: unknown) => e);
      return { err: err as { code?: string; message?: string }, ms: Date.now() - started };
    };
    const client = new pg.Client({ connectionString: guard.url() });
    await client.connect();
    try {
      const { err, ms } = await waitFor(client, ["SET statement_timeout = '1s'"]);
      expect(err).toMatchObject({
        code: "57014",
        message: expect.stringMatching(
          /canceling statement due to statement timeout: the session's statement_timeout ended the wait .*stays pending/,
        ),
      });
      // Ended by the 1 s timeout, long before the rule's 30 s.
      expect(ms).toBeLessThan(10_000);
      // The session stays usable; RESET goes back to no timeout (the harness role has none).
      expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
    // A default the operator set on the role applies from the session's start.
    await server.sql(`ALTER ROLE ${server.users.scram.user} SET statement_timeout = '1500ms'`);
    const second = new pg.Client({ connectionString: guard.url() });
    await second.connect();
    try {
      const { err } = await waitFor(second, []);
      expect(err).toMatchObject({ code: "57014", message: expect.stringMatching(/statement timeout/) });
    } finally {
      await second.end();
      await server.sql(`ALTER ROLE ${server.users.scram.user} RESET statement_timeout`);
    }
  });
});
