// The HTTP guard (DESIGN.md "The request path"; issue 3 item 4): per-connection reverse
// listeners, the explicit forward proxy, credential injection, masking, audit.
// Behaviour, error codes and audit timing: README.md in this directory.
export type { ApprovalGate, ApprovalInput, ApprovalOutcome } from "./approval.ts";
export { classify, DECODABLE_ENCODINGS } from "./content.ts";
export {
  AGENT_CREDENTIAL_HEADERS,
  DEFAULT_CREDENTIAL_FORMAT,
  DEFAULT_CREDENTIAL_HEADER,
  DEFAULT_CREDENTIAL_KEY,
} from "./credentials.ts";
export {
  createHttpGuard,
  DEFAULT_BIND_HOST,
  DEFAULT_PROXY_PORT,
  type HttpGuard,
  type HttpGuardOptions,
  type ListenOptions,
  PROXY_SESSION_LABEL,
} from "./guard.ts";
export {
  compiledMaskingRules,
  type MaskingRulesResolver,
  rulesFor,
} from "./masking.ts";
