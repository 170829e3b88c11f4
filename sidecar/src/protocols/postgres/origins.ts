// Where the data column rules cover lives in the database (originsQuery): read with the catalog,
// on the sidecar's side connection, and shared by the sessions of one database and one set of
// covered columns. A snapshot belongs to one catalog: when the catalog's fingerprint moves (a
// view, table or function created, replaced or dropped by anyone), the next session to ask reads
// the origins again. A snapshot is immutable; a session swaps the one it masks with.
import { LRUCache } from "lru-cache";
import type { Catalog } from "../../sql/catalog.ts";
import { CATALOG_SHADOW, RELATION_NAME, USER_FUNCTION, VIEW_ALL } from "./row-masking.ts";

export interface Origins {
  /** `tableOid:attnum` (or `viewOid:*`) → the covered column it holds (see ResultContext.origins). */
  readonly columns: ReadonlyMap<string, string>;
  /** Functions defined in the database (lower-cased names). */
  readonly userFunctions: ReadonlySet<string>;
  /** Relations every column of which may carry covered data: dependent views, statistics views. */
  readonly coveredRelations: ReadonlySet<string>;
  /** Relations outside pg_catalog named like a catalog (`pg_x`), which a bare name may resolve to. */
  readonly catalogShadows: ReadonlySet<string>;
}

export const NO_ORIGINS: Origins = {
  columns: new Map(),
  userFunctions: new Set(),
  coveredRelations: new Set(),
  catalogShadows: new Set(),
};

/** The snapshot of originsQuery's rows (`relationOid, attnum, name`). */
export function originsOf(rows: readonly (readonly (string | null)[])[]): Origins {
  const columns = new Map<string, string>();
  const userFunctions = new Set<string>();
  const coveredRelations = new Set<string>();
  const catalogShadows = new Set<string>();
  for (const [oid, at, name = ""] of rows) {
    const attnum = Number(at);
    const n = name ?? "";
    if (attnum === USER_FUNCTION) userFunctions.add(n);
    else if (attnum === RELATION_NAME) coveredRelations.add(n);
    else if (attnum === CATALOG_SHADOW) catalogShadows.add(n);
    else columns.set(`${oid ?? "0"}:${attnum === VIEW_ALL ? "*" : attnum}`, n);
  }
  return { columns, userFunctions, coveredRelations, catalogShadows };
}

interface Entry {
  catalog: Catalog;
  origins: Promise<Origins>;
}

/**
 * Snapshots by database and query (the query spells the covered columns). Bounded: a sidecar
 * talks to a handful of databases, and a policy change makes a new query.
 */
export class OriginsCache {
  readonly #entries = new LRUCache<string, Entry>({ max: 64 });

  /** The snapshot for `catalog`, read with `read` unless one for that same catalog is cached. */
  get(key: string, catalog: Catalog, read: () => Promise<Origins>): Promise<Origins> {
    const hit = this.#entries.get(key);
    if (hit && hit.catalog === catalog) return hit.origins;
    const entry: Entry = { catalog, origins: read() };
    this.#entries.set(key, entry);
    // A failed read is not kept: the next session asks again.
    entry.origins.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    return entry.origins;
  }
}
