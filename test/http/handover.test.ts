// Sockets handed over by the transparent listener (plain HTTP via accept(), agent-side TLS via
// acceptTunnel()), listeners following the policy (syncListeners) and the preStop drain.
import "reflect-metadata";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import type { AcceptInfo } from "../../sidecar/src/protocols/handler.ts";
import { createCA, issueServingCert } from "../envtest/pki.ts";
import { closedPortUrl } from "../fixtures/oidc-provider.ts";
import {
  json,
  policy,
  type Sidecar,
  send,
  sleep,
  startSidecar,
  startUpstream,
  type Upstream,
  until,
} from "./harness.ts";

let plain: Upstream;
let secure: Upstream;
let caPem: string;

function spec(listenPort?: number): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "plain",
        protocol: "http",
        target: { host: "127.0.0.1", port: plain.port },
        tls: { mode: "disable" },
        credentials: { secretRef: { name: "plain-token" } },
        ...(listenPort ? { listen: { port: listenPort } } : {}),
      },
      {
        name: "tls-ok",
        protocol: "http",
        target: { host: "localhost", port: secure.port },
        tls: { mode: "passthrough" },
      },
      { name: "tls-no", protocol: "http", target: { host: "127.0.0.1", port: secure.port } },
    ],
    rules: [
      { name: "plain-read", action: "allow", connections: ["plain"], match: { http: { methods: ["GET"] } } },
      { name: "tunnel", action: "allow", connections: ["tls-ok"], match: { http: { methods: ["CONNECT"] } } },
    ],
  };
}

async function sidecar(listenPort?: number): Promise<Sidecar> {
  return startSidecar({
    policies: [policy("handover", spec(listenPort))],
    secrets: { "plain-token": { token: "t0k" } },
  });
}

/** A stand-in for the transparent listener: reads the first bytes, then hands the socket over. */
async function capture(
  onSocket: (socket: Socket, info: AcceptInfo) => void,
): Promise<{ port: number; server: NetServer }> {
  const server = createNetServer((socket) => {
    socket.once("data", (head: Buffer) => {
      socket.pause();
      onSocket(socket, { via: "transparent", head });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const address = server.address();
  return { port: typeof address === "object" && address ? address.port : 0, server };
}

const freePort = async () => Number(new URL(await closedPortUrl()).port);

beforeAll(async () => {
  const ca = await createCA("handover-ca");
  caPem = ca.certPem;
  const serving = await issueServingCert(ca, ["localhost"]);
  plain = await startUpstream((req, res) => {
    if (req.url === "/slow") return void setTimeout(() => json(res, 200, { slow: true }), 300);
    json(res, 200, { url: req.url, auth: req.headers.authorization ?? null });
  });
  secure = await startUpstream((_req, res) => json(res, 200, { secure: true }), {
    key: serving.keyPem,
    cert: serving.certPem,
  });
});

afterAll(async () => {
  await plain.close();
  await secure.close();
});

describe("sockets from the transparent listener", () => {
  it("serves plain HTTP handed over with accept(), including the bytes already read", async () => {
    const sc = await sidecar();
    const conn = sc.ctx.policies.current().connections.get("plain");
    if (!conn) throw new Error("no connection");
    const cap = await capture((socket, info) => sc.guard.accept(socket, conn, info));
    try {
      const res = await send(`http://127.0.0.1:${cap.port}/items/1`);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ url: "/items/1", auth: "Bearer t0k" });
      expect(sc.audit.at(-1)).toMatchObject({ connection: "plain", decision: { action: "allow" } });
    } finally {
      cap.server.close();
      await sc.close();
    }
  });

  it("relays agent-side TLS to a passthrough connection when a rule allows CONNECT, and cuts it otherwise", async () => {
    const sc = await sidecar();
    const set = sc.ctx.policies.current();
    const target = { current: set.connections.get("tls-ok") };
    const cap = await capture((socket, info) => {
      if (target.current) sc.guard.acceptTunnel(socket, target.current, info);
    });
    const get = () =>
      new Promise<string>((resolve, reject) => {
        const tls = tlsConnect({ host: "127.0.0.1", port: cap.port, servername: "localhost", ca: caPem });
        let out = "";
        tls.on("secureConnect", () =>
          tls.write("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        );
        tls.on("data", (c: Buffer) => {
          out += c.toString("utf8");
        });
        tls.on("end", () => resolve(out));
        tls.on("close", () => resolve(out));
        tls.on("error", reject);
      });
    try {
      expect(await get()).toMatch(/^HTTP\/1\.1 200[\s\S]*"secure":true/);
      expect(await until(() => sc.audit.find((e) => e.connection === "tls-ok"))).toMatchObject({
        connection: "tls-ok",
        operation: { kind: "http-tunnel" },
        decision: { action: "allow", rule: "tunnel" },
      });
      target.current = set.connections.get("tls-no");
      expect(await get().catch(() => "")).toBe("");
      await until(() => sc.audit.find((e) => e.connection === "tls-no"));
      expect(sc.audit.at(-1)).toMatchObject({ connection: "tls-no", decision: { action: "deny" } });
    } finally {
      cap.server.close();
      await sc.close();
    }
  });
});

describe("listeners and drain", () => {
  it("opens, moves and closes listeners as the policy changes", async () => {
    const first = await freePort();
    const sc = await sidecar(first);
    try {
      await sc.guard.syncListeners();
      expect((await send(`http://127.0.0.1:${first}/a`)).status).toBe(200);
      const second = await freePort();
      sc.setPolicies([policy("handover", spec(second))]);
      await sc.guard.syncListeners();
      expect((await send(`http://127.0.0.1:${second}/b`)).status).toBe(200);
      await expect(send(`http://127.0.0.1:${first}/a`)).rejects.toThrow(/ECONNREFUSED/);
      sc.setPolicies([policy("handover", spec())]);
      await sc.guard.syncListeners();
      await expect(send(`http://127.0.0.1:${second}/b`)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await sc.close();
    }
  });

  it("drains: in-flight requests finish, new connections are refused", async () => {
    const sc = await sidecar();
    const base = await sc.listen("plain");
    try {
      const slow = send(`${base}/slow`);
      await sleep(50);
      let drained = false;
      const draining = sc.guard.drain().then(() => {
        drained = true;
      });
      await sleep(20);
      await expect(send(`${base}/a`)).rejects.toThrow(/ECONNREFUSED/);
      expect(drained).toBe(false);
      const res = await slow;
      expect(res.status).toBe(200);
      expect(res.headers.connection).toBe("close");
      await draining;
      expect(drained).toBe(true);
    } finally {
      await sc.close();
    }
  });
});
