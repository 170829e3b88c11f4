// The transparent listener on loopback. What the REDIRECT rule would have recorded as the original
// destination is supplied through the `originalDestination` seam (in dial order); the real
// SO_ORIGINAL_DST path, with real iptables, is test/netns.
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { tcpForwarder, testContext, testPolicy } from "../../../test/fixtures/transparent.ts";
import type { CompiledConnection } from "../policy/compile.ts";
import type { AcceptInfo, ConnectionHandler } from "../protocols/handler.ts";
import { createTransparentListener, type TransparentListener } from "./listener.ts";
import type { OriginalDestination } from "./original-dst.ts";

interface Accepted {
  connection: string;
  info: AcceptInfo;
}

/** Records what it was handed and answers `OK <connection>` to the client. */
function recorder(): ConnectionHandler & { seen: Accepted[] } {
  const seen: Accepted[] = [];
  return {
    seen,
    accept(socket: Socket, connection: CompiledConnection, info: AcceptInfo) {
      seen.push({ connection: connection.spec.name, info });
      socket.end(`OK ${connection.spec.name}\n`);
    },
    async drain() {},
  };
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(
  policies: AgentAccessPolicy[],
  opts: {
    resolve?: (host: string) => Promise<readonly string[]>;
    handlers?: Partial<Record<"http" | "postgres" | "ssh", ConnectionHandler>>;
    peekTimeoutMs?: number;
    missRefreshIntervalMs?: number;
  } = {},
) {
  const { ctx, audit, metrics } = testContext(policies);
  const queue: (OriginalDestination | Error)[] = [];
  const handler = recorder();
  const listener: TransparentListener = await createTransparentListener({
    ctx,
    port: 0,
    hosts: ["127.0.0.1"],
    handlers: opts.handlers ?? { http: handler, postgres: handler, ssh: handler },
    resolve: opts.resolve ?? (async (h) => Promise.reject(new Error(`no DNS for ${h} in this test`))),
    peekTimeoutMs: opts.peekTimeoutMs ?? 2_000,
    missRefreshIntervalMs: opts.missRefreshIntervalMs ?? 60_000,
    originalDestination: () => {
      const next = queue.shift();
      if (!next || next instanceof Error)
        throw Object.assign(next ?? new Error("not redirected"), { code: "ENOENT" });
      return next;
    },
  });
  cleanups.push(() => listener.close());
  const port = (listener.addresses()[0] as AddressInfo).port;

  /** Connects "to" `dst` (that is, to the listener, with `dst` as the recorded original destination). */
  function dial(dst: OriginalDestination | Error): Dialed {
    queue.push(dst);
    const socket = connect(port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    const chunks: Buffer[] = [];
    let reset = false;
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNRESET") reset = true;
    });
    // Not events.once: it rejects on 'error', and a reset is an expected outcome here.
    const done = new Promise<{ data: string; reset: boolean }>((resolve) =>
      socket.once("close", () => resolve({ data: Buffer.concat(chunks).toString(), reset })),
    );
    return { socket, done, received: () => Buffer.concat(chunks) };
  }
  return { ctx, audit, metrics, listener, handler, dial, port };
}

const v4 = (address: string, port: number): OriginalDestination => ({ address, port, family: 4 });

interface Dialed {
  socket: Socket;
  /** Resolves at close: what came, and whether the peer reset the connection. */
  done: Promise<{ data: string; reset: boolean }>;
  received(): Buffer;
}

const pg = (name: string, host: string, port = 5432) => ({
  name,
  protocol: "postgres" as const,
  target: { host, port },
});
const http = (name: string, host: string, port = 443, aliases?: string[]) => ({
  name,
  protocol: "http" as const,
  target: { host, port, ...(aliases ? { aliases } : {}) },
});

