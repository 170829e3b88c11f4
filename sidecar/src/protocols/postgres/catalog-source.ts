// The upstream's catalog, for judging code a statement's text does not show (sql/catalog.ts):
// read on a side connection of the sidecar's own (read-only, with a short lock_timeout: a session
// holding an exclusive lock must not make the read wait), cached per database and re-checked by
// its fingerprint at most every few seconds, and reloaded after this session ran a statement that
// may change it. A catalog that cannot be read refuses the session or the statement (fail closed).
import { type Catalog, CatalogCache } from "../../sql/catalog.ts";
import type { SqlParser } from "../../sql/parser.ts";
import { ProtocolError } from "./protocol.ts";
import {
  sidecarRecords,
  startUpstream,
  type UpstreamCredentials,
  type UpstreamSession,
  type UpstreamTarget,
} from "./upstream.ts";

/** How long a fingerprint check stays good for new sessions of the same database. */
const RECHECK_MS = 2000;
const cache = new CatalogCache();

export interface CatalogSource {
  target: UpstreamTarget;
  credentials: UpstreamCredentials;
  database: string;
  timeoutMs: number;
  /** The grammar of the server's major version (definitions are classified with it). */
  parser?: SqlParser;
}

/** The catalog of the source's database; `fresh` forces a fingerprint check (after this session's DDL). */
export async function catalogOf(source: CatalogSource, fresh = false): Promise<Catalog> {
  const parser = source.parser;
  const key = `${source.target.host}:${source.target.port}/${source.database}`;
  if (fresh) cache.invalidate(key);
  let side: UpstreamSession | undefined;
  try {
    return await cache.get(
      key,
      async (sql) => {
        side ??= await startUpstream(source.target, source.credentials, {
          database: source.database,
          client_encoding: "UTF8",
          application_name: "airlock-catalog",
          default_transaction_read_only: "on",
          lock_timeout: "2s",
          statement_timeout: "10s",
        });
        return sidecarRecords(side, sql, source.timeoutMs);
      },
      { maxAgeMs: RECHECK_MS, ...(parser ? { parser } : {}) },
    );
  } catch (err) {
    throw new ProtocolError(
      `the Airlock sidecar could not read the database catalog it judges statements with (${err instanceof Error ? err.message : String(err)})`,
      "08006",
    );
  } finally {
    (side as UpstreamSession | undefined)?.socket.end();
  }
}

/** Statement kinds after which the catalog a session judges with may be out of date. */
const CATALOG_CHANGING: ReadonlySet<string> = new Set(["create", "alter", "drop", "call", "do", "other"]);

/** The catalog one session judges with: read at connect, reread after the session changed it. */
export class SessionCatalog {
  catalog: Catalog | undefined;
  #source: CatalogSource | undefined;
  /** A statement that may change the catalog completed: reread before judging the next text. */
  stale = false;

  async open(source: CatalogSource): Promise<void> {
    this.#source = source;
    this.catalog = await catalogOf(source);
  }

  /** A forwarded statement completed (confirmed by the server, not merely sent). */
  completed(kinds: readonly { kind: string }[]): void {
    if (kinds.some((s) => CATALOG_CHANGING.has(s.kind))) this.stale = true;
  }

  /** Rereads the catalog; returns whether it changed (judgements made with the old one are void). */
  async reread(): Promise<boolean> {
    if (!this.#source) return false;
    const catalog = await catalogOf(this.#source, true);
    this.stale = false;
    if (catalog === this.catalog) return false;
    this.catalog = catalog;
    return true;
  }
}
