// Built-in denials: functions and settings that no rule can allow. They reach outside the
// database's table privileges (server files, other servers, other sessions, server config), run
// SQL text the classifier cannot see (so any table rule could be bypassed), change how later
// statements are judged (search_path, encodings, string syntax, read-only mode, role), or are
// plain denial-of-service. Matching is on the bare, lower-cased function name whatever schema
// qualified it: a same-named function in another schema is refused too (fail closed).
//
// Whether a function may write is no longer this list's job: with the upstream's catalog, every
// VOLATILE function off the allow-list (volatile-allow-list.ts) is opaque (catalog-judge.ts), so a
// function nobody listed is refused rather than allowed. This list stays for what volatility
// does not capture (STABLE functions that read tables named in strings, such as table_to_xml) and
// for judging without a catalog (`airlock policy test --sql`).

/** Exact function names that are always denied, with the reason shown to the agent. */
const FUNCTIONS: ReadonlyMap<string, string> = new Map(
  Object.entries({
    // Server file system
    pg_read_file: "reads files on the database server",
    pg_read_binary_file: "reads files on the database server",
    pg_ls_dir: "lists directories on the database server",
    pg_stat_file: "inspects files on the database server",
    pg_ls_logdir: "lists directories on the database server",
    pg_ls_waldir: "lists directories on the database server",
    pg_ls_tmpdir: "lists directories on the database server",
    pg_ls_archive_statusdir: "lists directories on the database server",
    pg_ls_logicalsnapdir: "lists directories on the database server",
    pg_ls_logicalmapdir: "lists directories on the database server",
    pg_ls_replslotdir: "lists directories on the database server",
    pg_file_write: "writes files on the database server",
    pg_file_rename: "renames files on the database server",
    pg_file_unlink: "deletes files on the database server",
    pg_file_sync: "touches files on the database server",
    pg_logdir_ls: "lists directories on the database server",
    // Large objects (server-side import/export and unmanaged storage)
    loread: "accesses large objects",
    lowrite: "accesses large objects",
    // Other sessions and the server itself
    pg_terminate_backend: "terminates other sessions",
    pg_cancel_backend: "cancels other sessions' queries",
    pg_reload_conf: "reloads the server configuration",
    pg_rotate_logfile: "rotates the server log",
    pg_promote: "promotes a standby",
    pg_switch_wal: "forces a WAL switch",
    pg_create_restore_point: "writes WAL restore points",
    pg_backup_start: "controls backups",
    pg_backup_stop: "controls backups",
    pg_start_backup: "controls backups",
    pg_stop_backup: "controls backups",
    pg_wal_replay_pause: "controls replication",
    pg_wal_replay_resume: "controls replication",
    pg_create_physical_replication_slot: "controls replication",
    pg_create_logical_replication_slot: "controls replication",
    pg_drop_replication_slot: "controls replication",
    pg_copy_physical_replication_slot: "controls replication",
    pg_copy_logical_replication_slot: "controls replication",
    pg_replication_slot_advance: "controls replication",
    pg_logical_slot_get_changes: "reads the change stream of the whole database",
    pg_logical_slot_peek_changes: "reads the change stream of the whole database",
    pg_logical_slot_get_binary_changes: "reads the change stream of the whole database",
    pg_logical_slot_peek_binary_changes: "reads the change stream of the whole database",
    pg_logical_emit_message: "writes to the WAL",
    pg_import_system_collations: "changes the catalog",
    pg_log_backend_memory_contexts: "writes to the server log",
    pg_export_snapshot: "exports snapshots to other sessions",
    // Settings: set_config is SET in function form, and SET of guarded settings is refused.
    set_config: "changes session settings (use SET; guarded settings are refused)",
    // Denial of service
    pg_sleep: "holds the session (denial of service)",
    pg_sleep_for: "holds the session (denial of service)",
    pg_sleep_until: "holds the session (denial of service)",
    // Sequence reset
    setval: "resets a sequence",
    // SQL text executed by a function: invisible to the classifier, so tables could be read unseen
    query_to_xml: "executes SQL text the guard cannot inspect",
    query_to_xmlschema: "executes SQL text the guard cannot inspect",
    query_to_xml_and_xmlschema: "executes SQL text the guard cannot inspect",
    cursor_to_xml: "reads a cursor the guard cannot inspect",
    cursor_to_xmlschema: "reads a cursor the guard cannot inspect",
    table_to_xml: "reads a table named in a string, invisible to table rules",
    table_to_xmlschema: "reads a table named in a string, invisible to table rules",
    table_to_xml_and_xmlschema: "reads a table named in a string, invisible to table rules",
    ts_stat: "executes SQL text the guard cannot inspect",
    ts_rewrite: "may execute SQL text the guard cannot inspect",
    crosstab: "executes SQL text the guard cannot inspect",
    crosstab2: "executes SQL text the guard cannot inspect",
    crosstab3: "executes SQL text the guard cannot inspect",
    crosstab4: "executes SQL text the guard cannot inspect",
    connectby: "executes SQL text the guard cannot inspect",
    xpath_table: "executes SQL text the guard cannot inspect",
  }),
);

