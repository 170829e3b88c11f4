// The regression differential (regress/differential.ts) over PostgreSQL's own regression SQL,
// against a real PostgreSQL 15: no statement PostgreSQL refuses as a write in a read-only
// transaction may be allowed by a `statements: [read]` rule. CI runs the fixed subset below;
// `npm run test:regress` runs every script (AIRLOCK_REGRESS=all), minutes on these machines.
// The counts (and false denies of plain reads, by reason) are printed and written to
// $AIRLOCK_REGRESS_REPORT when set.
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSqlParser } from "../../sidecar/src/sql/index.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type DifferentialReport, runDifferential } from "./regress/differential.ts";

const DIR = join(import.meta.dirname, "regress", "sql");
const SETUP = "test_setup.sql";

/** Scripts heavy in functions, views, rules, domains, operators, cursors and prepared statements. */
const CI_SUBSET = [
  "advisory_lock.sql",
  "create_function_sql.sql",
  "create_operator.sql",
  "create_view.sql",
  "domain.sql",
  "portals.sql",
  "prepare.sql",
  "rowsecurity.sql",
  "select_into.sql",
  "sequence.sql",
  "transactions.sql",
  "updatable_views.sql",
  "with.sql",
];

const all = process.env.AIRLOCK_REGRESS === "all";
const files = all
  ? readdirSync(DIR)
      .filter((f) => f.endsWith(".sql") && f !== SETUP)
      .sort()
  : CI_SUBSET;

let server: PostgresServer;
let report: DifferentialReport;

beforeAll(async () => {
  await loadSqlParser();
  server = await startPostgres({ settings: { max_prepared_transactions: 10 } });
}, 180_000);

afterAll(async () => {
  await server?.stop();
});

describe(`regression differential (${all ? "every script" : `${CI_SUBSET.length} scripts`})`, () => {
  it(
    "no statement PostgreSQL refuses as a write is allowed by a read rule",
    async () => {
      report = await runDifferential(server, DIR, files, {
        setup: SETUP,
        ...(process.env.AIRLOCK_REGRESS_LOG ? { log: (l: string) => console.log(l) } : {}),
      });
      const { falseAllows, falseDenies, ...counts } = report;
      const summary = {
        ...counts,
        falseAllows: falseAllows.length,
        falseDenies: falseDenies.length,
        falseDeniesByFunction: Object.fromEntries(
          Object.entries(report.falseDeniesByFunction)
            .sort((a, b) => b[1] - a[1])
            .slice(0, 25),
        ),
        falseDeniesByReason: Object.fromEntries(
          Object.entries(report.falseDeniesByReason)
            .sort((a, b) => b[1] - a[1])
            .slice(0, 15),
        ),
      };
      console.log(`regression differential: ${JSON.stringify(summary, null, 2)}`);
      if (process.env.AIRLOCK_REGRESS_REPORT)
        writeFileSync(process.env.AIRLOCK_REGRESS_REPORT, JSON.stringify(report, null, 2));
      // The oracle must have had something to say, or the assertion below proves nothing.
      expect(report.writes).toBeGreaterThan(50);
      expect(report.plainReads).toBeGreaterThan(500);
      expect(falseAllows).toEqual([]);
    },
    all ? 3_600_000 : 900_000,
  );
});
