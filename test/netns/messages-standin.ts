// A scripted stand-in for the Anthropic Messages API (`POST /v1/messages`), served by
// tls-upstream.ts as api.anthropic.com. It answers in the API's wire format, as JSON or as the SSE
// event stream (`stream: true`), so real SDKs and the Claude Agent SDK's CLI parse it as they would
// the real service. Scripts:
//   echo        one text turn that carries the customer's email (masking must remove it)
//   agent-loop  a tool loop: the turn that offers the named tools gets the next scripted tool call
//               until the script is done, then a final text; every tool_result the model receives
//               is printed ({"toolResult":...}) so the test can check what the model saw.
// Any other request (the CLI's side requests: titles, summaries) gets a short text turn.
import type { IncomingMessage, ServerResponse } from "node:http";
import { CUSTOMER } from "./tls-fixtures.ts";

export interface ScriptedCall {
  /** Tool name as the model sees it (MCP tools are `mcp__<server>__<tool>`). */
  name: string;
  input: Record<string, unknown>;
}

export type StandinScript = { kind: "echo" } | { kind: "agent-loop"; calls: ScriptedCall[]; final: string };

interface ContentBlock {
  type: string;
  text?: string;
  id?: string;
  name?: string;
  input?: unknown;
  tool_use_id?: string;
  content?: unknown;
  is_error?: boolean;
}
interface Message {
  role: "user" | "assistant";
  content: string | ContentBlock[];
}
interface MessagesRequest {
  model?: string;
  stream?: boolean;
  messages?: Message[];
  tools?: { name: string }[];
}

type Out = { type: "text"; text: string } | { type: "tool_use"; id: string; name: string; input: unknown };

const blocks = (m: Message): ContentBlock[] =>
  typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content;

/** The text of a tool_result's content (a string or text blocks). */
function resultText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content))
    return content
      .map((c) => ((c as ContentBlock).type === "text" ? ((c as ContentBlock).text ?? "") : ""))
      .join("");
  return "";
}

function sse(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function reply(res: ServerResponse, req: MessagesRequest, content: Out[], n: number): void {
  const id = `msg_standin_${n}`;
  const stop = content.some((c) => c.type === "tool_use") ? "tool_use" : "end_turn";
  const usage = { input_tokens: 10, output_tokens: 10 };
  const model = req.model ?? "claude-sonnet-4-5";
  if (!req.stream) {
    const text = JSON.stringify({
      id,
      type: "message",
      role: "assistant",
      model,
      content,
      stop_reason: stop,
      stop_sequence: null,
      usage,
    });
    res.writeHead(200, { "content-type": "application/json", "request-id": `req_${n}` });
    res.end(text);
    return;
  }
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "request-id": `req_${n}`,
  });
  sse(res, "message_start", {
    type: "message_start",
    message: {
      id,
      type: "message",
      role: "assistant",
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage,
    },
  });
  content.forEach((c, index) => {
    if (c.type === "text") {
      sse(res, "content_block_start", {
        type: "content_block_start",
        index,
        content_block: { type: "text", text: "" },
      });
      // Small deltas, as the real API streams: a value to mask spans several events.
      for (const piece of c.text.match(/.{1,5}/gs) ?? [])
        sse(res, "content_block_delta", {
          type: "content_block_delta",
          index,
          delta: { type: "text_delta", text: piece },
        });
    } else {
      sse(res, "content_block_start", {
        type: "content_block_start",
        index,
        content_block: { type: "tool_use", id: c.id, name: c.name, input: {} },
      });
      sse(res, "content_block_delta", {
        type: "content_block_delta",
        index,
        delta: { type: "input_json_delta", partial_json: JSON.stringify(c.input) },
      });
    }
    sse(res, "content_block_stop", { type: "content_block_stop", index });
  });
  sse(res, "message_delta", {
    type: "message_delta",
    delta: { stop_reason: stop, stop_sequence: null },
    usage: { output_tokens: 10 },
  });
  sse(res, "message_stop", { type: "message_stop" });
  res.end();
}

let counter = 0;

export async function answerMessages(
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
  script: StandinScript,
  print: (o: unknown) => void,
): Promise<void> {
  const url = new URL(req.url ?? "/", "https://api.anthropic.com");
  const n = ++counter;
  if (req.method !== "POST" || url.pathname !== "/v1/messages") {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ type: "error", error: { type: "not_found_error", message: url.pathname } }));
    return;
  }
  const request = JSON.parse(body) as MessagesRequest;
  if (script.kind === "echo")
    return reply(
      res,
      request,
      [{ type: "text", text: `Hello from the stand-in. The customer is ${CUSTOMER.email}.` }],
      n,
    );

  const offered = new Set((request.tools ?? []).map((t) => t.name));
  const wanted = new Set(script.calls.map((c) => c.name));
  if (![...wanted].some((name) => offered.has(name)))
    return reply(res, request, [{ type: "text", text: "ok" }], n);
  // The loop: which scripted calls have been made (tool_use blocks the assistant sent before)?
  const messages = request.messages ?? [];
  const made = messages
    .filter((m) => m.role === "assistant")
    .flatMap(blocks)
    .filter((b) => b.type === "tool_use");
  const last = messages.at(-1);
  for (const b of last?.role === "user" ? blocks(last) : [])
    if (b.type === "tool_result") {
      const call = made.find((m) => m.id === b.tool_use_id);
      print({
        toolResult: {
          name: call?.name,
          input: call?.input,
          isError: b.is_error === true,
          text: resultText(b.content),
        },
      });
    }
  const next = script.calls[made.length];
  if (next)
    return reply(
      res,
      request,
      [{ type: "tool_use", id: `toolu_standin_${made.length + 1}`, name: next.name, input: next.input }],
      n,
    );
  print({ finished: { turns: made.length } });
  reply(res, request, [{ type: "text", text: script.final }], n);
}
