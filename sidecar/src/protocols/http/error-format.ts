// The sidecar's own refusals in the shape the agent's client expects. An SDK that gets a body it
// does not recognise reports something generic ("Failed to authenticate", "Connection error"),
// and the agent never learns that a policy said no, or what to do about it. For known APIs the
// refusal is that API's error envelope: the SDK raises its usual typed error (a 403 becomes
// PermissionDeniedError) and its message carries Airlock's reason, rule and next step. Airlock's
// own fields stay under `airlock` for tools that read them.
import type { ErrorFormat } from "../../../../api/src/index.ts";
import type { ErrorBody } from "./respond.ts";

export interface ShapedError {
  body: Record<string, unknown>;
  headers: Record<string, string>;
}

// Upstream trouble may clear up; the sidecar's own decisions and limits will not, so clients
// that honour `x-should-retry` (the Anthropic and OpenAI SDKs do) do not retry into them.
const TRANSIENT = new Set(["upstream_unavailable", "upstream_timeout", "credential_source_unavailable"]);

// The Anthropic API's error types by status (its documented set; other 5xx are `api_error`).
function anthropicType(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 504:
      return "timeout_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

function openAiType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  return status >= 500 ? "server_error" : "invalid_request_error";
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** What to do next, when the refusal's own reason does not already say it. */
function nextStep(body: ErrorBody): string | undefined {
  switch (body.error) {
    case "denied":
      return "This is an access policy decision, not an authentication failure: retrying will not help; ask the policy's owner if this access is needed.";
    case "unknown_destination":
      return "Add a connection for this destination to an AgentAccessPolicy that selects this agent.";
    case "approval_denied":
      return "An approver refused this operation; do not retry it unchanged.";
    case "invalid_identity":
      return "Send a valid end-user token (the connection's identity settings say which issuer and audience).";
    default:
      return undefined;
  }
}

/** One human sentence for the client's error message: what refused, why, under which rule, and what next. */
export function refusalMessage(body: ErrorBody): string {
  const reason = str(body.reason) ?? body.error.replaceAll("_", " ");
  const policy = str(body.policy);
  const rule = str(body.rule);
  const where = rule
    ? `, under policy ${policy ?? "?"}, rule ${rule}`
    : policy
      ? `, under policy ${policy}`
      : "";
  const hint = str(body.hint);
  const next = hint && !reason.includes(hint) ? `Next: ${hint}.` : nextStep(body);
  return `Airlock refused this request: ${reason}${where}.${next ? ` ${next}` : ""}`;
}

/** The body and extra headers of a refusal with status `status`, in `format`. */
export function shapeError(format: ErrorFormat | undefined, status: number, body: ErrorBody): ShapedError {
  const headers: Record<string, string> = { "x-should-retry": TRANSIENT.has(body.error) ? "true" : "false" };
  switch (format) {
    case "anthropic":
      return {
        body: {
          type: "error",
          error: { type: anthropicType(status), message: refusalMessage(body) },
          airlock: body,
        },
        headers,
      };
    case "openai":
      return {
        body: {
          error: { message: refusalMessage(body), type: openAiType(status), param: null, code: body.error },
          airlock: body,
        },
        headers,
      };
    default:
      return { body, headers };
  }
}