describe("transparent listener: mapping by address", () => {
  it("a target given as an IP literal", async () => {
    const t = await setup([testPolicy("p", [pg("orders", "10.0.0.5")])]);
    const r = await t.dial(v4("10.0.0.5", 5432)).done;
    expect(r).toEqual({ data: "OK orders\n", reset: false });
    expect(t.handler.seen).toEqual([{ connection: "orders", info: { via: "transparent" } }]);
    expect(t.audit).toEqual([]);
  });

  it("a target given as a host name, resolved by the sidecar", async () => {
    const t = await setup([testPolicy("p", [pg("orders", "db.internal")])], {
      resolve: async (h) => (h === "db.internal" ? ["10.0.0.7", "fd00::7"] : []),
    });
    expect((await t.dial(v4("10.0.0.7", 5432)).done).data).toBe("OK orders\n");
    const v6 = t.dial({ address: "FD00:0:0::7", port: 5432, family: 6 });
    expect((await v6.done).data).toBe("OK orders\n");
    // Same address, another port: not this connection.
    expect((await t.dial(v4("10.0.0.7", 5433)).done).reset).toBe(true);
  });

  it("an alias that is an address", async () => {
    const t = await setup([testPolicy("p", [http("api", "api.example.com", 443, ["192.0.2.10"])])]);
    expect((await t.dial(v4("192.0.2.10", 443)).done).data).toBe("OK api\n");
  });

  it("re-resolves on an unknown address (the agent may have a fresher DNS answer)", async () => {
    let answer = ["10.0.0.1"];
    const t = await setup([testPolicy("p", [pg("orders", "db.internal")])], {
      resolve: async () => answer,
      missRefreshIntervalMs: 0,
    });
    answer = ["10.0.0.2"];
    expect((await t.dial(v4("10.0.0.2", 5432)).done).data).toBe("OK orders\n");
  });

  it("follows policy changes", async () => {
    const t = await setup([testPolicy("p", [pg("orders", "10.0.0.5")])]);
    expect((await t.dial(v4("10.0.0.6", 5432)).done).reset).toBe(true);
    t.ctx.policies.update([testPolicy("p", [pg("orders", "10.0.0.5"), pg("billing", "10.0.0.6")])]);
    expect((await t.dial(v4("10.0.0.6", 5432)).done).data).toBe("OK billing\n");
  });
});

