// Fuzz target: the HTTP request path of the HTTP guard, end to end in one process: raw bytes from
// the fuzzer are written to the guard's listener (Node's HTTP parser: request line, headers,
// Content-Length and chunked bodies, pipelining), judged by a real policy (test/http/harness.ts:
// real SidecarContext, PolicyStore, audit), and forwarded to a real upstream HTTP server that
// records what reaches it. Each input is followed by a well-formed closing request, so a complete
// input ends with the connection. Invariants:
//  - The guard never throws out of its handlers (an unhandled exception or rejection ends the
//    process: a finding) and never stalls the event loop (libFuzzer's timeout).
//  - Only what the policy allows reaches the upstream, read the way a decoding upstream reads it:
//    the path, decoded once, has no dot or empty segments, lies under /customers/ exactly as the
//    allow rule spells it, and no reading that folds case or cuts `;` parameters lands under a
//    denied path (/admin/**, /customers/*/export); the method is GET or POST.
//  - The agent's identity token, forged identity assertions and hop-by-hop headers never reach it.
//  - A refusal is a clear error: a 403 from the guard carries JSON {error, rule|reason}.
import { connect } from "node:net";
import { isForgeableIdentityHeader } from "../../sidecar/src/protocols/http/headers.ts";
import { policy, startSidecar, startUpstream } from "../http/harness.ts";
import { fail } from "./support/invariant.ts";

const upstream = await startUpstream((_req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end('{"ok":true}');
});
const sidecar = await startSidecar({
  policies: [
    policy("fuzz", {
      connections: [
        {
          name: "api",
          protocol: "http",
          target: { host: "127.0.0.1", port: upstream.port },
          tls: { mode: "disable" },
        },
      ],
      rules: [
        {
          name: "read-customers",
          action: "allow",
          match: { http: { methods: ["GET", "POST"], paths: ["/customers/**"] } },
        },
        { name: "no-admin", action: "deny", match: { http: { paths: ["/admin/**"] } } },
        { name: "no-exports", action: "deny", match: { http: { paths: ["/customers/*/export"] } } },
      ],
    }),
  ],
  guard: { upstreamTimeoutMs: 2_000 },
});
const port = Number(new URL(await sidecar.listen("api")).port);
const CLOSING = Buffer.from("GET /customers/end HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n");
const NEVER_FORWARDED = [
  "x-airlock-identity",
  "x-airlock-reason",
  "proxy-authorization",
  "te",
  "trailer",
  "upgrade",
  "keep-alive",
  "proxy-connection",
];

function loose(path: string): string {
  return `/${path
    .toLowerCase()
    .split("/")
    .map((s) => s.split(";", 1)[0] as string)
    .filter((s) => s !== "")
    .join("/")}`;
}

function checkForwarded(input: Buffer): void {
  for (const r of upstream.requests.splice(0)) {
    const details = { input: input.toString("latin1"), method: r.method, url: r.url, headers: r.headers };
    if (r.method !== "GET" && r.method !== "POST")
      fail("a method the policy does not allow reached the upstream", details);
    const path = r.url.split("?", 1)[0] as string;
    let decoded: string;
    try {
      decoded = decodeURIComponent(path);
    } catch {
      fail("a malformed path reached the upstream", details);
    }
    const segments = decoded.split("/").slice(1);
    if (segments.some((s, i) => s === "." || s === ".." || (s === "" && i < segments.length - 1)))
      fail("a path with dot or empty segments reached the upstream", details);
    // `/customers/**` matches /customers itself too (policy/glob.ts).
    if (decoded !== "/customers" && !decoded.startsWith("/customers/"))
      fail("a path outside the allow rule reached the upstream", details);
    const l = loose(decoded);
    if (l === "/admin" || l.startsWith("/admin/") || /^\/customers\/[^/]+\/export$/.test(l))
      fail("a denied path reached the upstream", details);
    for (const name of Object.keys(r.headers))
      if (NEVER_FORWARDED.includes(name) || isForgeableIdentityHeader(name))
        fail(`header ${name} reached the upstream`, details);
  }
}

function checkResponses(input: Buffer, received: Buffer): void {
  const text = received.toString("latin1");
  for (const m of text.matchAll(/HTTP\/1\.1 403 [^\r]*\r\n([\s\S]*?)\r\n\r\n/g)) {
    const head = m[1] ?? "";
    if (!/content-type: application\/json/i.test(head))
      fail("a 403 without a JSON body", { input: input.toString("latin1"), response: text.slice(0, 2000) });
    const at = (m.index ?? 0) + m[0].length;
    const body = text.slice(at, at + 2000);
    if (!/"error":"/.test(body))
      fail("a 403 without an error field", {
        input: input.toString("latin1"),
        response: text.slice(0, 2000),
      });
  }
}

export function fuzz(data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1", () => socket.write(Buffer.concat([data, CLOSING])));
    // An input that leaves a request incomplete keeps the connection waiting for more: the agent
    // gives up after a while (not a finding); the guard must then let go of it.
    const giveUp = setTimeout(() => socket.destroy(), 300);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(giveUp);
      // Let anything already forwarded land at the upstream before judging it.
      setImmediate(() => {
        try {
          checkForwarded(data);
          checkResponses(data, Buffer.concat(chunks));
          resolve();
        } catch (err) {
          reject(err);
        }
      });
    });
  });
}