/** Name prefixes that are always denied. */
const PREFIXES: readonly (readonly [string, string])[] = [
  ["lo_", "accesses large objects (server-side files, unmanaged storage)"],
  ["dblink", "connects to another server"],
  ["schema_to_xml", "reads every table of a schema, invisible to table rules"],
  ["database_to_xml", "reads every table of the database, invisible to table rules"],
  ["pg_replication_origin_", "controls replication"],
  ["pg_stat_reset", "resets server statistics"],
  ["pg_file_", "touches files on the database server"],
];

/** Why a function is always denied, or undefined. `name` is the bare function name. */
export function deniedFunction(name: string): string | undefined {
  const n = name.toLowerCase();
  const exact = FUNCTIONS.get(n);
  if (exact) return exact;
  for (const [prefix, reason] of PREFIXES) if (n.startsWith(prefix)) return reason;
  return undefined;
}

/** Every always-denied name, for scanning opaque bodies (DO blocks) as a best effort. */
export const DENIED_FUNCTION_NAMES: readonly string[] = [...FUNCTIONS.keys()];
export const DENIED_FUNCTION_PREFIXES: readonly string[] = PREFIXES.map(([p]) => p);

/**
 * Settings the agent may not SET or RESET (nor change through ALTER ROLE/DATABASE ... SET):
 * they would switch off the read-only defence, change the identity the database checks
 * privileges against, disable triggers and foreign keys, or change how the server parses or
 * resolves the very statements the guard judged (search_path, encodings, string syntax).
 */
const GUARDED_SETTINGS: ReadonlyMap<string, string> = new Map(
  Object.entries({
    default_transaction_read_only: "the sidecar controls read-only mode",
    transaction_read_only: "the sidecar controls read-only mode",
    role: "changes the role privileges are checked against",
    session_authorization: "changes the role privileges are checked against",
    session_replication_role: "disables triggers and foreign keys",
    search_path: "changes which tables unqualified names resolve to",
    standard_conforming_strings: "changes how the server parses string literals",
    backslash_quote: "changes how the server parses string literals",
    row_security: "changes row-level security enforcement",
    local_preload_libraries: "loads server libraries",
    session_preload_libraries: "loads server libraries",
  }),
);

/**
 * Guarded settings' values that only make a session stricter (pg_dump sends both): an empty
 * search_path resolves nothing but pg_catalog and temporary tables; `row_security = off` makes a
 * query that a row-level security policy would filter raise an error instead.
 */
const STRICTER: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ["search_path", new Set([""])],
  ["row_security", new Set(["off", "false", "0", "no"])],
]);

const UTF8_NAMES = new Set(["utf8", "utf-8", "unicode"]);

/**
 * Why changing `name` (lower-cased setting name) to `value` is refused, or undefined.
 * `value` is undefined for RESET / SET ... TO DEFAULT.
 */
export function guardedSetting(name: string, values: readonly string[] | undefined): string | undefined {
  const n = name.toLowerCase();
  const reason = GUARDED_SETTINGS.get(n);
  if (reason && !(values && values.length === 1 && STRICTER.get(n)?.has((values[0] ?? "").toLowerCase())))
    return reason;
  if (reason) return undefined;
  if (n === "client_encoding") {
    // The guard classifies UTF-8 text; another client encoding would make the server see
    // different characters (and statement boundaries) than the classifier did.
    if (values && values.length === 1 && UTF8_NAMES.has((values[0] ?? "").toLowerCase())) return undefined;
    if (values === undefined) return undefined; // RESET: back to the UTF8 the sidecar set at startup
    return "the sidecar requires client_encoding UTF8";
  }
  return undefined;
}
