// Masking of result rows through the PostgreSQL guard: by column name and by detector, in the
// simple and the extended protocol (including prepared statements run again and again), binary
// results masked per type (or refused where a type cannot carry a masked value), values echoed by errors redacted, COPY TO refused.
import { execFile } from "node:child_process";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import {
  bindMessage,
  describeMessage,
  errorOf,
  executeMessage,
  parseMessage,
  RawClient,
  rowValues,
  syncMessage,
} from "./raw-client.ts";
import { type GuardedPostgres, type PolicyOptions, pgPolicy, startGuard } from "./support.ts";

let server: PostgresServer;
const guards: GuardedPostgres[] = [];
const CARD = "4111 1111 1111 1111";
/** node-postgres asks for binary results with `binary: true` (missing from @types/pg). */
const BINARY: pg.ClientConfig & { binary: boolean } = { binary: true };

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card_number text, note text, signup date);
    INSERT INTO customers VALUES
      (1, 'Ann', 'ann@example.com', '${CARD}', 'call me at ann.b@example.org', '2024-01-02'),
      (2, 'Bob', 'bob@example.net', '5500 0000 0000 0004', NULL, '2024-03-04');
    GRANT SELECT ON customers TO airlock_scram;
    -- Views that rename, wrap or re-expose the card column, and one that does not touch it.
    CREATE VIEW contacts AS SELECT id, name, card_number AS payment FROM customers;
    CREATE VIEW contacts_upper AS SELECT id, upper(payment) AS p FROM contacts;
    CREATE MATERIALIZED VIEW payments AS SELECT id, card_number AS pan FROM customers;
    CREATE VIEW names AS SELECT id, name FROM customers;
    GRANT SELECT ON contacts, contacts_upper, payments, names TO airlock_scram;
    -- Functions that read the card column without the statement naming it.
    CREATE FUNCTION card_of(i int) RETURNS text LANGUAGE sql STABLE AS 'SELECT card_number FROM customers WHERE id = i';
    -- Types defined in the database whose binary form is text.
    CREATE EXTENSION citext;
    CREATE TYPE mood AS ENUM ('calm', 'card 4111 1111 1111 1111');
    CREATE TABLE typed (id int, m mood, handle citext, handles citext[], addr inet);
    INSERT INTO typed VALUES (1, 'card 4111 1111 1111 1111', 'ann.b@example.org', ARRAY['x', 'ann.b@example.org'], '10.0.0.1');
    GRANT SELECT ON typed TO airlock_scram;
    CREATE FUNCTION all_cards() RETURNS TABLE (who text, pan text) LANGUAGE sql STABLE AS 'SELECT name, card_number FROM customers';
  `);
});

afterAll(async () => {
  for (const g of guards) await g.close();
  await server?.stop();
});

const READ: PolicyOptions["rules"] = [
  { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction"] } } },
];

async function guard(masking: PolicyOptions["masking"]) {
  const g = await startGuard(pgPolicy(server, { rules: READ, masking }), { credential: server.users.scram });
  guards.push(g);
  return g;
}

async function client(g: GuardedPostgres, config: pg.ClientConfig = {}) {
  const c = new pg.Client({ host: "127.0.0.1", port: g.port, user: "agent", database: "airlock", ...config });
  await c.connect();
  return c;
}

/** Runs each statement and expects no row of its result to contain `secret`. */
async function expectNoLeak(c: pg.Client, statements: string[], secret = "4111") {
  for (const sql of statements) {
    const r = await c.query(sql);
    expect({ sql, value: JSON.stringify(r.rows) }).toEqual({
      sql,
      value: expect.not.stringContaining(secret),
    });
  }
}

const COLUMNS_AND_EMAIL: PolicyOptions["masking"] = [
  { name: "cards", columns: ["card_number"], strategy: "partial" },
  { name: "emails", detectors: ["email"], strategy: "redact" },
];

describe("result masking", () => {
  it("simple protocol: columns by name, detectors on every text value", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const c = await client(g);
    try {
      const r = await c.query(
        'SELECT id, name, email, card_number AS "CARD_NUMBER", note FROM customers ORDER BY id',
      );
      const [ann, bob] = r.rows;
      expect(ann.name).toBe("Ann");
      expect(ann.email).not.toContain("ann@example.com");
      expect(ann.CARD_NUMBER).toMatch(/1111$/);
      expect(ann.CARD_NUMBER).not.toContain("4111");
      expect(ann.note).toMatch(/^call me at /);
      expect(ann.note).not.toContain("ann.b@example.org");
      expect(bob.note).toBeNull();
    } finally {
      await c.end();
    }
    const event = g.audit.at(-1);
    expect(event?.masked).toEqual({ column: 2, email: 3 });
    const m = await g.metrics.registry.getSingleMetricAsString("airlock_masked_values_total");
    expect(m).toMatch(/detector="email"\} 3/);
  });

  it("extended protocol and prepared statements executed repeatedly", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const c = await client(g);
    try {
      for (let i = 0; i < 3; i++) {
        const r = await c.query({
          name: "one",
          text: "SELECT card_number, email FROM customers WHERE id = $1",
          values: [1],
        });
        expect(r.rows[0].card_number).not.toContain("4111");
        expect(r.rows[0].email).not.toContain("@example.com");
      }
      const r = await c.query("SELECT upper(email) AS e FROM customers WHERE id = $1", [2]);
      expect(r.rows[0].e).not.toContain("BOB@EXAMPLE.NET");
    } finally {
      await c.end();
    }
  });

  it("aliases, subqueries, expressions and whole-row values cannot unmask a column", async () => {
    const g = await guard([{ name: "cards", columns: ["card_number"], strategy: "redact" }]);
    const c = await client(g);
    try {
      await expectNoLeak(c, [
        "SELECT card_number AS x FROM customers WHERE id = 1",
        "SELECT x FROM (SELECT card_number AS x FROM customers) s LIMIT 1",
        "WITH s AS (SELECT card_number AS y FROM customers WHERE id = 1) SELECT y FROM s",
        "SELECT upper(card_number) AS u FROM customers WHERE id = 1",
        "SELECT card_number || '' AS v FROM customers WHERE id = 1",
        "SELECT row_to_json(c)::text AS j FROM customers c WHERE id = 1",
        "SELECT c::text AS r FROM customers c WHERE id = 1",
      ]);
      // Unrelated columns and aggregates stay readable.
      expect(
        (await c.query("SELECT id, name, count(*) OVER () AS n FROM customers WHERE id = 1")).rows,
      ).toEqual([{ id: 1, name: "Ann", n: "1" }]);
    } finally {
      await c.end();
    }
  });

  it("views and materialized views that rename a masked column cannot unmask it", async () => {
    const g = await guard([{ name: "cards", columns: ["card_number"], strategy: "redact" }]);
    const c = await client(g);
    try {
      await expectNoLeak(c, [
        "SELECT payment FROM contacts WHERE id = 1",
        "SELECT p FROM contacts_upper WHERE id = 1",
        "SELECT pan FROM payments WHERE id = 1",
        "SELECT * FROM contacts WHERE id = 1",
      ]);
      // A view that never reads the masked column stays readable.
      expect((await c.query("SELECT id, name FROM names WHERE id = 1")).rows).toEqual([
        { id: 1, name: "Ann" },
      ]);
    } finally {
      await c.end();
    }
  });

  it("database functions that read a masked column cannot unmask it", async () => {
    const g = await guard([{ name: "cards", columns: ["card_number"], strategy: "redact" }]);
    const c = await client(g);
    try {
      await expectNoLeak(c, [
        "SELECT card_of(1) AS v",
        "SELECT pan FROM all_cards()",
        "SELECT * FROM public.all_cards()",
      ]);
      // Built-in functions over unmasked columns stay readable.
      expect((await c.query("SELECT upper(name) AS n FROM customers WHERE id = 1")).rows).toEqual([
        { n: "ANN" },
      ]);
    } finally {
      await c.end();
    }
  });

  it("psql sees masked values", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const out = await new Promise<string>((resolve) =>
      execFile(
        "psql",
        ["-X", "-A", "-t", g.url(), "-c", "SELECT card_number, email FROM customers WHERE id = 1"],
        (_e, stdout, stderr) => resolve(stdout + stderr),
      ),
    );
    expect(out).not.toContain("4111");
    expect(out).not.toContain("ann@example.com");
  });

  it("an Execute without a Describe is still masked (the sidecar describes for itself)", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      await c.write(
        Buffer.concat([
          parseMessage("s", "SELECT card_number FROM customers WHERE id = $1"),
          bindMessage("", "s", ["1"]),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const msgs = await c.until("Z");
      expect(msgs.map((m) => m.type).join("")).toBe("12DCZ");
      expect(msgs[2]?.payload.toString()).not.toContain("4111");
    } finally {
      c.close();
    }
  });

  it("masking turned on by a policy change covers statements described before it", async () => {
    // Without masking the guard does not record result columns; once a reload turns masking on,
    // a statement described earlier is described again before its rows flow.
    const g = await guard(undefined);
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      await c.write(
        Buffer.concat([
          parseMessage("s", "SELECT card_number FROM customers WHERE id = $1"),
          describeMessage("S", "s"),
          syncMessage(),
        ]),
      );
      expect((await c.until("Z")).map((m) => m.type).join("")).toBe("1tTZ");
      const masked = pgPolicy(server, {
        rules: READ,
        masking: [{ name: "cards", columns: ["card_number"], strategy: "redact" }],
      });
      expect(g.policies.update([masked]).accepted).toBe(true);
      await c.write(Buffer.concat([bindMessage("", "s", ["1"]), executeMessage(""), syncMessage()]));
      const msgs = await c.until("Z");
      expect(msgs.map((m) => m.type).join("")).toBe("2DCZ");
      expect(msgs[1]?.payload.toString()).not.toContain("4111");
    } finally {
      c.close();
    }
  });

  it("pipelined unnamed statements with different columns are each masked by their own columns", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      await c.write(
        Buffer.concat([
          parseMessage("", "SELECT name, card_number FROM customers WHERE id = 1"),
          bindMessage("", "", []),
          executeMessage(""),
          parseMessage("", "SELECT card_number AS name, name AS card_number FROM customers WHERE id = 2"),
          bindMessage("", "", []),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const msgs = await c.until("Z");
      expect(msgs.map((m) => m.type).join("")).toBe("12DC12DCZ");
      const rows = msgs.filter((m) => m.type === "D").map(rowValues);
      expect(rows[0]?.[0]).toBe("Ann");
      expect(rows[0]?.[1]).not.toContain("4111");
      // Renamed columns: masked by where they come from, and by the name they carry.
      expect(rows[1]?.[0]).not.toContain("5500");
      expect(rows[1]?.[1]).not.toBe("Bob");
    } finally {
      c.close();
    }
  });

  it("binary text-family results are masked as text; a ruled column whose type cannot carry a mask is refused", async () => {
    const g = await guard([{ name: "cards", columns: ["card_number"], strategy: "redact" }]);
    const c = await client(g, BINARY);
    try {
      const masked = await c.query("SELECT card_number, name FROM customers WHERE id = $1", [1]);
      expect(masked.rows[0].card_number).not.toContain("4111");
      expect(masked.rows[0].name).toBe("Ann");
      // length(card_number) is derived from the covered column: int4 cannot carry a masked value.
      await expect(
        c.query("SELECT length(card_number) AS n FROM customers WHERE id = $1", [1]),
      ).rejects.toMatchObject({
        code: "42501",
        message: expect.stringMatching(/column "n".*cannot carry a masked value.*n::text/),
      });
      const ok = await c.query("SELECT id FROM customers WHERE id = $1", [2]);
      expect(ok.rows.length).toBe(1);
    } finally {
      await c.end();
    }
    // Raw: a named statement described first, then bound with per-column formats (card binary).
    const r = await RawClient.connect(g.port);
    try {
      await r.startup();
      await r.write(
        Buffer.concat([
          parseMessage("s", "SELECT name, card_number FROM customers ORDER BY id"),
          describeMessage("S", "s"),
          bindMessage("", "s", [], [0, 1]),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const msgs = await r.until("Z");
      expect(msgs.map((m) => m.type).join("")).toBe("1tT2DDCZ");
      const rows = msgs.filter((m) => m.type === "D").map(rowValues);
      expect(rows.map((x) => x[0])).toEqual(["Ann", "Bob"]);
      for (const x of rows) expect(x[1]).not.toMatch(/4111|5500/);
    } finally {
      r.close();
    }
  });

  it("with detectors on, binary values are scanned per type: text masked, numbers checked, unknown types refused", async () => {
    const g = await guard([{ name: "pii", detectors: ["email", "creditCard"], strategy: "redact" }]);
    const c = await client(g, BINARY);
    try {
      const r = await c.query(
        "SELECT note, signup, id, ARRAY[note, name] AS a FROM customers WHERE id = $1",
        [1],
      );
      expect(r.rows[0].note).toMatch(/^call me at /);
      expect(r.rows[0].note).not.toContain("ann.b@");
      expect(r.rows[0].id).toBe(1);
      expect(r.rows[0].signup).not.toBeNull();
      expect(JSON.stringify(r.rows[0].a)).not.toContain("ann.b@");
      const numbers = await c.query("SELECT $1::int8 AS n, 12.50::numeric AS m", ["42"]);
      expect(numbers.rows.length).toBe(1);
      // A type the guard does not read in binary is refused before any row, with the cast that works.
      await expect(c.query("SELECT $1::inet AS addr", ["10.0.0.1"])).rejects.toMatchObject({
        code: "42501",
        message: expect.stringMatching(/column "addr" \(type oid 869\).*addr::text/),
      });
      const asText = await c.query("SELECT $1::inet::text AS addr", ["10.0.0.1"]);
      expect(asText.rows[0].addr).toBe("10.0.0.1/32");
    } finally {
      await c.end();
    }
    // Enums and citext (types defined in the database) in binary: masked as text; inet refused.
    const t = await RawClient.connect(g.port);
    try {
      await t.startup();
      await t.write(
        Buffer.concat([
          parseMessage("", "SELECT m, handle, handles FROM typed"),
          bindMessage("", "", [], [1]),
          executeMessage(""),
          parseMessage("", "SELECT addr FROM typed"),
          bindMessage("", "", [], [1]),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const msgs = await t.until("Z");
      expect(msgs.map((m) => m.type).join("")).toBe("12DC1EZ");
      const raw = msgs.find((m) => m.type === "D")?.payload ?? Buffer.alloc(0);
      for (const secret of ["4111", "ann.b@"]) expect(raw.toString("latin1")).not.toContain(secret);
      const [m, handle] = rowValues(msgs[2] as (typeof msgs)[number]);
      expect(m).toMatch(/^card /);
      expect(handle).not.toBe("ann.b@example.org");
      expect(errorOf(msgs[5])?.message).toMatch(/column "addr" \(type oid 869\)/);
    } finally {
      t.close();
    }
    // A card number held in a bigint cannot be masked in binary: the session ends, saying why.
    const r = await RawClient.connect(g.port);
    try {
      await r.startup();
      await r.write(
        Buffer.concat([
          parseMessage("", "SELECT 4111111111111111::int8 AS pan"),
          bindMessage("", "", [], [1]),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const msgs = await r.closedAfter();
      expect(msgs.some((m) => m.type === "D")).toBe(false);
      const err = errorOf(msgs.find((m) => m.type === "E"));
      expect(err?.code).toBe("42501");
      expect(err?.message).toMatch(/column "pan" \(int8, binary format\) needs masking.*pan::text/);
    } finally {
      r.close();
    }
  });

  it("values echoed by errors are redacted", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const c = await client(g);
    try {
      const err = await c.query("SELECT card_number::int FROM customers WHERE id = 1").then(
        () => undefined,
        (e: { code: string; message: string }) => e,
      );
      expect(err?.code).toBe("22P02");
      expect(err?.message).not.toContain("4111");
      // The statement reads a masked column: the server's text is withheld, the code stays.
      expect(err?.message).toMatch(/withheld by Airlock \(SQLSTATE 22P02\)/);
      // A data error of a statement that reads no masked column keeps its message, values redacted.
      const own = await c.query("SELECT name::int FROM customers WHERE id = 1").then(
        () => undefined,
        (e: { code: string; message: string }) => e,
      );
      expect(own?.code).toBe("22P02");
      expect(own?.message).toMatch(/invalid input syntax for type integer: "\[REDACTED\]"/);
    } finally {
      await c.end();
    }
  });

  it("COPY t (columns) TO STDOUT is masked row by row, in text and CSV (psql's copy)", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const out = await new Promise<string>((resolve) =>
      execFile(
        "psql",
        [
          "-X",
          g.url(),
          "-c",
          "\\copy customers (id, name, email, card_number, note) to stdout",
          "-c",
          "\\copy customers (id, card_number, note) to stdout with (format csv, header)",
        ],
        (_e, stdout, stderr) => resolve(stdout + stderr),
      ),
    );
    expect(out).not.toContain("4111");
    expect(out).not.toContain("ann@example.com");
    expect(out).not.toContain("ann.b@example.org");
    const lines = out.trim().split("\n");
    expect(lines[0]).toMatch(/^1\tAnn\t[^\t]+\t[^\t]+\tcall me at \S+$/);
    expect(lines[1]).toMatch(/^2\tBob\t/);
    expect(lines[1]).toMatch(/\t\\N$/); // NULL stays NULL
    expect(lines[2]).toBe("id,card_number,note");
    expect(lines[3]).toMatch(/^1,"[^"]+","call me at \S+"$/);
  });

  it("COPY TO and binary cursors are refused while masking applies", async () => {
    const g = await guard(COLUMNS_AND_EMAIL);
    const c = await client(g);
    try {
      await expect(c.query("COPY customers TO STDOUT")).rejects.toMatchObject({
        code: "42501",
        message: expect.stringMatching(/COPY \.\.\. TO is masked only for a table with a column list/),
      });
      await c.query("BEGIN");
      await expect(
        c.query("DECLARE cur BINARY CURSOR FOR SELECT card_number FROM customers"),
      ).rejects.toMatchObject({
        code: "42501",
      });
      await c.query("ROLLBACK");
      await c.query("BEGIN");
      await c.query("DECLARE cur CURSOR FOR SELECT card_number FROM customers ORDER BY id");
      const fetched = await c.query("FETCH 1 FROM cur");
      expect(fetched.rows[0].card_number).not.toContain("4111");
      await c.query("COMMIT");
    } finally {
      await c.end();
    }
  });
});

describe("notification masking", () => {
  it("masks NOTIFY payloads from other sessions with the detectors, and counts them", async () => {
    const rules: PolicyOptions["rules"] = [
      ...(READ ?? []),
      // LISTEN classifies as "other": allowed here on purpose, for this test only.
      { name: "listen", action: "allow", match: { sql: { statements: ["other"] } } },
    ];
    const g = await startGuard(pgPolicy(server, { rules, masking: COLUMNS_AND_EMAIL }), {
      credential: server.users.scram,
    });
    guards.push(g);
    const c = await client(g);
    try {
      const got = new Promise<pg.Notification>((resolve) => c.on("notification", resolve));
      await c.query("LISTEN airlock_test");
      // Another session (straight to the server) notifies with an address in the payload.
      await server.sql("NOTIFY airlock_test, 'order 7 for ann@example.com shipped'");
      const n = await got;
      expect(n.channel).toBe("airlock_test");
      expect(n.payload).toMatch(/^order 7 for .* shipped$/);
      expect(n.payload).not.toContain("ann@example.com");
      const m = await g.metrics.registry.getSingleMetricAsString("airlock_masked_values_total");
      expect(m).toMatch(/detector="email"} [1-9]/);
    } finally {
      await c.end();
    }
  });
});
