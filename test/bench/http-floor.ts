// The least a Node reverse proxy can do per request, for http-profile.ts --floor: what Node's
// HTTP server and client cost on this machine with no policy, audit or masking, so the sidecar's
// CPU per request can be split into "Node's HTTP" and "Airlock". Modes:
//   node   — http.createServer + http.request on a keep-alive agent, the credential header set, pipe
//   node-array — the same, the upstream request's headers given as [name, value] pairs
//   undici — the same server, the upstream through undici's Pool (request(), body read whole);
//            undici is not a dependency of the project, only present through others (http-proxy-3):
//            without it this mode exits saying so.
//
//   node test/bench/http-floor.ts MODE LISTEN_PORT UPSTREAM_PORT
import { Agent, createServer, request } from "node:http";

const [mode = "node", listen = "0", up = "0"] = process.argv.slice(2);
const upstreamPort = Number(up);
const agent = new Agent({ keepAlive: true, scheduling: "lifo", maxSockets: 256 });
let pool: import("undici").Pool | undefined;
if (mode === "undici") {
  const undici = await import("undici").catch(() => undefined);
  if (!undici) {
    process.stderr.write("http-floor: undici is not installed (it comes with other packages only)\n");
    process.exit(2);
  }
  pool = new undici.Pool(`http://127.0.0.1:${upstreamPort}`, { connections: 256 });
}

const server = createServer((req, res) => {
  const headers = { ...req.headers, host: `127.0.0.1:${upstreamPort}`, authorization: "Bearer bench-token" };
  delete headers.connection;
  if (pool) {
    pool
      .request({ path: req.url ?? "/", method: "GET", headers })
      .then(async (r) => {
        const chunks: Buffer[] = [];
        for await (const c of r.body) chunks.push(c as Buffer);
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(r.headers))
          if (v !== undefined && k !== "connection" && k !== "keep-alive") out[k] = v;
        res.writeHead(r.statusCode, out);
        res.end(Buffer.concat(chunks));
      })
      .catch(() => res.destroy());
    return;
  }
  // node-array: the headers as [name, value] pairs, which ClientRequest stores as they are
  // (no setHeader per header).
  const out = mode === "node-array" ? Object.entries(headers) : headers;
  const up = request(
    {
      host: "127.0.0.1",
      port: upstreamPort,
      method: req.method,
      path: req.url,
      headers: out as never,
      agent,
    },
    (r) => {
      const out = { ...r.headers };
      delete out.connection;
      delete out["keep-alive"];
      res.writeHead(r.statusCode ?? 502, out);
      r.pipe(res);
    },
  );
  up.on("error", () => res.destroy());
  up.end();
});
server.keepAliveTimeout = 60_000;
server.listen(Number(listen), "127.0.0.1");
