// The database catalog for `airlock policy test --sql --database URL`: read the way the sidecar
// reads it (a read-only side connection with short lock and statement timeouts), so the CLI judges
// code the statement's text does not show exactly as the guard would.
import { readFile } from "node:fs/promises";
import type { Catalog, Classification } from "../../sidecar/src/sql/index.ts";
import { UsageError } from "./command.ts";

// No `require`: it encrypts without checking who answers, and the catalog decides what is allowed.
const SSL_MODES = ["disable", "verify-ca", "verify-full"] as const;
type SslMode = (typeof SSL_MODES)[number];

export interface DatabaseUrl {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  sslmode: SslMode;
  /** CA bundle (PEM file) to verify the server with, instead of the system roots. */
  sslrootcert?: string;
}

/** Parses postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...]; the password may come from PGPASSWORD. */
export function parseDatabaseUrl(url: string, env: NodeJS.ProcessEnv = process.env): DatabaseUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(
      `--database takes a URL like postgresql://USER@HOST:5432/DB, not ${JSON.stringify(url)}`,
    );
  }
  if (u.protocol !== "postgresql:" && u.protocol !== "postgres:")
    throw new UsageError(`--database must be a postgresql:// URL (got ${u.protocol}//)`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ""));
  if (!u.hostname || !u.username || !database)
    throw new UsageError("--database needs a user, a host and a database: postgresql://USER@HOST:5432/DB");
  const mode = u.searchParams.get("sslmode") ?? "verify-full";
  if (!(SSL_MODES as readonly string[]).includes(mode))
    throw new UsageError(`sslmode ${JSON.stringify(mode)} is not one of: ${SSL_MODES.join(", ")}`);
  const password = u.password ? decodeURIComponent(u.password) : env.PGPASSWORD;
  const rootcert = u.searchParams.get("sslrootcert") ?? undefined;
  return {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port ? Number(u.port) : 5432,
    user: decodeURIComponent(u.username),
    ...(password !== undefined ? { password } : {}),
    database,
    sslmode: mode as SslMode,
    ...(rootcert ? { sslrootcert: rootcert } : {}),
  };
}

export async function catalogFor(url: string): Promise<Catalog> {
  const db = parseDatabaseUrl(url);
  const { catalogOf } = await import("../../sidecar/src/protocols/postgres/catalog-source.ts");
  let ca: string | undefined;
  if (db.sslrootcert) {
    try {
      ca = await readFile(db.sslrootcert, "utf8");
    } catch {
      throw new UsageError(`cannot read sslrootcert ${db.sslrootcert}`);
    }
  }
  const tls = { mode: db.sslmode, ...(ca ? { ca } : {}) };
  try {
    return await catalogOf({
      target: { host: db.host, port: db.port, tls, connectTimeoutMs: 10_000 },
      credentials: { user: db.user, ...(db.password !== undefined ? { password: db.password } : {}) },
      database: db.database,
      timeoutMs: 10_000,
    });
  } catch (err) {
    throw new UsageError(
      `cannot read the catalog of ${db.user}@${db.host}:${db.port}/${db.database}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** Whether judging the statements needs the catalog: they call, operate, cast or touch relations. */
export function touchesCatalog(c: Classification): boolean {
  return c.statements.some(
    (s) => s.functions.length > 0 || s.operators.length > 0 || s.casts.length > 0 || s.tables.length > 0,
  );
}
