// `tools/list` as the agent sees it: tools the subject may never call (no allow or requireApproval
// rule would admit tools/call of that name) are removed; tools that need approval say so in their
// description. Works on a JSON response and on an SSE response (each `data:` event a JSON-RPC
// message), which the sidecar reads whole: the server ends a POST's stream once it has answered.
import type { JsonRpcId } from "./jsonrpc.ts";

export type ToolVerdict = "keep" | "approval" | "drop";

export const APPROVAL_NOTE = " (requires approval)";

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Rewrites the tools of responses to `ids`; returns how many tools were removed. */
export function filterMessage(
  message: unknown,
  ids: ReadonlySet<JsonRpcId>,
  verdict: (tool: string) => ToolVerdict,
): number {
  if (!isObject(message) || !ids.has(message.id as JsonRpcId) || !isObject(message.result)) return 0;
  const tools = message.result.tools;
  if (!Array.isArray(tools)) return 0;
  const kept: unknown[] = [];
  for (const t of tools) {
    // A tool without a name cannot be judged: it is not shown (fail closed).
    if (!isObject(t) || typeof t.name !== "string") continue;
    const v = verdict(t.name);
    if (v === "drop") continue;
    if (v === "approval")
      kept.push({
        ...t,
        description: `${typeof t.description === "string" ? t.description : ""}${APPROVAL_NOTE}`.trim(),
      });
    else kept.push(t);
  }
  message.result.tools = kept;
  return tools.length - kept.length;
}

export class UnfilterableResponse extends Error {}

/** Rewrites a whole response body (JSON or SSE); throws UnfilterableResponse when it cannot be read. */
export function filterBody(
  contentType: string,
  body: Buffer,
  ids: ReadonlySet<JsonRpcId>,
  verdict: (tool: string) => ToolVerdict,
): { body: Buffer; removed: number } {
  const type = contentType.split(";")[0]?.trim().toLowerCase();
  let removed = 0;
  const apply = (m: unknown) => {
    if (Array.isArray(m)) for (const x of m) removed += filterMessage(x, ids, verdict);
    else removed += filterMessage(m, ids, verdict);
  };
  const parse = (text: string): unknown => {
    try {
      return JSON.parse(text);
    } catch {
      throw new UnfilterableResponse("the server's answer to tools/list is not JSON");
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
  throw new UnfilterableResponse(`the server answered tools/list as ${type || "no content type"}`);
}
