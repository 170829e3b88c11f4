// VOLATILE functions that a read may call. PostgreSQL marks a function VOLATILE when it can do
// anything: write, lock, signal other sessions, touch files. A statement that calls a VOLATILE
// function not listed here is opaque (catalog-judge.ts): only a rule that names the function or
// the `call` kind lets it through. Names only count for built-ins (`pg_catalog`, OID below
// 16384) and for the named extension's own functions, so a same-named function in another
// schema is not trusted.
//
// Chosen from PostgreSQL 15's 251 VOLATILE built-ins: clocks and randomness, sequence reads
// (nextval writes a sequence: the classifier already adds an `update` entry for every explicit
// call; it is listed so that a column default does not make every INSERT opaque), size and
// status reads behind the system views, and the trigger functions of foreign keys and full-text
// columns, which only act on the row being written. Deliberately absent: taking advisory locks,
// pg_notify, large objects, backups/WAL/replication control, signals, sleeps, set_config,
// setval, file and configuration-file readers, index maintenance (brin_summarize_*,
// gin_clean_pending_list), pg_import_system_collations, query_to_xml & co.

const BUILTIN: ReadonlySet<string> = new Set([
  // clocks, randomness, identity of the current statement
  "clock_timestamp",
  "timeofday",
  "random",
  "random_normal",
  "setseed",
  "gen_random_uuid",
  "current_query",
  // releases this session's own advisory locks (drivers' pool reset)
  "pg_advisory_unlock_all",
  // sequences (see above)
  "nextval",
  "currval",
  "lastval",
  "pg_sequence_last_value",
  // sizes
  "pg_relation_size",
  "pg_table_size",
  "pg_indexes_size",
  "pg_total_relation_size",
  "pg_database_size",
  "pg_tablespace_size",
  // status reads behind system views (pg_locks, pg_prepared_xacts, pg_stat_*, ...)
  "pg_lock_status",
  "pg_blocking_pids",
  "pg_safe_snapshot_blocking_pids",
  "pg_prepared_xact",
  "pg_partition_ancestors",
  "pg_partition_tree",
  "pg_notification_queue_usage",
  "pg_is_in_recovery",
  "pg_is_wal_replay_paused",
  "pg_get_wal_replay_pause_state",
  "pg_jit_available",
  "pg_current_wal_lsn",
  "pg_current_wal_flush_lsn",
  "pg_current_wal_insert_lsn",
  "pg_last_wal_receive_lsn",
  "pg_last_wal_replay_lsn",
  "pg_last_xact_replay_timestamp",
  "pg_last_committed_xact",
  "pg_xact_commit_timestamp",
  "pg_xact_commit_timestamp_origin",
  "pg_xact_status",
  "txid_status",
  "pg_collation_actual_version",
  "pg_database_collation_actual_version",
  "pg_get_backend_memory_contexts",
  "pg_get_shmem_allocations",
  "pg_get_wal_resource_managers",
  "pg_get_multixact_members",
  "pg_show_replication_origin_status",
  "pg_replication_origin_progress",
  "pg_replication_origin_session_progress",
  "pg_replication_origin_session_is_setup",
  "pg_stat_get_recovery_prefetch",
  "pg_stat_have_stats",
  "pg_stat_clear_snapshot",
  "pg_control_checkpoint",
  "pg_control_init",
  "pg_control_recovery",
  "pg_control_system",
  // TABLESAMPLE methods and text-search dictionaries
  "bernoulli",
  "system",
  "dsnowball_init",
  "dsnowball_lexize",
  // triggers that only act on the row being written (foreign keys, full-text columns)
  "RI_FKey_cascade_del",
  "RI_FKey_cascade_upd",
  "RI_FKey_check_ins",
  "RI_FKey_check_upd",
  "RI_FKey_noaction_del",
  "RI_FKey_noaction_upd",
  "RI_FKey_restrict_del",
  "RI_FKey_restrict_upd",
  "RI_FKey_setdefault_del",
  "RI_FKey_setdefault_upd",
  "RI_FKey_setnull_del",
  "RI_FKey_setnull_upd",
  "unique_key_recheck",
  "suppress_redundant_updates_trigger",
  "tsvector_update_trigger",
  "tsvector_update_trigger_column",
]);

/** Built-in prefixes: transaction-local statistics counters. */
const BUILTIN_PREFIXES: readonly string[] = ["pg_stat_get_xact_"];

/** Extension functions, by extension: reads behind the extension's views. */
const EXTENSIONS: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ["pg_stat_statements", new Set(["pg_stat_statements", "pg_stat_statements_info"])],
]);

/** The first OID PostgreSQL gives to objects created after initdb (FirstNormalObjectId). */
export const FIRST_NORMAL_OID = 16384;

export interface AllowListSubject {
  oid: number;
  schema: string;
  name: string;
  extension?: string;
}

/** Whether a VOLATILE function may be called by a statement judged as a read. */
export function harmlessVolatile(f: AllowListSubject): boolean {
  if (f.oid < FIRST_NORMAL_OID && f.schema === "pg_catalog")
    return BUILTIN.has(f.name) || BUILTIN_PREFIXES.some((p) => f.name.startsWith(p));
  return f.extension !== undefined && (EXTENSIONS.get(f.extension)?.has(f.name) ?? false);
}
