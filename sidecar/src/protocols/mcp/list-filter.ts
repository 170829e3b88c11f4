// The list methods as the agent sees them: `tools/list`, `resources/list` and `prompts/list`
// answers lose the entries the subject may never use (no allow or requireApproval rule would admit
// tools/call of that name, resources/read of that URI, prompts/get of that name); entries that
// need approval say so in their description. Works on a JSON response and on an SSE response (each
// `data:` event a JSON-RPC message), which the sidecar reads whole: the server ends a POST's stream
// once it has answered.
import type { JsonRpcId } from "./jsonrpc.ts";

export type ListVerdict = "keep" | "approval" | "drop";

/** What a list method lists: the result field, and the entry field its use is judged by. */
export const LISTS = {
  "tools/list": { field: "tools", key: "name" },
  "resources/list": { field: "resources", key: "uri" },
  "prompts/list": { field: "prompts", key: "name" },
} as const;

export type ListMethod = keyof typeof LISTS;

export const isListMethod = (m: string): m is ListMethod => Object.hasOwn(LISTS, m);

export const APPROVAL_NOTE = " (requires approval)";

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Verdict on one entry of a list answer (`key`: the tool/prompt name or resource URI). */
export type Judge = (method: ListMethod, key: string) => ListVerdict;

/** Rewrites the entries of responses to the list requests `ids`; returns how many were removed. */
export function filterMessage(
  message: unknown,
  ids: ReadonlyMap<JsonRpcId, ListMethod>,
  judge: Judge,
): number {
  if (!isObject(message) || !isObject(message.result)) return 0;
  const method = ids.get(message.id as JsonRpcId);
  if (method === undefined) return 0;
  const { field, key } = LISTS[method];
  const entries = message.result[field];
  if (!Array.isArray(entries)) return 0;
  const kept: unknown[] = [];
  for (const e of entries) {
    // An entry without its name (URI) cannot be judged: it is not shown (fail closed).
    if (!isObject(e) || typeof e[key] !== "string") continue;
    const v = judge(method, e[key]);
    if (v === "drop") continue;
    if (v === "approval")
      kept.push({
        ...e,
        description: `${typeof e.description === "string" ? e.description : ""}${APPROVAL_NOTE}`.trim(),
      });
    else kept.push(e);
  }
  message.result[field] = kept;
  return entries.length - kept.length;
}

export class UnfilterableResponse extends Error {}

/** Rewrites a whole response body (JSON or SSE); throws UnfilterableResponse when it cannot be read. */
export function filterBody(
  contentType: string,
  body: Buffer,
  ids: ReadonlyMap<JsonRpcId, ListMethod>,
  judge: Judge,
): { body: Buffer; removed: number } {
  const type = contentType.split(";")[0]?.trim().toLowerCase();
  let removed = 0;
  const apply = (m: unknown) => {
    if (Array.isArray(m)) for (const x of m) removed += filterMessage(x, ids, judge);
    else removed += filterMessage(m, ids, judge);
  };
  const parse = (text: string): unknown => {
    try {
      return JSON.parse(text);
    } catch {
      throw new UnfilterableResponse("the server's answer to a list request is not JSON");
    }
  };
  if (type === "application/json") {
    const m = parse(body.toString("utf8"));
    apply(m);
    return { body: Buffer.from(JSON.stringify(m)), removed };
  }
  if (type === "text/event-stream") {
    const events = body.toString("utf8").split(/\r?\n\r?\n/);
    const out = events.map((event) => {
      const lines = event.split(/\r?\n/);
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, ""));
      if (data.length === 0) return event;
      const m = parse(data.join("\n"));
      apply(m);
      return [...lines.filter((l) => !l.startsWith("data:")), `data: ${JSON.stringify(m)}`].join("\n");
    });
    return { body: Buffer.from(out.join("\n\n")), removed };
  }
  throw new UnfilterableResponse(`the server answered a list request as ${type || "no content type"}`);
}
