// Load for the fault suite: node-postgres clients looping over simple and extended statements and
// short transactions, keep-alive HTTP clients, each until its connection ends; and PostgreSQL's own
// account of what it received (log_statement=all, logging_collector into the data directory).
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import pg from "pg";
import type { PostgresServer } from "../harness/postgres.ts";

/** Every agent statement starts with it, so the server log tells them from the sidecar's own. */
export const MARK = "/*load*/";

/** PostgreSQL settings that make the server log one line per simple Query or Execute. */
export const STATEMENT_LOG = {
  log_statement: "'all'",
  logging_collector: "on",
  log_directory: "'log'",
  log_filename: "'postgresql.log'",
} as const;

export function serverLog(server: PostgresServer): string {
  return readFileSync(join(server.dataDir, "log", "postgresql.log"), "utf8");
}

/** What PostgreSQL logged of the agents' statements (one line per simple Query or Execute). */
export function serverStatements(server: PostgresServer): string[] {
  return serverLog(server)
    .split("\n")
    .filter((l) => /LOG: {2}(statement|execute [^:]+): \/\*load\*\//.test(l));
}

/** The table the load writes to, and the agent role's grants on it. */
export const loadTable = (role: string) =>
  `CREATE TABLE fault_load (id bigint PRIMARY KEY, client int NOT NULL); GRANT SELECT, INSERT, UPDATE ON fault_load TO ${role}`;

export interface PgTally {
  acked: number;
  committedIds: number[];
  ended?: { code: string | undefined; message: string; inTransaction: boolean };
}

let nextId = 1;

/** A client looping over simple and extended statements and short transactions until its session ends. */
export async function pgWorker(
  target: { port: number; database: string },
  client: number,
  stop: () => boolean,
): Promise<PgTally> {
  const t: PgTally = { acked: 0, committedIds: [] };
  const c = new pg.Client({ host: "127.0.0.1", port: target.port, user: "agent", database: target.database });
  let idleError: Error | undefined;
  c.on("error", (e) => {
    idleError ??= e;
  });
  await c.connect();
  let inTransaction = false;
  const q = async (text: string, values?: unknown[], name?: string) => {
    await c.query({ text: `${MARK} ${text}`, ...(values ? { values } : {}), ...(name ? { name } : {}) });
    t.acked++;
  };
  try {
    for (let k = 0; !stop() && !idleError; k++) {
      const id = nextId++;
      switch (k % 4) {
        case 0:
          await q(`INSERT INTO fault_load (id, client) VALUES (${id}, ${client})`);
          t.committedIds.push(id);
          break;
        case 1:
          await q("INSERT INTO fault_load (id, client) VALUES ($1, $2)", [id, client], "ins");
          t.committedIds.push(id);
          break;
        case 2:
          await q("SELECT count(*) FROM fault_load WHERE client = $1", [client]);
          break;
        default: {
          const id2 = nextId++;
          await q("BEGIN");
          inTransaction = true;
          await q("INSERT INTO fault_load (id, client) VALUES ($1, $2)", [id, client]);
          await q(`INSERT INTO fault_load (id, client) VALUES (${id2}, ${client})`);
          await q("COMMIT");
          inTransaction = false;
          t.committedIds.push(id, id2);
        }
      }
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    t.ended = { code: err.code, message: err.message, inTransaction };
  }
  if (!t.ended && idleError) {
    const err = idleError as Error & { code?: string };
    t.ended = { code: err.code, message: err.message, inTransaction };
  }
  await c.end().catch(() => {});
  return t;
}

export interface HttpTally {
  sent: number;
  ok: number;
  failed?: string;
}

/** A keep-alive HTTP client alternating GET and POST until the sidecar stops answering. */
export async function httpWorker(port: number, client: number, stop: () => boolean): Promise<HttpTally> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const t: HttpTally = { sent: 0, ok: 0 };
  const one = (k: number) =>
    new Promise<number>((resolve, reject) => {
      const post = k % 2 === 1;
      const req = request(
        {
          host: "127.0.0.1",
          port,
          path: `/items/${client}/${k}`,
          method: post ? "POST" : "GET",
          agent,
          headers: post ? { "content-type": "application/json" } : {},
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(post ? JSON.stringify({ k }) : undefined);
    });
  try {
    for (let k = 0; !stop(); k++) {
      t.sent++;
      const status = await one(k);
      if (status !== 200) throw new Error(`status ${status}`);
      t.ok++;
    }
  } catch (e) {
    t.failed = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
  agent.destroy();
  return t;
}

export interface Load {
  /** Each worker ends its loop at its next turn. */
  stop(): void;
  pg: Promise<PgTally>[];
  http: Promise<HttpTally>[];
}

/** Six PostgreSQL workers on `db` and four HTTP workers on `apiPort`, running until stop(). */
export function startLoad(db: { port: number; database: string }, apiPort: number): Load {
  let stopped = false;
  const stop = () => stopped;
  return {
    stop: () => {
      stopped = true;
    },
    pg: Array.from({ length: 6 }, (_, i) => pgWorker(db, i + 1, stop)),
    http: Array.from({ length: 4 }, (_, i) => httpWorker(apiPort, i + 1, stop)),
  };
}
