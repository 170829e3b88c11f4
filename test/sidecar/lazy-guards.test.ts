// The PostgreSQL and SSH guards are loaded only when a policy in force has a connection of their
// protocol (sidecar/src/protocols/lazy.ts): the real entry point in its own process, a real
// PostgreSQL, psql. An HTTP-only sidecar carries neither libpg-query nor ssh2; once the policy file
// gains a PostgreSQL connection, that connection is guarded as it would have been at start
// (masked read allowed, a write refused with 42501).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { json, startUpstream, type Upstream } from "../http/harness.ts";
import { type EntryPoint, startEntryPoint } from "./entry-point.ts";

const run = promisify(execFile);
const ROOT = new URL("../..", import.meta.url).pathname;

let pg: PostgresServer;
let upstream: Upstream;
let dir: string;
let entry: EntryPoint | undefined;
const stderr = () => entry?.stderr() ?? "";
let ports: { http: number; pg: number; admin: number };

const httpConnection = () => `
    - name: api
      protocol: http
      target: { host: 127.0.0.1, port: ${upstream.port} }
      tls: { mode: disable }
      listen: { port: ${ports.http} }`;
const pgConnection = () => `
    - name: warehouse
      protocol: postgres
      target: { host: 127.0.0.1, port: ${pg.port} }
      listen: { port: ${ports.pg} }
      tls: { mode: disable }
      database: ${pg.database}
      credentials: { secretRef: { name: warehouse } }`;
const policy = (withPostgres: boolean) => `
apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: lazy, namespace: agents }
spec:
  connections:${httpConnection()}${withPostgres ? pgConnection() : ""}
  rules:
    - { name: api, action: allow, connections: [api], match: { http: { paths: ["/**"] } } }${
      withPostgres
        ? `
    - { name: reads, action: allow, connections: [warehouse], match: { sql: { statements: [read] } } }
  masking:
    - { name: emails, connections: [warehouse], detectors: [email], strategy: partial }`
        : ""
    }
`;

/** Package names (node_modules/<name>/) among the modules the sidecar has loaded so far. */
async function loadedPackages(): Promise<Set<string>> {
  const out = join(dir, "loaded.txt");
  await rm(out, { force: true });
  entry?.child.kill("SIGUSR2");
  for (let i = 0; i < 50; i++) {
    try {
      const urls = readFileSync(out, "utf8").split("\n");
      return new Set(urls.flatMap((u) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1] ?? []));
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`the sidecar wrote no module list:\n${stderr()}`);
}

function psql(sql: string) {
  return run(
    join(pg.binDir, "psql"),
    ["-XAt", "-h", "127.0.0.1", "-p", String(ports.pg), "-U", "agent", "-d", pg.database, "-c", sql],
    { env: { ...process.env, PGCONNECT_TIMEOUT: "5" }, timeout: 30_000 },
  );
}

beforeAll(async () => {
  pg = await startPostgres();
  const analyst = await pg.createUser("analyst");
  await pg.sql(`
    create table customers (id int primary key, email text);
    insert into customers values (1, 'person1@example.com');
    grant select, delete on customers to analyst;
  `);
  upstream = await startUpstream((req, res) => json(res, 200, { ok: true, path: req.url }));
  dir = await mkdtemp(join(tmpdir(), "airlock-lazy-"));
  await mkdir(join(dir, "secrets", "warehouse"), { recursive: true });
  await writeFile(join(dir, "secrets", "warehouse", "username"), analyst.user);
  await writeFile(join(dir, "secrets", "warehouse", "password"), analyst.password);
  ports = { http: await freePort(), pg: await freePort(), admin: await freePort() };
  await writeFile(join(dir, "policy.yaml"), policy(false));
  entry = await startEntryPoint(dir, {
    adminPort: ports.admin,
    nodeArgs: ["--import", join(ROOT, "test/fixtures/loaded-modules.mjs")],
    env: { AIRLOCK_TEST_LOADED_MODULES: join(dir, "loaded.txt") },
  });
});

afterAll(async () => {
  entry?.child.kill("SIGTERM");
  await upstream?.close();
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("protocol guards load with the first policy that names their protocol", () => {
  it("an HTTP-only sidecar loads neither; a PostgreSQL connection added later is guarded", async () => {
    const res = await fetch(`http://127.0.0.1:${ports.http}/hello`);
    expect(res.status).toBe(200);
    const before = await loadedPackages();
    expect(before.has("pino"), "the module list is read").toBe(true);
    expect(before.has("libpg-query")).toBe(false);
    expect(before.has("ssh2")).toBe(false);
    // No HTTPS host and no agent-facing TLS: no pod CA is minted, so no X.509 library.
    expect(before.has("@peculiar/x509")).toBe(false);

    await writeFile(join(dir, "policy.yaml"), policy(true));
    // The listener opens with the reload; the first session waits for the guard to load.
    let rows: string | undefined;
    for (let i = 0; rows === undefined; i++) {
      rows = await psql("select id, email from customers").then(
        (r) => r.stdout,
        (e: Error) => {
          if (i > 100) throw new Error(`psql never got through: ${e.message}\n${stderr()}`);
          return new Promise<undefined>((r) => setTimeout(() => r(undefined), 200));
        },
      );
    }
    expect(rows.trim()).toBe("1|*******@******e.com");
    expect(rows, "the e-mail is masked").not.toContain("person1@");
    const refused = await psql("delete from customers").then(
      () => "",
      (e: Error & { stderr?: string }) => e.stderr ?? "",
    );
    expect(refused).toMatch(/ERROR: .*42501|permission|denied/i);
    expect(await pg.sql("select count(*) from customers")).toMatch(/1/);

    const after = await loadedPackages();
    expect(after.has("libpg-query")).toBe(true);
    expect(after.has("ssh2")).toBe(false);
  });
});
