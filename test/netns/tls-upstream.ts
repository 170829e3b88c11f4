// The public HTTPS services of the network-namespace TLS tests, run inside the upstream namespace on
// port 443 with a certificate from the test's own CA (the sidecar is given that CA per connection;
// no system root signs it). One server answers two names, told apart by Host:
//   api.example.test   a customer API: JSON with PII, an SSE feed with PII, refunds, an admin area
//                      that no test may ever reach
//   api.anthropic.com  a stand-in for the Messages API (messages-standin.ts), JSON or SSE
// Prints {"ready":true}, then one {"request":...} line per request with what the upstream saw
// (credential headers included: the tests assert the sidecar's credential arrived, never the
// agent's placeholder). Nothing here echoes a credential back to the caller.
import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import type { TLSSocket } from "node:tls";
import { answerMessages, type StandinScript } from "./messages-standin.ts";
import { CUSTOMER } from "./tls-fixtures.ts";

interface Spec {
  port: number;
  keyPem: string;
  certPem: string;
  /** What the Messages stand-in plays (default: a one-turn echo). */
  script?: StandinScript;
}

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
};

async function customerApi(req: IncomingMessage, res: ServerResponse, body: string): Promise<void> {
  const url = new URL(req.url ?? "/", "https://api.example.test");
  const customer = /^\/v1\/customers\/(\d+)$/.exec(url.pathname);
  if (req.method === "GET" && customer)
    return json(res, 200, { id: Number(customer[1]), ...CUSTOMER, plan: "pro" });
  if (req.method === "GET" && url.pathname === "/v1/events") {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    // The address is split across events and written in small pieces, as a real feed would be.
    const events = ["signup", "login"].map(
      (kind, i) => `id: ${i}\nevent: ${kind}\ndata: ${JSON.stringify({ kind, email: CUSTOMER.email })}\n\n`,
    );
    for (const bytes of events.map((e) => Buffer.from(e)))
      for (let i = 0; i < bytes.length; i += 9) {
        res.write(bytes.subarray(i, i + 9));
        await new Promise((r) => setTimeout(r, 2));
      }
    res.end();
    return;
  }
  const refund = /^\/v1\/refunds$/.exec(url.pathname);
  if (req.method === "POST" && refund) {
    const { order, amount } = JSON.parse(body || "{}") as { order?: string; amount?: number };
    return json(res, 200, { refund: `re_${order ?? "none"}`, order, amount, status: "refunded" });
  }
  if (url.pathname.startsWith("/admin/")) return json(res, 200, { admin: "the sidecar let this through" });
  json(res, 404, { error: "not_found", path: url.pathname });
}

const server = createServer({ key: spec.keyPem, cert: spec.certPem }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const host = (req.headers.host ?? "").replace(/:\d+$/, "");
    print({
      request: {
        host,
        method: req.method,
        url: req.url,
        authorization: req.headers.authorization ?? null,
        servername: (req.socket as TLSSocket).servername || null,
        xApiKey: req.headers["x-api-key"] ?? null,
        body,
      },
    });
    const answer =
      host === "api.anthropic.com"
        ? answerMessages(req, res, body, spec.script ?? { kind: "echo" }, print)
        : customerApi(req, res, body);
    answer.catch((err: unknown) => {
      print({ error: String(err) });
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
});
server.listen({ port: spec.port, host: "::", ipv6Only: false });
await once(server, "listening");
print({ ready: true });
process.on("SIGTERM", () => {
  server.closeAllConnections();
  server.close();
  process.exit(0);
});
