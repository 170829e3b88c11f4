// MCP over Streamable HTTP: a POST body is one JSON-RPC 2.0 message or a batch. Each request becomes
// an `mcp` operation for the policy engine; notifications and responses carry no operation of their
// own. Anything that is not well-formed JSON-RPC is refused before any rule (fail closed).
import type { Operation } from "../../policy/types.ts";

export type McpOperation = Extract<Operation, { kind: "mcp" }>;

/**
 * Airlock's JSON-RPC error code for a request the policy refused (implementation-defined range).
 * Not -32001: both official MCP SDKs use that for their own request timeout, so a client or agent
 * framework checking the code would take a refusal for a timeout and retry it.
 */
export const POLICY_REFUSED = -32010;
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;

export type JsonRpcId = string | number | null;

export interface McpRequest {
  id: JsonRpcId;
  operation: McpOperation;
  /** tools/call `params.arguments` as sent (values: never audited or shown unmasked). */
  arguments?: unknown;
}

export type ParsedBody =
  | {
      ok: true;
      batch: boolean;
      requests: McpRequest[];
      others: number;
      /** Request ids named by `notifications/cancelled` in this body. */
      cancelled: JsonRpcId[];
    }
  | { ok: false; code: number; message: string };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

function operationOf(method: string, params: unknown): McpOperation {
  const p = isObject(params) ? params : {};
  const op: McpOperation = { kind: "mcp", method };
  if (method === "tools/call") {
    const tool = str(p.name);
    if (tool !== undefined) op.tool = tool;
  } else if (method === "resources/read") {
    const uri = str(p.uri);
    if (uri !== undefined) op.resource = uri;
  } else if (method === "prompts/get") {
    const prompt = str(p.name);
    if (prompt !== undefined) op.prompt = prompt;
  }
  return op;
}

/** Parses a POST body; `others` counts notifications and client responses. */
export function parseMcpBody(body: Buffer): ParsedBody {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    return {
      ok: false,
      code: PARSE_ERROR,
      message: "Airlock refused the request: the body is not valid JSON",
    };
  }
  const batch = Array.isArray(value);
  const messages: unknown[] = batch ? (value as unknown[]) : [value];
  if (messages.length === 0)
    return { ok: false, code: INVALID_REQUEST, message: "Airlock refused the request: empty JSON-RPC batch" };
  const requests: McpRequest[] = [];
  const cancelled: JsonRpcId[] = [];
  let others = 0;
  for (const [i, m] of messages.entries()) {
    const at = batch ? ` (batch item ${i})` : "";
    if (!isObject(m) || m.jsonrpc !== "2.0")
      return {
        ok: false,
        code: INVALID_REQUEST,
        message: `Airlock refused the request: not a JSON-RPC 2.0 message${at}`,
      };
    const hasId = "id" in m;
    if (hasId && !(typeof m.id === "string" || typeof m.id === "number" || m.id === null))
      return { ok: false, code: INVALID_REQUEST, message: `Airlock refused the request: bad id${at}` };
    if (typeof m.method === "string") {
      // A request with params that are not an object or array is malformed: the tool name could hide.
      if ("params" in m && !isObject(m.params) && !Array.isArray(m.params))
        return { ok: false, code: INVALID_REQUEST, message: `Airlock refused the request: bad params${at}` };
      if (hasId) {
        const request: McpRequest = { id: m.id as JsonRpcId, operation: operationOf(m.method, m.params) };
        if (m.method === "tools/call" && isObject(m.params) && "arguments" in m.params)
          request.arguments = m.params.arguments;
        requests.push(request);
      } else {
        others++;
        const target = isObject(m.params) ? m.params.requestId : undefined;
        if (
          m.method === "notifications/cancelled" &&
          (typeof target === "string" || typeof target === "number")
        )
          cancelled.push(target);
      }
    } else if (hasId && ("result" in m || "error" in m)) others++;
    else
      return {
        ok: false,
        code: INVALID_REQUEST,
        message: `Airlock refused the request: neither a request, a notification nor a response${at}`,
      };
  }
  return { ok: true, batch, requests, others, cancelled };
}

export function jsonRpcError(id: JsonRpcId, code: number, message: string, data?: Record<string, unknown>) {
  return { jsonrpc: "2.0" as const, id, error: { code, message, ...(data ? { data } : {}) } };
}
