// The workload every PostgreSQL driver suite runs through the guard (test/clients/*-driver.test.ts):
// one real PostgreSQL 15, one guard with masking on (a column rule on `email`, the creditCard
// detector everywhere), a read policy plus an INSERT-only table and an UPDATE that needs approval
// (a stub gate that reports the wait, then approves). Each driver program prints one JSON report
// of the shape below; `expectWorkload` holds every suite to the same assertions.
import { execFile } from "node:child_process";
import { expect } from "vitest";
import type { ApprovalGate } from "../../sidecar/src/protocols/postgres/index.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "../postgres/support.ts";

export const SECRETS = ["ann@example.com", "4111", "5500 0000", "5500000000000004"];

/** The row every driver reads, as the driver renders it (strings; arrays of strings). */
export interface CustomerRow {
  id: string;
  name: string;
  email: string;
  note: string;
  amount: string;
  signup: string;
  ref: string;
  doc: string;
  tags: string[];
}

export interface DriverError {
  code: string;
  message: string;
}

export interface WorkloadReport {
  /** `SELECT * FROM customers WHERE id = 1` in the driver's default mode. */
  select: CustomerRow;
  /** The same with `$1 = 1`, as a prepared statement executed 8 times (past every threshold). */
  prepared: CustomerRow[];
  /** `DELETE FROM customers` (no rule allows it). */
  denied: DriverError;
  /** `SELECT count(*) FROM customers` on the same connection after the denial. */
  after: number;
  /** BEGIN; SELECT; DELETE (denied); ROLLBACK; then the count again. */
  tx: { denied: DriverError; after: number };
  /** INSERT INTO events (allowed for that table only), with a parameter. */
  inserted: number;
  /** `UPDATE customers SET name = name WHERE id = 1`: needs approval (the stub gate approves). */
  approval: { rows: number; notices: string[] };
  /** Driver-specific features. */
  extras: Record<string, unknown>;
}

export interface DriverFixture {
  server: PostgresServer;
  guard: GuardedPostgres;
  close(): Promise<void>;
}

export const APPROVE_HINT = "kubectl airlock approve areq-drivers -n agents";

export async function startDriverFixture(): Promise<DriverFixture> {
  const server = await startPostgres();
  await server.sql(`
    CREATE TABLE customers (
      id int PRIMARY KEY, name text, email varchar(80), note text, amount numeric(10,2),
      signup date, ref uuid, doc jsonb, tags text[]
    );
    INSERT INTO customers VALUES
      (1, 'Ann', 'ann@example.com', 'card 4111 1111 1111 1111', 12.50, '2024-01-02',
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"pan": "4111 1111 1111 1111", "tier": "gold"}',
       ARRAY['vip', 'card 5500 0000 0000 0004']);
    CREATE TABLE events (id serial PRIMARY KEY, what text);
    -- Types defined in the database whose binary form is text: an enum and citext (and its array).
    CREATE EXTENSION citext;
    CREATE TYPE tier AS ENUM ('gold', 'silver');
    CREATE TABLE accounts (id int, tier tier, handle citext, handles citext[]);
    INSERT INTO accounts VALUES (1, 'gold', 'card 4111 1111 1111 1111', ARRAY['x', 'card 5500 0000 0000 0004']);
    GRANT SELECT ON accounts TO airlock_scram;
    GRANT SELECT, UPDATE, DELETE ON customers TO airlock_scram;
    GRANT SELECT, INSERT ON events TO airlock_scram;
    GRANT USAGE ON SEQUENCE events_id_seq TO airlock_scram;
  `);
  const gate: ApprovalGate = {
    async request(input) {
      input.onWaiting?.({
        request: "areq-drivers",
        approveHint: APPROVE_HINT,
        expiresAt: new Date(Date.now() + 60_000).toISOString(),
      });
      await new Promise((r) => setTimeout(r, 200));
      return { approved: true, request: "areq-drivers", approvers: ["dana"] };
    },
  };
  const guard = await startGuard(
    pgPolicy(server, {
      rules: [
        { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction", "set"] } } },
        {
          name: "log-events",
          action: "allow",
          match: { sql: { statements: ["insert"], tables: ["events"] } },
        },
        {
          name: "touch-customers",
          action: "requireApproval",
          match: { sql: { statements: ["update"], tables: ["customers"] } },
          approval: { approvers: { groups: ["dba"] } },
        },
      ],
      masking: [
        {
          name: "pii",
          connections: ["db"],
          columns: ["email"],
          detectors: ["creditCard"],
          strategy: "redact",
        },
      ],
    }),
    { credential: server.users.scram, approvals: gate },
  );
  return {
    server,
    guard,
    async close() {
      await guard.close();
      await server.stop();
    },
  };
}

/** Runs a driver program that prints one JSON report on stdout. */
export function runDriver(
  file: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ report: WorkloadReport; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 60_000, env: { ...process.env, ...opts.env }, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`${file} failed: ${err.message}\n${stderr}\n${stdout}`));
        try {
          resolve({ report: JSON.parse(stdout) as WorkloadReport, stdout, stderr });
        } catch {
          reject(new Error(`${file} printed no JSON report:\n${stdout}\n${stderr}`));
        }
      },
    );
  });
}

export function expectMaskedRow(row: CustomerRow | undefined, where: string) {
  expect(row, where).toBeDefined();
  if (!row) return;
  expect(String(row.id), where).toBe("1");
  expect(row.name, where).toBe("Ann");
  expect(row.email, where).not.toBe("ann@example.com");
  expect(row.email.length, where).toBeGreaterThan(0);
  expect(row.note, where).toMatch(/^card /);
  expect(Number(row.amount), where).toBe(12.5);
  expect(row.signup, where).toMatch(/2024-01-02/);
  expect(row.ref, where).toBe("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  expect(row.doc, where).toMatch(/"tier": ?"gold"/);
  expect(row.tags[0], where).toBe("vip");
  expect(row.tags[1], where).toMatch(/^card /);
}

export function expectDenied(err: DriverError | undefined, where: string) {
  expect(err?.code, where).toBe("42501");
  expect(err?.message, where).toMatch(/Airlock denied this statement/);
}

/** The assertions every driver is held to; `stdout` is the whole report (nothing may leak). */
export function expectWorkload(report: WorkloadReport, stdout: string) {
  for (const s of SECRETS) expect(stdout, `the report contains ${s}`).not.toContain(s);
  expectMaskedRow(report.select, "select");
  expect(report.prepared).toHaveLength(8);
  report.prepared.forEach((r, i) => {
    expectMaskedRow(r, `prepared #${i + 1}`);
  });
  expectDenied(report.denied, "denied DELETE");
  expect(report.after).toBe(1);
  expectDenied(report.tx.denied, "denied DELETE in a transaction");
  expect(report.tx.after).toBe(1);
  expect(report.inserted).toBe(1);
  expect(report.approval.rows).toBe(1);
  expect(report.approval.notices.join("\n")).toContain(`waiting for approval: ${APPROVE_HINT}`);
}
