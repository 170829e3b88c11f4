// The upstream's catalog, for judging code a statement's text does not show (sql/catalog.ts):
// read on a side connection of the sidecar's own (read-only, with a short lock_timeout: a session
// holding an exclusive lock must not make the read wait), cached per database and re-checked by
// its fingerprint at most every few seconds, and reloaded after this session ran a statement that
// may change it. A catalog that cannot be read refuses the session or the statement (fail closed).
import { type Catalog, CatalogCache } from "../../sql/catalog.ts";
import type { SqlParser } from "../../sql/parser.ts";
import { NO_ORIGINS, type Origins, OriginsCache, originsOf } from "./origins.ts";
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
const origins = new OriginsCache();

export interface CatalogSource {
  target: UpstreamTarget;
  credentials: UpstreamCredentials;
  database: string;
  timeoutMs: number;
  /** The grammar of the server's major version (definitions are classified with it). */
  parser?: SqlParser;
}

/** Runs `read` with a side connection of the sidecar's own, opened on first use and closed after. */
async function withSideConnection<T>(
  source: CatalogSource,
  read: (query: (sql: string) => Promise<Record<string, unknown>[]>) => Promise<T>,
): Promise<T> {
  let side: UpstreamSession | undefined;
  try {
    return await read(async (sql) => {
      side ??= await startUpstream(source.target, source.credentials, {
        database: source.database,
        client_encoding: "UTF8",
        application_name: "airlock-catalog",
        default_transaction_read_only: "on",
        lock_timeout: "2s",
        statement_timeout: "10s",
      });
      return sidecarRecords(side, sql, source.timeoutMs);
    });
  } catch (err) {
    throw new ProtocolError(
      `the Airlock sidecar could not read the database catalog it judges statements with (${err instanceof Error ? err.message : String(err)})`,
      "08006",
    );
  } finally {
    (side as UpstreamSession | undefined)?.socket.end();
  }
}

const keyOf = (source: CatalogSource) => `${source.target.host}:${source.target.port}/${source.database}`;

/** The catalog of the source's database; `fresh` forces a fingerprint check (after DDL). */
export async function catalogOf(source: CatalogSource, fresh = false): Promise<Catalog> {
  const parser = source.parser;
  const key = keyOf(source);
  if (fresh) cache.invalidate(key);
  return withSideConnection(source, (query) =>
    cache.get(key, query, { maxAgeMs: RECHECK_MS, ...(parser ? { parser } : {}) }),
  );
}

/** Where covered columns live, as of `catalog` (originsQuery's rows; see origins.ts). */
function originsAt(source: CatalogSource, catalog: Catalog, sql: string): Promise<Origins> {
  return origins.get(`${keyOf(source)}\0${sql}`, catalog, () =>
    withSideConnection(source, async (query) => {
      const rows = await query(sql);
      return originsOf(rows.map((r) => Object.values(r).map((v) => (v == null ? null : String(v)))));
    }),
  );
}

/**
 * Catalog-changing statements this process's sessions completed, per database: every session of
 * the agent goes through this sidecar, so what one of them creates is known to the others before
 * their next statement. (What others create directly is seen within RECHECK_MS.)
 */
const generations = new Map<string, number>();

/** Statement kinds after which the catalog a session judges with may be out of date. */
const CATALOG_CHANGING: ReadonlySet<string> = new Set(["create", "alter", "drop", "call", "do", "other"]);

/**
 * The catalog one session judges with, and where covered columns live (when column rules
 * apply): read at connect; reread before the next statement after this session or another of
 * this sidecar's sessions changed the catalog, and at most every RECHECK_MS for changes made
 * outside. While the session's own catalog change is uncommitted, the side connection cannot see
 * it: results are then not `certain` (the session masks every column of them) until the
 * transaction ends.
 */
export class SessionCatalog {
  catalog: Catalog | undefined;
  origins: Origins = NO_ORIGINS;
  #source: CatalogSource | undefined;
  #key = "";
  /** originsQuery for the masking in force (undefined: no column rules). */
  #originsSql: string | undefined;
  #originsFor: Catalog | undefined;
  /** The database's generation this session's catalog was read at. */
  #generation = 0;
  #checkedAt = 0;
  /** This session completed a catalog-changing statement since the last read. */
  #changed = false;
  /** ...inside a transaction that has not ended yet. */
  #uncommitted = false;

  async open(source: CatalogSource, originsSql?: string): Promise<void> {
    this.#source = source;
    this.#key = keyOf(source);
    this.#originsSql = originsSql;
    await this.#read(false);
  }

  /** Whether the catalog (or the origins of the masking in force) must be reread before judging. */
  get stale(): boolean {
    return (
      this.#changed ||
      (this.#source !== undefined &&
        ((generations.get(this.#key) ?? 0) !== this.#generation ||
          Date.now() - this.#checkedAt > RECHECK_MS ||
          (this.#originsSql !== undefined && this.#originsFor !== this.catalog)))
    );
  }

  /** Whether results can be planned with `origins`: no catalog change is unread or uncommitted. */
  get certain(): boolean {
    return !this.#changed && !this.#uncommitted && (generations.get(this.#key) ?? 0) === this.#generation;
  }

  /**
   * This session changed the catalog in a transaction still open: the side connection cannot see
   * the change, so the catalog judges its next statements with definitions that may be replaced.
   */
  get uncommitted(): boolean {
    return this.#uncommitted;
  }

  /** The masking in force changed (a policy update): its origins are read before the next statement. */
  maskChanged(originsSql: string | undefined): void {
    if (originsSql === this.#originsSql) return;
    this.#originsSql = originsSql;
    this.#originsFor = undefined;
    this.origins = NO_ORIGINS;
  }

  /** A forwarded statement completed (confirmed by the server, not merely sent). */
  completed(kinds: readonly { kind: string }[]): void {
    if (!kinds.some((s) => CATALOG_CHANGING.has(s.kind))) return;
    // Uncommitted until the server reports no transaction open (transactionEnded).
    this.#changed = true;
    this.#uncommitted = true;
    generations.set(this.#key, (generations.get(this.#key) ?? 0) + 1);
  }

  /** The session's transaction ended (committed or rolled back): what it changed is visible now. */
  transactionEnded(): void {
    if (!this.#uncommitted) return;
    this.#uncommitted = false;
    this.#changed = true;
    generations.set(this.#key, (generations.get(this.#key) ?? 0) + 1);
  }

  /** Rereads the catalog; returns whether it changed (judgements made with the old one are void). */
  async reread(): Promise<boolean> {
    if (!this.#source) return false;
    const before = this.catalog;
    // A change this process made forces the fingerprint check; otherwise the shared recheck does.
    await this.#read(this.#changed || (generations.get(this.#key) ?? 0) !== this.#generation);
    return this.catalog !== before;
  }

  async #read(fresh: boolean): Promise<void> {
    const source = this.#source;
    if (!source) return;
    const generation = generations.get(this.#key) ?? 0;
    const changed = this.#changed;
    this.#changed = false;
    try {
      const catalog = await catalogOf(source, fresh);
      const originsSql = this.#originsSql;
      const origins = originsSql !== undefined ? await originsAt(source, catalog, originsSql) : NO_ORIGINS;
      this.catalog = catalog;
      this.origins = origins;
      this.#originsFor = originsSql !== undefined ? catalog : undefined;
      this.#generation = generation;
      this.#checkedAt = Date.now();
    } catch (err) {
      this.#changed ||= changed;
      throw err;
    }
  }
}
