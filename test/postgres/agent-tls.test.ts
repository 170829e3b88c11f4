// TLS between the agent and the sidecar (connection.agentTls): psql with sslmode=verify-full and
// the pod CA as root reaches a real PostgreSQL through the guard; a name the connection does not
// have, a client without the bundle and plaintext under `require` are refused; bytes injected
// after the SSLRequest are refused as PostgreSQL refuses them.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compilePolicies } from "../../sidecar/src/policy/compile.ts";
import { PodCa } from "../../sidecar/src/protocols/http/tls/pod-ca.ts";
import { podCaHosts } from "../../sidecar/src/protocols/http/tls/pod-ca-keeper.ts";
import { PG_BIN_DIR, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

const run = promisify(execFile);
const NAME = "orders-db.internal";
let server: PostgresServer;
let ca: PodCa;
let dir: string;
let rootPath: string;
const guards: Record<string, GuardedPostgres> = {};

function policy(mode: "allow" | "require") {
  const p = pgPolicy(server, {
    rules: [{ name: "read", action: "allow", match: { sql: { statements: ["read"] } } }],
  });
  const c = p.spec.connections[0];
  if (c) {
    c.target.aliases = [NAME];
    c.agentTls = { mode };
  }
  return p;
}

beforeAll(async () => {
  server = await startPostgres();
  dir = await mkdtemp(join(tmpdir(), "airlock-agent-tls-"));
  // The names the pod CA is constrained to come from the policies, as in the sidecar.
  const hosts = podCaHosts(compilePolicies([policy("allow")]).set);
  expect(hosts).toEqual(["127.0.0.1", NAME]);
  ca = await PodCa.create({ hosts, label: "test" });
  rootPath = join(dir, "bundle.pem");
  await writeFile(rootPath, ca.certPem);
  for (const mode of ["allow", "require"] as const)
    guards[mode] = await startGuard(policy(mode), {
      credential: server.users.scram,
      handler: { podCa: () => ca },
    });
});

afterAll(async () => {
  for (const g of Object.values(guards)) await g.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** psql through a guard; `conn` is the libpq connection string after the port. */
async function psql(g: GuardedPostgres, conn: string, sql = "SELECT 1 AS one") {
  const dsn = `port=${g.port} user=agent dbname=airlock connect_timeout=5 ${conn}`;
  return run(`${PG_BIN_DIR}/psql`, [dsn, "-XAtc", sql], {
    env: { PATH: process.env.PATH ?? "", PGSSLMODE: "" },
  }).then(
    (r) => ({ ok: true as const, out: r.stdout.trim() }),
    (e: { stderr?: string }) => ({ ok: false as const, out: String(e.stderr ?? e) }),
  );
}

describe("agentTls", () => {
  it("psql with sslmode=verify-full and the pod CA as root: TLS to the sidecar, by name and by address", async () => {
    for (const g of [guards.allow, guards.require] as GuardedPostgres[]) {
      const byName = await psql(
        g,
        `host=${NAME} hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=${rootPath}`,
      );
      expect(byName).toEqual({ ok: true, out: "1" });
      const byAddress = await psql(g, `host=127.0.0.1 sslmode=verify-full sslrootcert=${rootPath}`);
      expect(byAddress).toEqual({ ok: true, out: "1" });
    }
    // The session is encrypted on the agent's side: libpq says so.
    const info = await psql(
      guards.allow as GuardedPostgres,
      `host=${NAME} hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=${rootPath}`,
      "\\conninfo",
    );
    expect(info.out).toMatch(/SSL connection \(protocol: TLSv1\.3/);
  });

  it("a name the connection does not have is refused, and so is a client that does not trust the bundle", async () => {
    const g = guards.allow as GuardedPostgres;
    const other = await psql(
      g,
      `host=elsewhere.internal hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=${rootPath}`,
    );
    expect(other.ok).toBe(false);
    const untrusted = await psql(
      g,
      `host=${NAME} hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=/etc/ssl/certs/ca-certificates.crt`,
    );
    expect(untrusted.ok).toBe(false);
    expect(untrusted.out).toMatch(/certificate verify failed/);
  });

  it("allow serves plaintext to a client that does not ask; require refuses it with what to do", async () => {
    expect(await psql(guards.allow as GuardedPostgres, "host=127.0.0.1 sslmode=disable")).toEqual({
      ok: true,
      out: "1",
    });
    const refused = await psql(guards.require as GuardedPostgres, "host=127.0.0.1 sslmode=disable");
    expect(refused.ok).toBe(false);
    expect(refused.out).toContain("requires TLS between the agent and the Airlock sidecar");
    expect(refused.out).toContain("sslmode=require");
  });

  it("bytes sent after the SSLRequest, before the handshake, are refused", async () => {
    const g = guards.allow as GuardedPostgres;
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8, 0);
    ssl.writeInt32BE(80877103, 4);
    const params = Buffer.from("user\0agent\0database\0airlock\0\0");
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8 + params.length, 0);
    startup.writeInt32BE(196608, 4);
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const s = connect(g.port, "127.0.0.1", () => s.write(Buffer.concat([ssl, startup, params])));
      const chunks: Buffer[] = [];
      s.on("data", (c) => chunks.push(c));
      s.on("close", () => resolve(Buffer.concat(chunks)));
      s.on("error", reject);
    });
    expect(reply[0]).toBe(0x45); // ErrorResponse, not 'S'
    expect(reply.toString("latin1")).toContain("unencrypted data after SSL request");
  });
});
