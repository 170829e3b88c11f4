// SQL classification for the PostgreSQL guard and `airlock policy test --sql`.
export type {
  BuiltinDenial,
  Classification,
  ClassifiedStatement,
  SessionEffect,
} from "./classify.ts";
export {
  builtinRefusal,
  classificationCacheStats,
  classify,
  classifySync,
  loadSqlParser,
  sqlParserReady,
} from "./classify.ts";
export { deniedFunction, guardedSetting } from "./deny-list.ts";
