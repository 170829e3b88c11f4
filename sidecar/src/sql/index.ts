// SQL classification for the PostgreSQL guard and `airlock policy test --sql`; the catalog
// judgement of code the text does not show; approval summaries; the parser per server major.
export type { ApprovalSummary, StatementSummary, SummaryLimits } from "./approval-summary.ts";
export { approvalSummary, elide } from "./approval-summary.ts";
export type { Catalog, CatalogFunction, CatalogQuery, CatalogRow } from "./catalog.ts";
export { CatalogCache, loadCatalog } from "./catalog.ts";
export type { CalledFunction, ClassificationCalls, OpaqueCall, StatementCalls } from "./catalog-judge.ts";
export { classificationCalls, statementCalls, withOpaqueCalls } from "./catalog-judge.ts";
export type {
  BuiltinDenial,
  Classification,
  ClassifiedStatement,
  CopyOut,
  OperatorRef,
  RoutineRef,
  SessionEffect,
  TypeRef,
} from "./classification.ts";
export {
  builtinRefusal,
  classificationCacheStats,
  classify,
  classifyFresh,
  classifySync,
  loadSqlParser,
  sqlParserReady,
  statementSpans,
} from "./classify.ts";
export { deniedFunction, guardedSetting } from "./deny-list.ts";
export type { SqlParser } from "./parser.ts";
export { parserFor, SUPPORTED_MAJORS, serverMajor, UnsupportedServerError } from "./parser.ts";
