// The regression differential: PostgreSQL's own regression scripts run statement by statement on
// a scratch database of a real server; before each statement runs, PostgreSQL is asked in a
// read-only transaction (or a read-only savepoint, inside the script's own transactions) whether
// it writes (SQLSTATE 25006), and the statement is judged as the guard would judge it under a
// `statements: [read]` rule, with the catalog of the database as it is at that point.
//
// - false allow: PostgreSQL refuses it as a write, the read rule allows it. Must be zero.
// - false deny: PostgreSQL runs it read-only without error and its kind is a read (select, show,
//   explain, copyTo), but the guard refuses it. Reported, by reason.
// Not probed: transaction control, PREPARE/DEALLOCATE/DISCARD/CLOSE (not transactional), inline
// COPY FROM STDIN, and statements in an aborted transaction. DECLARE is probed by running its
// query, since FETCH is what runs it (and FETCH is judged as the DECLARE).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { CatalogCache } from "../../../sidecar/src/sql/catalog.ts";
import { type ClassifiedStatement, classifySync } from "../../../sidecar/src/sql/index.ts";
import { parserFor } from "../../../sidecar/src/sql/parser.ts";
import type { PostgresServer } from "../../harness/postgres.ts";
import { clientQuery, judgeWithCatalog } from "../catalog-support.ts";
import { splitScript } from "./split.ts";

export interface Finding {
  file: string;
  line: number;
  sql: string;
  kind: string;
  reason: string;
  /** Opaque functions the catalog judgement found. */
  opaque: string[];
}

export interface DifferentialReport {
  files: number;
  statements: number;
  probed: number;
  /** PostgreSQL refused them in read-only mode. */
  writes: number;
  /** Ran read-only without error, with a read kind. */
  plainReads: number;
  allowedByReadRule: number;
  falseAllows: Finding[];
  falseDenies: Finding[];
  /** False denies by the reason's first words. */
  falseDeniesByReason: Record<string, number>;
  falseDeniesByKind: Record<string, number>;
  /** False denies by opaque function (a statement counts once per function). */
  falseDeniesByFunction: Record<string, number>;
  catalogLoads: number;
  ms: number;
}

const READ_KINDS = new Set(["select", "show", "explain", "copyTo"]);
const NOT_PROBED = new Set(["prepare", "deallocate", "discard", "closeCursor"]);
const DECLARE_QUERY = /^\s*declare\s+[\s\S]*?\bcursor\b[\s\S]*?\bfor\b([\s\S]*)$/i;

type Status = "I" | "T" | "E";

function parses(sql: string): boolean {
  return classifySync(sql).errors.length === 0;
}

