// /readyz tells the truth about listeners: a connection whose listen port is taken by another
// process keeps the sidecar unready (naming the connection and the port) until the port frees up
// and the sidecar has it. In a pod the startup probe waits on /readyz, so the agent never starts
// talking to whatever holds the port.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type Sidecar, startSidecar } from "../../sidecar/src/app.ts";
import { json, send, startUpstream, type Upstream } from "../http/harness.ts";

let dir: string;
let upstream: Upstream;
let sc: Sidecar | undefined;
const squatters: Server[] = [];

/** Another process's listener on a free port: what the sidecar will find taken. */
async function squat(): Promise<Server> {
  const s = createServer((socket) => socket.end("I am not the sidecar\n"));
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  squatters.push(s);
  return s;
}
const portOf = (s: Server) => (s.address() as AddressInfo).port;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "airlock-readiness-"));
  upstream = await startUpstream((req, res) => json(res, 200, { ok: true, path: req.url }));
});

afterAll(async () => {
  await sc?.close();
  for (const s of squatters) if (s.listening) await new Promise<void>((r) => s.close(() => r()));
  await upstream?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("a taken listen port", () => {
  it("keeps /readyz at 503 with the reason, then turns ready once the port is the sidecar's", async () => {
    const httpSquatter = await squat();
    const pgSquatter = await squat();
    const httpPort = portOf(httpSquatter);
    const pgPort = portOf(pgSquatter);
    const policyFile = join(dir, "policy.yaml");
    await writeFile(
      policyFile,
      stringify({
        apiVersion: "airlock.dev/v1alpha1",
        kind: "AgentAccessPolicy",
        metadata: { name: "ports", namespace: "agents" },
        spec: {
          connections: [
            {
              name: "api",
              protocol: "http",
              target: { host: "127.0.0.1", port: upstream.port },
              tls: { mode: "disable" },
              listen: { port: httpPort },
            },
            {
              name: "db",
              protocol: "postgres",
              target: { host: "127.0.0.1", port: 1 },
              listen: { port: pgPort },
            },
          ],
          rules: [{ name: "all", action: "allow", connections: ["api"] }],
        },
      }),
    );
    sc = await startSidecar({
      policyFiles: [policyFile],
      serviceAccount: "agents/agent",
      secretsDir: dir,
      hashKeyFile: join(dir, "hash.key"),
      adminPort: 0,
      proxyPort: 0,
      logger: pino({ level: "silent" }),
    });
    const readyz = async () => {
      const r = await fetch(`http://127.0.0.1:${sc?.adminPort}/readyz`);
      return { status: r.status, body: (await r.json()) as { status: string; reason?: string } };
    };
    const first = await readyz();
    expect(first.status).toBe(503);
    expect(first.body.status).toBe("not ready");
    expect(first.body.reason).toContain(`connection api cannot listen on port ${httpPort}: `);
    expect(first.body.reason).toContain(`connection db cannot listen on port ${pgPort}: `);
    expect(first.body.reason).toMatch(/EADDRINUSE/);

    // Still not ready while one of them is held.
    await new Promise<void>((r) => httpSquatter.close(() => r()));
    await expect
      .poll(async () => (await readyz()).body.reason ?? "", { timeout: 10_000 })
      .not.toContain("connection api");
    expect((await readyz()).status).toBe(503);
    const viaListener = await send(`http://127.0.0.1:${httpPort}/hello`);
    expect(viaListener.json()).toEqual({ ok: true, path: "/hello" });

    await new Promise<void>((r) => pgSquatter.close(() => r()));
    await expect.poll(async () => (await readyz()).status, { timeout: 10_000 }).toBe(200);
    expect((await readyz()).body).toEqual({ status: "ready" });
  });
});

describe("a reload adding a listener", () => {
  it("is not ready from the swap until the new port accepts", async () => {
    const s = sc as Sidecar;
    const free = await squat();
    const port = portOf(free);
    await new Promise<void>((r) => free.close(() => r()));
    expect((await fetch(`http://127.0.0.1:${s.adminPort}/readyz`)).status).toBe(200);
    const connections = [...s.ctx.policies.current().connections.values()].map((c) => c.spec);
    s.ctx.policies.update([
      {
        apiVersion: "airlock.dev/v1alpha1",
        kind: "AgentAccessPolicy",
        metadata: { name: "ports", namespace: "agents" },
        spec: {
          connections: [
            ...connections,
            { name: "db2", protocol: "postgres", target: { host: "127.0.0.1", port: 2 }, listen: { port } },
          ],
          rules: [{ name: "all", action: "allow", connections: ["api"] }],
        },
      },
    ]);
    // The swap happened; the port is opened by a sync that has not run yet.
    expect(s.listeners.notReadyReason()).toBe("opening the listeners of the policy now in force");
    await expect.poll(() => s.listeners.notReadyReason() ?? "ready", { timeout: 10_000 }).toBe("ready");
    const accepted = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    expect(accepted).toBe(true);
  });
});
