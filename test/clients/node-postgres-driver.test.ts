// node-postgres (pg) through the guard to PostgreSQL 15 with masking on: the shared workload
// (driver-workload.ts) with named prepared statements, transactions, a denial and the same session
// after; and binary results (`binary: true`) for the columns node-postgres can read in binary.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CustomerRow,
  type DriverError,
  type DriverFixture,
  expectDenied,
  expectWorkload,
  SECRETS,
  startDriverFixture,
  type WorkloadReport,
} from "./driver-workload.ts";

let fx: DriverFixture;
beforeAll(async () => {
  fx = await startDriverFixture();
});
afterAll(async () => {
  await fx?.close();
});

const ROW_SQL = "SELECT id, name, email, note, amount, signup, ref, doc, tags FROM customers WHERE id = ";

const text = (v: unknown): string =>
  v instanceof Date
    ? `${v.getFullYear()}-${String(v.getMonth() + 1).padStart(2, "0")}-${String(v.getDate()).padStart(2, "0")}`
    : Buffer.isBuffer(v)
      ? v.toString("utf8")
      : typeof v === "object" && v !== null
        ? JSON.stringify(v)
        : String(v);

/** node-postgres' binary mode leaves types it has no binary parser for as raw bytes. */
function tagsOf(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(text);
  if (typeof v === "string" && v.startsWith("{"))
    return v
      .slice(1, -1)
      .split(",")
      .map((s) => s.replace(/^"|"$/g, ""));
  return [text(v)];
}

function rowOf(r: Record<string, unknown> | undefined): CustomerRow {
  if (!r) throw new Error("no row");
  return {
    id: text(r.id),
    name: text(r.name),
    email: text(r.email),
    note: text(r.note),
    amount: text(r.amount),
    signup: text(r.signup),
    ref: text(r.ref),
    doc: text(r.doc),
    tags: tagsOf(r.tags),
  };
}

async function errorOf(p: Promise<unknown>): Promise<DriverError> {
  try {
    await p;
    return { code: "", message: "statement was not refused" };
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { code: err.code ?? "", message: err.message ?? String(e) };
  }
}

async function workload(config: pg.ClientConfig): Promise<WorkloadReport> {
  const c = new pg.Client({
    host: fx.guard.host,
    port: fx.guard.port,
    user: "agent",
    database: "airlock",
    ...config,
  });
  const notices: string[] = [];
  c.on("notice", (n) => notices.push(n.message ?? ""));
  await c.connect();
  const count = async () => Number((await c.query("SELECT count(*) AS n FROM customers")).rows[0].n);
  try {
    const select = rowOf((await c.query(`${ROW_SQL}1`)).rows[0]);
    const prepared: CustomerRow[] = [];
    for (let i = 0; i < 8; i++)
      prepared.push(rowOf((await c.query({ name: "by-id", text: `${ROW_SQL}$1`, values: [1] })).rows[0]));
    const denied = await errorOf(c.query("DELETE FROM customers"));
    const after = await count();
    await c.query("BEGIN");
    await c.query("SELECT 1");
    const txDenied = await errorOf(c.query("DELETE FROM customers WHERE id = $1", [1]));
    await c.query("ROLLBACK");
    const txAfter = await count();
    const inserted =
      (await c.query("INSERT INTO events (what) VALUES ($1)", ["node-postgres"])).rowCount ?? 0;
    const updated = (await c.query("UPDATE customers SET name = name WHERE id = $1", [1])).rowCount ?? 0;
    return {
      select,
      prepared,
      denied,
      after,
      tx: { denied: txDenied, after: txAfter },
      inserted,
      approval: { rows: updated, notices },
      extras: {},
    };
  } finally {
    await c.end();
  }
}

describe("node-postgres", () => {
  it("workload with text results", async () => {
    const report = await workload({});
    expectWorkload(report, JSON.stringify(report));
  });

  it("binary results (`binary: true`): text columns masked, ints read, a denial and the session goes on", async () => {
    // node-postgres' binary mode is partial: pg-protocol decodes each value as a UTF-8 string
    // before its binary parsers see it (numeric 12.50 reads as 12.51 on a direct connection) and
    // dates, uuids, jsonb and text[] have no binary parser; the columns it reads well are compared.
    const c = new pg.Client({
      host: fx.guard.host,
      port: fx.guard.port,
      user: "agent",
      database: "airlock",
      binary: true,
    } as pg.ClientConfig);
    await c.connect();
    try {
      for (let i = 0; i < 3; i++) {
        const r = await c.query({
          name: "bin",
          text: "SELECT id, name, email, note FROM customers WHERE id = $1",
          values: [1],
        });
        const row = r.rows[0];
        expect(row).toMatchObject({ id: 1, name: "Ann", note: expect.stringMatching(/^card /) });
        expect(row.email).not.toBe("ann@example.com");
        const all = JSON.stringify(r.rows);
        for (const secret of SECRETS) expect(all).not.toContain(secret);
      }
      const denied = await errorOf(c.query("DELETE FROM customers"));
      expectDenied(denied, "denied DELETE");
      expect((await c.query("SELECT count(*)::int AS n FROM customers")).rows[0].n).toBe(1);
    } finally {
      await c.end();
    }
  });
});
