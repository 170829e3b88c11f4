// The PostgreSQL guard: wire-protocol proxy with parser-based SQL policy, masking and credential
// injection. See session.ts for the protocol handling, ../../sql/ for the classifier and
// ../../decisions/sql.ts for the judgement.
export type { ApprovalGate, ApprovalInput, ApprovalOutcome, ApprovalStatus } from "./approval.ts";
export { DEFAULT_LIMITS, type FrontendLimits } from "./framing.ts";
export { createPostgresGuard, type PostgresGuard, type PostgresGuardOptions } from "./guard.ts";
