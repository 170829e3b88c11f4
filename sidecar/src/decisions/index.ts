// The decision layer: judgement of SQL texts, SSH operations and HTTP requests on top of the
// policy engine, and the guard's own refusals. Guards and `airlock policy test` ask here. The
// HTTP and SSH guards import the modules they need directly: this barrel brings the SQL parser.

export {
  type HttpOperation,
  type HttpRequestJudgement,
  httpOperation,
  judgeConnect,
  judgeHttp,
  judgeTunnel,
} from "./http.ts";
export { BUILTIN_RULE, MASKING_RULE, type RefusalKind, refusal } from "./refusals.ts";
export { type JudgeInput, judgeSql, readOnlySession, type SqlJudgement } from "./sql.ts";
export {
  decideAgentForwarding,
  decideExec,
  decideInboundForward,
  decideX11,
  type Evaluate,
  type ExecDecision,
} from "./ssh-exec.ts";
