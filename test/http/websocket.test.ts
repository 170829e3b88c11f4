// WebSocket upgrades pass only when a rule allows them (`websocket: true`); the upgrade request
// carries the sidecar's credential. The upstream is a minimal RFC 6455 echo server written here;
// the client is Node's built-in WebSocket.
import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { policy, type Sidecar, startSidecar, until } from "./harness.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

interface EchoServer {
  port: number;
  upgrades: IncomingHttpHeaders[];
  paths: string[];
  close(): Promise<void>;
}

/** Echoes text frames back (client frames are masked, server frames are not). */
function echoFrames(socket: Duplex): void {
  let buf = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = (buf[0] ?? 0) & 0x0f;
      let len = (buf[1] ?? 0) & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        offset = 4;
      }
      if (buf.length < offset + 4 + len) return;
      const mask = buf.subarray(offset, offset + 4);
      const payload = Buffer.from(buf.subarray(offset + 4, offset + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
      buf = buf.subarray(offset + 4 + len);
      if (opcode === 0x8) {
        socket.end(Buffer.from([0x88, 0]));
        return;
      }
      const reply = Buffer.from(`echo:${payload.toString("utf8")}`);
      socket.write(Buffer.concat([Buffer.from([0x80 | opcode, reply.length]), reply]));
    }
  });
}

async function startEcho(): Promise<EchoServer> {
  const upgrades: IncomingHttpHeaders[] = [];
  const paths: string[] = [];
  const sockets = new Set<Duplex>();
  const server: Server = createServer((_req, res) => {
    res.writeHead(426).end();
  });
  server.on("upgrade", (req, socket: Duplex) => {
    sockets.add(socket);
    upgrades.push(req.headers);
    paths.push(req.url ?? "");
    const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"]}${GUID}`).digest("base64");
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    echoFrames(socket);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    upgrades,
    paths,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let echo: EchoServer;
let sc: Sidecar;
let base: string;

function spec(port: number): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "realtime",
        protocol: "http",
        target: { host: "127.0.0.1", port },
        tls: { mode: "disable" },
        credentials: { secretRef: { name: "rt" } },
      },
    ],
    rules: [
      // Plain HTTP everywhere; upgrades only under /ws/.
      { name: "http-any", action: "allow", match: { http: { methods: ["GET"], paths: ["/**"] } } },
      {
        name: "ws-feed",
        action: "allow",
        match: { http: { methods: ["GET"], paths: ["/ws/**"], websocket: true } },
      },
    ],
  };
}

beforeAll(async () => {
  echo = await startEcho();
  sc = await startSidecar({
    policies: [policy("rt", spec(echo.port))],
    secrets: { rt: { token: "ws-secret" } },
  });
  base = await sc.listen("realtime");
});

afterAll(async () => {
  await sc.close();
  await echo.close();
});

/** A raw upgrade request: resolves with the HTTP status (101 or the refusal) and body. */
function rawUpgrade(path: string): Promise<{ status: number; body: string; socket?: Socket }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({
      host: hostname,
      port,
      path,
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
        authorization: "Bearer agent-own",
      },
    });
    req.on("upgrade", (res, socket: Socket) => resolve({ status: res.statusCode ?? 0, body: "", socket }));
    req.on("response", (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString("utf8");
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("WebSocket upgrades", () => {
  it("refuses an upgrade no websocket rule allows with 403 JSON", async () => {
    const before = echo.upgrades.length;
    const res = await rawUpgrade("/api/stream");
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({
      error: "denied",
      reason: "no rule allows this operation (default deny)",
    });
    expect(echo.upgrades.length).toBe(before);
    expect(sc.audit.at(-1)).toMatchObject({
      operation: { kind: "http", method: "GET", path: "/api/stream", websocket: true },
      decision: { action: "deny" },
    });
  });

  it("lets the built-in WebSocket client through where a rule allows it, with the credential injected", async () => {
    const ws = new WebSocket(`${base.replace("http", "ws")}/ws/feed?room=1`);
    const reply = await new Promise<string>((resolve, reject) => {
      ws.addEventListener("open", () => ws.send("hello"));
      ws.addEventListener("message", (e) => resolve(String(e.data)));
      ws.addEventListener("error", () => reject(new Error("websocket error")));
    });
    expect(reply).toBe("echo:hello");
    ws.close();
    const headers = echo.upgrades.at(-1);
    expect(headers?.authorization).toBe("Bearer ws-secret");
    expect(echo.paths.at(-1)).toBe("/ws/feed?room=1");
    const event = await until(() =>
      sc.audit.find((e) => e.operation.kind === "http" && e.operation.path === "/ws/feed"),
    );
    expect(event).toMatchObject({
      decision: { action: "allow", rule: "ws-feed" },
      upstream: { status: 101 },
    });
  });

  it("drops the agent's own credential from an allowed upgrade", async () => {
    const res = await rawUpgrade("/ws/raw");
    expect(res.status).toBe(101);
    res.socket?.destroy();
    expect(echo.upgrades.at(-1)?.authorization).toBe("Bearer ws-secret");
  });

  it("treats other upgrades (h2c) as plain requests", async () => {
    const { hostname, port } = new URL(base);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: hostname, port, path: "/plain", headers: { connection: "Upgrade", upgrade: "h2c" } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end();
    });
    // The echo upstream answers plain requests with 426; what matters is that it got no upgrade.
    expect(status).toBe(426);
  });
});
