// The sidecar answering an MCP server in the agent's place: on the Streamable HTTP transport a
// client answers a server's request with a POST of the JSON-RPC response to the MCP endpoint. The
// POST goes out with the headers the agent's own request went out with (the sidecar's credential,
// the user header, the session and protocol version), so the server takes it as the agent's.
import type { OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Logger } from "pino";
import { request as httpRequest } from "../../runtime/node-http.ts";
import type { Upstream } from "../http/upstream.ts";

export interface ServerReplyTarget {
  upstream: Upstream;
  /** Path (and query) of the MCP endpoint, as the agent's request went out. */
  path: string;
  /** Headers the agent's request went out with. */
  headers: OutgoingHttpHeaders;
  timeoutMs: number;
  logger: Logger;
  connection: string;
}

const DROP = [
  "content-length",
  "content-encoding",
  "transfer-encoding",
  "expect",
  "last-event-id",
  "accept-encoding",
];

export function postToServer(to: ServerReplyTarget, sessionId: string | undefined, message: unknown): void {
  const body = Buffer.from(JSON.stringify(message));
  const headers: OutgoingHttpHeaders = { ...to.headers };
  for (const h of DROP) delete headers[h];
  headers["content-type"] = "application/json";
  headers.accept = "application/json, text/event-stream";
  headers["content-length"] = String(body.length);
  if (sessionId !== undefined) headers["mcp-session-id"] = sessionId;
  const options = {
    host: to.upstream.host,
    port: to.upstream.port,
    method: "POST",
    path: to.path,
    headers,
    agent: to.upstream.agent,
    ...(to.upstream.protocol === "https:" ? { rejectUnauthorized: true } : {}),
  };
  const req = to.upstream.protocol === "https:" ? httpsRequest(options) : httpRequest(options);
  const failed = (why: string) =>
    to.logger.warn({ connection: to.connection, err: why }, "could not answer the MCP server's request");
  req.setTimeout(to.timeoutMs, () => req.destroy(new Error("timed out")));
  req.on("error", (err) => failed(err.message));
  req.on("response", (res) => {
    if ((res.statusCode ?? 0) >= 300) failed(`the server answered ${res.statusCode}`);
    res.resume();
  });
  req.end(body);
}