describe("transparent listener: mapping by first bytes", () => {
  const twoHosts = [testPolicy("p", [http("api-a", "a.example.com"), http("api-b", "b.example.com")])];
  const sameAddress = async () => ["203.0.113.9"];

  it("TLS server name picks among connections sharing an address; the ClientHello is the head", async () => {
    const t = await setup(twoHosts, { resolve: sameAddress });
    const raw = t.dial(v4("203.0.113.9", 443));
    const tls = tlsConnect({ socket: raw.socket, servername: "b.example.com" });
    tls.on("error", () => {});
    await raw.done;
    expect(t.handler.seen.map((s) => s.connection)).toEqual(["api-b"]);
    expect(t.handler.seen[0]?.info.head?.[0]).toBe(0x16);
  });

  it("HTTP Host header picks among connections sharing an address", async () => {
    const t = await setup(twoHosts, { resolve: sameAddress });
    const c = t.dial(v4("203.0.113.9", 443));
    c.socket.write("GET /v1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
    expect((await c.done).data).toBe("OK api-a\n");
    expect(t.handler.seen[0]?.info.head?.toString()).toBe("GET /v1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
  });

  it("an address the sidecar never resolved, named by Host: the configured target is used", async () => {
    const t = await setup(twoHosts, { resolve: sameAddress });
    const c = t.dial(v4("198.51.100.1", 443));
    c.socket.write("GET / HTTP/1.1\r\nHost: b.example.com:443\r\n\r\n");
    expect((await c.done).data).toBe("OK api-b\n");
  });

  it("a Host that is not in the policy is refused and audited", async () => {
    const t = await setup(twoHosts, { resolve: sameAddress });
    const c = t.dial(v4("203.0.113.9", 443));
    c.socket.write("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    expect((await c.done).reset).toBe(true);
    expect(t.audit[0]?.decision.reason).toMatch(
      /HTTP host evil.example is not a policy connection on port 443/,
    );
  });

  it("a name two connections target is nobody's: refused as ambiguous, naming both", async () => {
    // One upstream behind two connections (each with its own listener in practice).
    const t = await setup(
      [testPolicy("p", [http("reader", "api.example.com"), http("writer", "API.example.com")])],
      {
        resolve: sameAddress,
      },
    );
    const c = t.dial(v4("203.0.113.9", 443));
    c.socket.write("GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    expect((await c.done).reset).toBe(true);
    expect(t.handler.seen).toEqual([]);
    expect(t.audit[0]?.decision.reason).toMatch(
      /^ambiguous destination 203.0.113.9:443: connections reader, writer all target api.example.com:443; use their local listeners/,
    );
  });

  it("a client that says nothing is refused after the peek timeout", async () => {
    const t = await setup(twoHosts, { resolve: sameAddress, peekTimeoutMs: 150 });
    const r = await t.dial(v4("203.0.113.9", 443)).done;
    expect(r.reset).toBe(true);
    expect(t.audit[0]?.decision.reason).toMatch(/ambiguous destination 203.0.113.9:443: .*within 150 ms/);
  });

  it("the head is forwarded before the rest of the stream (raw TCP forwarder to a real echo server)", async () => {
    const echo: Server = createServer((s) => s.pipe(s));
    echo.listen(0, "127.0.0.1");
    await once(echo, "listening");
    cleanups.push(() => echo.close());
    const echoPort = (echo.address() as AddressInfo).port;
    const policies = [testPolicy("p", [http("echo", "127.0.0.1", echoPort, ["echo.test"])])];
    const { ctx } = testContext(policies);
    const forwarder = tcpForwarder(ctx);
    const t = await setup(policies, { handlers: { http: forwarder } });
    // An address the policy does not list, on the connection's port: the Host header decides.
    const c = t.dial(v4("198.51.100.7", echoPort));
    const request = "POST /x HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\n\r\n";
    c.socket.write(request);
    await new Promise((r) => setTimeout(r, 50));
    c.socket.write("hello");
    await new Promise<void>((resolve) => {
      const check = () => (c.received().length >= request.length + 5 ? resolve() : setTimeout(check, 10));
      check();
    });
    expect(c.received().toString()).toBe(`${request}hello`);
    expect(forwarder.accepted[0]?.head?.toString()).toBe(request);
  });
});

describe("transparent listener: refusals", () => {
  it("unknown destination: reset, one audit event, the metric", async () => {
    const t = await setup([testPolicy("p", [pg("orders", "10.0.0.5")])]);
    const r = await t.dial(v4("10.9.9.9", 5432)).done;
    expect(r).toEqual({ data: "", reset: true });
    expect(t.audit).toHaveLength(1);
    expect(t.audit[0]).toMatchObject({
      connection: "",
      protocol: "tcp",
      identity: { serviceAccount: "system:serviceaccount:agents:agent", pod: "agent-0", namespace: "agents" },
      operation: { kind: "tcp", destination: "10.9.9.9:5432" },
      decision: { action: "deny", reason: "unknown destination 10.9.9.9:5432: no policy connection for it" },
    });
    expect((await t.metrics.unknownDestinations.get()).values[0]?.value).toBe(1);
    expect(t.handler.seen).toEqual([]);
  });

  it("IPv6 destinations are written in brackets", async () => {
    const t = await setup([]);
    await t.dial({ address: "2001:db8::1", port: 443, family: 6 }).done;
    expect(t.audit[0]?.operation).toEqual({ kind: "tcp", destination: "[2001:db8::1]:443" });
  });

  it("several non-HTTP connections on one address are ambiguous", async () => {
    const t = await setup([testPolicy("p", [pg("a", "10.0.0.5"), pg("b", "db.internal")])], {
      resolve: async () => ["10.0.0.5"],
    });
    expect((await t.dial(v4("10.0.0.5", 5432)).done).reset).toBe(true);
    expect(t.audit[0]?.decision.reason).toMatch(/^ambiguous destination 10.0.0.5:5432: connections a, b/);
  });

  it("a connection loop back into the capture port", async () => {
    const t = await setup([testPolicy("p", [pg("self", "127.0.0.1", 1)])]);
    expect((await t.dial(v4("127.0.0.1", t.port)).done).reset).toBe(true);
    expect(t.audit[0]?.decision.reason).toMatch(/connection loop/);
  });

  it("a socket that was not redirected (no original destination)", async () => {
    const t = await setup([]);
    expect((await t.dial(new Error("ENOENT")).done).reset).toBe(true);
    expect(t.audit[0]).toMatchObject({
      operation: { kind: "tcp", destination: "unknown" },
      decision: { reason: "no original destination (ENOENT): not a redirected connection" },
    });
  });

  it("a connection whose protocol has no handler in this sidecar", async () => {
    const t = await setup([testPolicy("p", [{ ...pg("box", "10.0.0.8", 22), protocol: "ssh" as const }])], {
      handlers: { http: recorder() },
    });
    expect((await t.dial(v4("10.0.0.8", 22)).done).reset).toBe(true);
    expect(t.audit[0]).toMatchObject({
      connection: "box",
      decision: { reason: expect.stringMatching(/no ssh handler/) },
    });
  });

  it("close() stops accepting", async () => {
    const t = await setup([]);
    await t.listener.close();
    const c = connect(t.port, "127.0.0.1");
    const [err] = (await once(c, "error").catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
    expect(err.code).toBe("ECONNREFUSED");
  });
});