/** Runs one script through the differential on a fresh database cloned from `template`. */
async function runFile(
  server: PostgresServer,
  dir: string,
  file: string,
  database: string,
  report: DifferentialReport,
  cache: CatalogCache,
): Promise<void> {
  const script = readFileSync(join(dir, file), "utf8");
  const statements = splitScript(script, parses);
  const client = new pg.Client({
    host: server.socketDir,
    port: server.port,
    user: server.superuser,
    database,
  });
  // The script's own notices and errors are expected; only the codes matter.
  client.on("notice", () => {});
  client.on("error", () => {});
  await client.connect();
  const tx: { status: Status } = { status: "I" };
  (client as unknown as { connection: NodeJS.EventEmitter }).connection.on(
    "readyForQuery",
    (m: { status: string }) => {
      tx.status = m.status as Status;
    },
  );
  const run = async (sql: string): Promise<string> => {
    try {
      await client.query(sql);
      return "ok";
    } catch (err) {
      return (err as { code?: string }).code ?? "error";
    }
  };
  await run("SET statement_timeout = '20s'");
  // The catalog is read on a connection of its own: the script's may sit in an aborted
  // transaction. It sees committed definitions only (a function created inside the script's open
  // transaction is unknown to it, hence opaque: a false deny at worst).
  const catalogClient = new pg.Client({
    host: server.socketDir,
    port: server.port,
    user: server.superuser,
    database,
  });
  await catalogClient.connect();
  // pg_get_expr and pg_get_ruledef lock the relation: the script's own open transaction may hold
  // it exclusively, and waiting would deadlock the two connections. A catalog that cannot be read
  // means the statement is refused (fail closed), counted like any other denial.
  catalogClient.on("error", () => {});
  await catalogClient.query("SET lock_timeout = '1s'");
  const query = clientQuery(catalogClient);
  // Judged with the server's own grammar, as the guard does (parser.ts).
  const version = (await client.query("SHOW server_version")).rows[0]?.server_version;
  const parser = await parserFor(String(version));
  const prepared = new Map<string, readonly ClassifiedStatement[]>();
  const cursors = new Map<string, readonly ClassifiedStatement[]>();
  let dirty = true;
  try {
    for (const st of statements) {
      report.statements++;
      if (st.copyFromStdin) continue;
      const c = classifySync(st.sql, parser);
      const top = c.statements.filter((s) => !s.nested);
      const kinds = c.statements.map((s) => s.kind);
      const effect = top[0]?.effect;

      // 1. Ask PostgreSQL whether it writes.
      let outcome: string | undefined;
      let ranAlready = false;
      const probable =
        tx.status !== "E" &&
        c.errors.length === 0 &&
        !kinds.includes("transaction") &&
        !kinds.includes("twoPhaseCommit") &&
        !(effect && NOT_PROBED.has(effect.kind));
      if (probable) {
        const probeSql =
          effect?.kind === "declareCursor" ? (DECLARE_QUERY.exec(st.sql)?.[1] ?? st.sql) : st.sql;
        if (tx.status === "I") {
          outcome = await run(`BEGIN READ ONLY;\n${probeSql}`);
          await run("ROLLBACK");
          if (outcome === "25001") {
            // Cannot run in a transaction block: ask with the session read-only instead.
            await run("SET default_transaction_read_only = on");
            outcome = await run(probeSql);
            await run("RESET default_transaction_read_only");
            ranAlready = outcome === "ok" && effect?.kind !== "declareCursor";
          }
        } else {
          await run("SAVEPOINT airlock_probe; SET LOCAL transaction_read_only = on");
          outcome = await run(probeSql);
          await run("ROLLBACK TO SAVEPOINT airlock_probe; RELEASE SAVEPOINT airlock_probe");
        }
        report.probed++;
      }

      // 2. Judge it as the guard would, under a read rule, with the catalog as it is now.
      const reads = c.errors.length === 0 && c.statements.every((s) => READ_KINDS.has(s.kind));
      let unavailable: string | undefined;
      if (reads && dirty) {
        try {
          await cache.get(database, query, { parser });
          dirty = false;
        } catch (err) {
          unavailable = err instanceof Error ? err.message : String(err);
        }
      }
      const catalog = cache.peek(database);
      const judgement =
        unavailable || !catalog
          ? { decision: { action: "deny" as const, reason: `the catalog could not be read: ${unavailable}` } }
          : judgeWithCatalog(st.sql, catalog, undefined, { prepared, cursors, parser });
      const allowed = judgement.decision.action === "allow";
      if (allowed) report.allowedByReadRule++;
      const finding = (): Finding => ({
        file,
        line: st.line,
        sql: st.sql.length > 300 ? `${st.sql.slice(0, 300)}...` : st.sql,
        kind: kinds.join(","),
        reason: judgement.decision.reason,
        opaque: [
          ...new Set(
            ("calls" in judgement ? (judgement.calls?.statements ?? []) : []).flatMap((x) =>
              x.opaque.map((o) => o.function),
            ),
          ),
        ],
      });
      if (outcome === "25006") {
        report.writes++;
        if (allowed) report.falseAllows.push(finding());
      } else if (outcome === "ok" && reads) {
        report.plainReads++;
        if (!allowed) {
          const f = finding();
          report.falseDenies.push(f);
          for (const fn of f.opaque)
            report.falseDeniesByFunction[fn] = (report.falseDeniesByFunction[fn] ?? 0) + 1;
          const why = judgement.decision.reason.replace(/\s+/g, " ").slice(0, 80);
          report.falseDeniesByReason[why] = (report.falseDeniesByReason[why] ?? 0) + 1;
          const kind = kinds.join(",");
          report.falseDeniesByKind[kind] = (report.falseDeniesByKind[kind] ?? 0) + 1;
        }
      }

      // 3. Run it for real, and track what the guard tracks.
      const result = ranAlready ? "ok" : await run(st.sql);
      if (result === "ok") {
        if (effect?.kind === "prepare") prepared.set(effect.name, plain(c.statements));
        else if (effect?.kind === "declareCursor") cursors.set(effect.name, plain(c.statements));
        else if (effect?.kind === "deallocate") {
          if (effect.name === undefined) prepared.clear();
          else prepared.delete(effect.name);
        } else if (effect?.kind === "closeCursor") {
          if (effect.name === undefined) cursors.clear();
          else cursors.delete(effect.name);
        } else if (effect?.kind === "discard") {
          prepared.clear();
          cursors.clear();
        }
      }
      // Anything but a plain read may have changed the catalog: re-check it before the next read.
      if (!reads) dirty = true;
    }
  } finally {
    await client.end().catch(() => {});
    await catalogClient.end().catch(() => {});
  }
}

function plain(statements: readonly ClassifiedStatement[]): ClassifiedStatement[] {
  return statements.map(({ effect: _e, ...rest }) => rest);
}

export async function runDifferential(
  server: PostgresServer,
  dir: string,
  files: readonly string[],
  opts: { setup?: string; log?: (line: string) => void } = {},
): Promise<DifferentialReport> {
  const started = Date.now();
  const report: DifferentialReport = {
    files: 0,
    statements: 0,
    probed: 0,
    writes: 0,
    plainReads: 0,
    allowedByReadRule: 0,
    falseAllows: [],
    falseDenies: [],
    falseDeniesByReason: {},
    falseDeniesByKind: {},
    falseDeniesByFunction: {},
    catalogLoads: 0,
    ms: 0,
  };
  const cache = new CatalogCache();
  // The scripts expect test_setup.sql's tables: run it once into a template database.
  const template = "regress_template";
  await server.sql(`CREATE DATABASE ${template}`, { database: "postgres" });
  if (opts.setup) {
    const setupReport = {
      ...report,
      falseAllows: [],
      falseDenies: [],
      falseDeniesByReason: {},
      falseDeniesByKind: {},
      falseDeniesByFunction: {},
    };
    await runFile(server, dir, opts.setup, template, setupReport, cache);
  }
  let n = 0;
  for (const file of files) {
    const database = `regress_${n++}`;
    await server.sql(`CREATE DATABASE ${database} TEMPLATE ${template}`, { database: "postgres" });
    const before = report.statements;
    await runFile(server, dir, file, database, report, cache);
    report.files++;
    opts.log?.(
      `${file}: ${report.statements - before} statements, ${report.falseAllows.length} false allows so far`,
    );
    await server.sql(`DROP DATABASE ${database} WITH (FORCE)`, { database: "postgres" }).catch(() => {});
  }
  report.catalogLoads = cache.loads;
  report.ms = Date.now() - started;
  return report;
}
