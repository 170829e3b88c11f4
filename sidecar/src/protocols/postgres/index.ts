// The PostgreSQL guard: wire-protocol proxy with parser-based SQL policy, masking and credential
// injection. See session.ts for the protocol handling and ../../sql/ for the classifier.
export type { ApprovalGate, ApprovalInput, ApprovalOutcome, ApprovalStatus } from "./approval.ts";
export { NO_APPROVAL_SERVICE } from "./approval.ts";
export { BUILTIN_RULE, type JudgeInput, judgeSql, readOnlySession, type SqlJudgement } from "./decide.ts";
export { DEFAULT_LIMITS, type FrontendLimits } from "./framing.ts";
export { createPostgresHandler, type PostgresHandler, type PostgresHandlerOptions } from "./handler.ts";
