// The demo's "customers API": a small upstream on localhost that only answers callers presenting
// its token — which only the sidecar holds. Its data carries the PII the demo policy masks.
import { createServer, type Server } from "node:http";

const customers = [
  {
    id: 1,
    name: "Ada Lovelace",
    email: "ada@example.com",
    phone: "+1 415 555 0132",
    card: "4111 1111 1111 1111",
    ssn: "078-05-1120",
    internalNotes: "VIP; prefers phone contact",
  },
  {
    id: 2,
    name: "Alan Turing",
    email: "alan@example.org",
    phone: "+44 20 7946 0958",
    card: "5555 5555 5555 4444",
    ssn: "219-09-9999",
    internalNotes: "escalated twice in 2026",
  },
];

export async function startDemoUpstream(opts: {
  port: number;
  token: string;
  host?: string;
}): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) =>
      res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body, null, 2)}\n`);
    if (req.headers.authorization !== `Bearer ${opts.token}`)
      return send(401, { error: "missing or wrong token" });
    const url = new URL(req.url ?? "/", "http://upstream");
    const one = /^\/customers\/(\d+)$/.exec(url.pathname);
    if (req.method === "GET" && url.pathname === "/customers") return send(200, { customers });
    if (req.method === "GET" && one) {
      const c = customers.find((x) => x.id === Number(one[1]));
      return c ? send(200, c) : send(404, { error: "no such customer" });
    }
    if (req.method === "DELETE" && one) return send(200, { deleted: Number(one[1]) });
    const refund = /^\/customers\/(\d+)\/refund$/.exec(url.pathname);
    if (req.method === "POST" && refund) return send(200, { refunded: Number(refund[1]) });
    if (url.pathname.startsWith("/admin")) return send(200, { apiKeys: ["sk_live_demo_should_never_leave"] });
    send(404, { error: "not found" });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "127.0.0.1", () => resolve());
  });
  return server;
}
