// Faults on the upstream side, for each protocol guard with a real server behind it (PostgreSQL,
// an HTTP server, OpenSSH) and a real client in front: the upstream is down (nothing listens),
// slow (accepts and says nothing), or resets mid-response (a relay in front of it is cut while the
// answer streams). The agent must get a clear error within the documented bound, and the audit
// event of the operation must say that it failed (upstream.error), never that it completed.
import { createServer, type Server, type Socket } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type Relay, relay } from "../harness/relay.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import {
  type Sidecar as HttpSidecar,
  policy as httpPolicy,
  send,
  startSidecar as startHttp,
} from "../http/harness.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "../postgres/support.ts";
import {
  agentClient,
  exec,
  KNOWN_HOSTS,
  type SshSidecar,
  sshPolicy,
  startSshSidecar,
} from "../ssh/support.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP server that accepts and never answers (an upstream hung before its first byte). */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const s: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on("error", () => {});
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    port: (s.address() as { port: number }).port,
    async close() {
      for (const x of sockets) x.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

/** Times a promise that must settle (resolve or reject) within `ms`. */
async function settles<T>(p: Promise<T>, ms: number): Promise<{ value?: T; error?: Error; ms: number }> {
  const t0 = Date.now();
  const out = await Promise.race([
    p.then(
      (value) => ({ value }),
      (error: Error) => ({ error }),
    ),
    sleep(ms).then(() => ({ error: new Error(`hung: not settled within ${ms} ms`) })),
  ]);
  return { ...out, ms: Date.now() - t0 };
}

describe("PostgreSQL upstream", () => {
  let server: PostgresServer;
  let link: Relay;
  const guards: GuardedPostgres[] = [];
  const guardFor = async (port: number, connectTimeoutMs = 10_000) => {
    const g = await startGuard(pgPolicy({ ...server, port }), {
      credential: server.users.scram,
      handler: { connectTimeoutMs },
    });
    guards.push(g);
    return g;
  };
  const client = (g: GuardedPostgres) =>
    new pg.Client({ host: "127.0.0.1", port: g.port, user: "agent", database: server.database });

  beforeAll(async () => {
    server = await startPostgres();
    link = relay(new URL(`tcp://127.0.0.1:${server.port}`));
  });
  afterAll(async () => {
    for (const g of guards) await g.close();
    await link?.down();
    await server?.stop();
  });

  it("down: the agent's connection is refused at once with a connection error", async () => {
    const g = await guardFor(await freePort());
    const r = await settles(client(g).connect(), 5_000);
    expect(r.error).toMatchObject({ code: "08006", message: expect.stringMatching(/cannot connect/) });
    expect(r.ms).toBeLessThan(3_000);
  });

  it("slow (accepts, never answers): refused at the connect timeout, not hung", async () => {
    const silent = await silentServer();
    try {
      const g = await guardFor(silent.port, 1_500);
      const r = await settles(client(g).connect(), 10_000);
      expect(r.error).toMatchObject({
        code: "08006",
        message: expect.stringMatching(/did not complete startup/),
      });
      expect(r.ms).toBeGreaterThanOrEqual(1_400);
      expect(r.ms).toBeLessThan(5_000);
    } finally {
      await silent.close();
    }
  });

  it("reset mid-result: the agent gets an error, the statement's audit event says it did not complete", async () => {
    const g = await guardFor(await link.up());
    const c = client(g);
    c.on("error", () => {});
    await c.connect();
    expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    const rows = c.query("SELECT i, repeat('x', 200) FROM generate_series(1, 2000000) i");
    await sleep(300); // rows are streaming
    await link.down();
    const r = await settles(rows, 10_000);
    expect(r.error?.message).toMatch(/closed the connection|terminated/);
    const events = g.audit;
    expect(events).toHaveLength(2);
    expect(events[0]?.upstream).toEqual({ status: "SELECT 1" });
    expect(events[1]?.upstream?.status).toBeUndefined();
    expect(events[1]?.upstream?.error).toBe("upstream_closed");
    await c.end().catch(() => {});
  });
});

describe("HTTP upstream", () => {
  let sc: HttpSidecar;
  let base: string;
  let silent: { port: number; close(): Promise<void> };
  let broken: Server;
  let brokenPort: number;
  const brokenSockets = new Set<Socket>();
  let downPort: number;

  beforeAll(async () => {
    silent = await silentServer();
    downPort = await freePort();
    // Resets: before its answer (/before), or after the head and part of the body (/mid).
    broken = createServer((sock) => {
      brokenSockets.add(sock);
      sock.on("error", () => {});
      sock.once("data", (d: Buffer) => {
        if (d.toString().startsWith("GET /mid")) {
          sock.write(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n",
          );
          sock.write(Buffer.alloc(1000, 1));
          setTimeout(() => sock.resetAndDestroy(), 100);
        } else sock.resetAndDestroy();
      });
    });
    await new Promise<void>((r) => broken.listen(0, "127.0.0.1", r));
    brokenPort = (broken.address() as { port: number }).port;
    const conn = (name: string, port: number) => ({
      name,
      protocol: "http" as const,
      target: { host: "127.0.0.1", port },
      tls: { mode: "disable" as const },
    });
    sc = await startHttp({
      policies: [
        httpPolicy("faults", {
          connections: [conn("down", downPort), conn("slow", silent.port), conn("broken", brokenPort)],
          rules: [{ name: "all", action: "allow" }],
        }),
      ],
      guard: { upstreamTimeoutMs: 1_000, connectTimeoutMs: 1_000 },
    });
    base = await sc.listenProxy();
  });
  afterAll(async () => {
    await sc?.close();
    await silent?.close();
    for (const s of brokenSockets) s.destroy();
    await new Promise<void>((r) => (broken ? broken.close(() => r()) : r()));
  });

  const get = (port: number, path: string) => send(`http://127.0.0.1:${port}${path}`, { proxy: base });

  it("down: 502 upstream_unavailable, audited as a connect error", async () => {
    const r = await settles(get(downPort, "/x"), 5_000);
    expect(r.value?.status).toBe(502);
    expect(r.value?.json()).toMatchObject({ error: "upstream_unavailable" });
    expect(sc.audit.at(-1)?.upstream).toEqual({ error: "connect:ECONNREFUSED" });
  });

  it("slow: 504 upstream_timeout at the upstream timeout, audited as a timeout", async () => {
    const r = await settles(get(silent.port, "/x"), 10_000);
    expect(r.value?.status).toBe(504);
    expect(r.ms).toBeGreaterThanOrEqual(900);
    expect(r.ms).toBeLessThan(5_000);
    expect(sc.audit.at(-1)?.upstream?.error).toMatch(/^timeout:/);
  });

  it("reset before the answer: 502, audited as a reset", async () => {
    const r = await settles(get(brokenPort, "/before"), 5_000);
    expect(r.value?.status).toBe(502);
    expect(sc.audit.at(-1)?.upstream?.error).toMatch(/^reset:ECONNRESET/);
  });

  it("reset mid-body: the agent's response is cut (never a clean short body) and the abort is counted", async () => {
    const before = sc.audit.length;
    const r = await settles(get(brokenPort, "/mid"), 5_000);
    expect(r.error).toBeDefined();
    expect(r.error?.message).not.toMatch(/hung/);
    // The event was written when the head was released (status 200, before any byte reached the
    // agent); the abort after it is counted and logged against the same connection.
    expect(sc.audit.slice(before).map((e) => e.upstream)).toEqual([{ status: 200 }]);
    await expect
      .poll(async () => sc.metrics.registry.metrics())
      .toMatch(
        /airlock_upstream_errors_total\{connection="broken",protocol="http",reason="aborted_mid_body"\} 1/,
      );
    expect(sc.logs()).toMatch(/upstream response cut mid-body/);
  });
});

describe("SSH upstream", () => {
  let sshd: SshdServer;
  let link: Relay;
  const sidecars: SshSidecar[] = [];
  const sidecarFor = async (port: number) => {
    const s = await startSshSidecar({
      sshd,
      policies: [
        sshPolicy(
          { ...sshd, port },
          { rules: [{ name: "all", action: "allow", match: { ssh: { commands: ["echo *", "seq *"] } } }] },
        ),
      ],
      guard: { connectTimeoutMs: 2_000 },
    });
    // The relay's address is what the sidecar dials: its known_hosts entry names that port.
    await s.writeSecret(KNOWN_HOSTS, "known_hosts", `${sshd.knownHosts.replace(/\]:\d+ /, `]:${port} `)}\n`);
    sidecars.push(s);
    return s;
  };

  beforeAll(async () => {
    sshd = await startSshd();
    link = relay(new URL(`tcp://127.0.0.1:${sshd.port}`));
  });
  afterAll(async () => {
    for (const s of sidecars) await s.close();
    await link?.down();
    await sshd?.stop();
  });

  it("down: the agent hears at once, and the audit event names the connect error", async () => {
    const s = await sidecarFor(await freePort());
    const r = await settles(
      (async () => {
        const c = await agentClient(s.port);
        try {
          return await exec(c, "echo hi");
        } finally {
          c.end();
        }
      })(),
      8_000,
    );
    expect(r.error?.message ?? `${r.value?.code} ${r.value?.stderr}`).toMatch(
      /upstream|unavailable|refused/i,
    );
    expect(r.ms).toBeLessThan(5_000);
    expect(s.audit.at(-1)?.upstream).toEqual({ error: "connect_failed" });
  });

  it("reset mid-output: the agent's command ends with an error, and its audit event says so", async () => {
    const s = await sidecarFor(await link.up());
    const c = await agentClient(s.port);
    c.on("error", () => {});
    const running = exec(c, "seq 1 100000000");
    await sleep(500); // output is streaming
    await link.down();
    const r = await settles(running, 8_000);
    expect(r.error?.message ?? "").not.toMatch(/hung/);
    // As ssh itself reports a lost connection: exit 255, and a line saying why.
    expect(r.value).toMatchObject({
      code: 255,
      stderr: expect.stringMatching(/upstream closed the connection/),
    });
    await expect.poll(() => s.audit.length).toBeGreaterThan(0);
    const event = s.audit.at(-1);
    expect(event?.operation).toMatchObject({ kind: "ssh-exec" });
    expect(event?.upstream).toEqual({ error: "upstream_closed" });
    c.end();
  });
});
