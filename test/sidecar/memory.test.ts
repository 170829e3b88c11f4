// The sidecar's memory under guarded PostgreSQL sessions, measured on the real entry point (the
// image's `airlock-sidecar`, in its own process) with psql through a listener to a real
// PostgreSQL. What is asserted is growth, never time:
// - the peak (VmHWM) over the first sessions stays near the idle RSS. The first session loads
//   the catalog, parsing a few thousand definitions; V8 then recompiled libpg-query's
//   WebAssembly with its optimizing compiler, ~550 MB per grammar line for a second or two, and
//   the pod was OOM-killed (1,052 MB peak from 177 MB idle here; sql/wasm-tiering.ts);
// - later sequential and concurrent sessions add nothing that stays (RSS and external memory).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type EntryPoint, startEntryPoint } from "./entry-point.ts";

const run = promisify(execFile);
const MB = 1024 * 1024;

let pg: PostgresServer;
let dir: string;
let entry: EntryPoint | undefined;
let listenPort: number;
let adminPort: number;
const stderr = () => entry?.stderr() ?? "";

/** VmRSS / VmHWM of the sidecar process, in MB. */
function procMemory(): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${entry?.child.pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]) / 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** A process metric from the sidecar's own /metrics, in MB. */
async function metricMb(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const m = new RegExp(`^airlock_process_${name} (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`no metric airlock_process_${name} in /metrics`);
  return Number(m[1]) / MB;
}

/** One psql session through the sidecar: a masked read. */
async function session(): Promise<void> {
  const { stdout } = await run(
    join(pg.binDir, "psql"),
    [
      "-XAt",
      "-h",
      "127.0.0.1",
      "-p",
      String(listenPort),
      "-U",
      "analyst",
      "-d",
      pg.database,
      "-c",
      "select id, email from customers order by id",
    ],
    { env: { ...process.env, PGCONNECT_TIMEOUT: "10" }, timeout: 60_000 },
  ).catch((e: Error & { stderr?: string }) => {
    throw new Error(`psql failed: ${e.stderr ?? e.message}\nsidecar stderr:\n${stderr().slice(-2000)}`);
  });
  const rows = stdout.trim().split("\n");
  expect(rows).toHaveLength(200);
  expect(stdout, "e-mails are masked").not.toMatch(/person\d+@/);
}

beforeAll(async () => {
  pg = await startPostgres();
  const analyst = await pg.createUser("analyst");
  await pg.sql(`
    create table customers (id int primary key, name text, email text);
    insert into customers select i, 'name ' || i, 'person' || i || '@example.com' from generate_series(1, 200) i;
    grant select on customers to analyst;
  `);
  dir = await mkdtemp(join(tmpdir(), "airlock-memory-"));
  await mkdir(join(dir, "secrets", "warehouse"), { recursive: true });
  await writeFile(join(dir, "secrets", "warehouse", "username"), analyst.user);
  await writeFile(join(dir, "secrets", "warehouse", "password"), analyst.password);
  [listenPort, adminPort] = [await freePort(), await freePort()];
  // The node suite's policy: reads allowed, deletes held for approval, e-mails masked.
  await writeFile(
    join(dir, "policy.yaml"),
    `
apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: analyst, namespace: agents }
spec:
  connections:
    - name: warehouse
      protocol: postgres
      target: { host: 127.0.0.1, port: ${pg.port} }
      listen: { port: ${listenPort} }
      tls: { mode: disable }
      database: ${pg.database}
      credentials: { secretRef: { name: warehouse } }
  rules:
    - { name: read-warehouse, action: allow, connections: [warehouse], match: { sql: { statements: [read] } } }
  masking:
    - { name: emails, detectors: [email], strategy: partial }
`,
  );
  entry = await startEntryPoint(dir, { adminPort, env: { NODE_ENV: "production" } });
});

afterAll(async () => {
  entry?.child.kill("SIGTERM");
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("sidecar memory under guarded PostgreSQL sessions", () => {
  it("the first sessions (catalog load, parser warm-up) keep the peak near idle; later ones add nothing", async () => {
    const idle = procMemory();
    // Enough parsing to pass V8's tier-up budget: the catalog load plus a few sessions.
    for (let i = 0; i < 3; i++) await session();
    // A tier-up compiles in the background for a second or two after the parse that triggered it.
    await new Promise((r) => setTimeout(r, 3000));
    const warm = { ...procMemory(), external: await metricMb("nodejs_external_memory_bytes") };

    for (let i = 0; i < 10; i++) await session();
    await Promise.all(Array.from({ length: 8 }, () => session()));
    await new Promise((r) => setTimeout(r, 3000));
    const after = { ...procMemory(), external: await metricMb("nodejs_external_memory_bytes") };

    const report = `idle RSS ${idle.rss.toFixed(0)} MB; after 3 sessions RSS ${warm.rss.toFixed(0)}, external ${warm.external.toFixed(0)}; after 18 more (10 sequential, 8 concurrent) RSS ${after.rss.toFixed(0)}, external ${after.external.toFixed(0)}, peak ${after.peak.toFixed(0)} MB`;
    process.stderr.write(`[memory] ${report}\n`);
    // Before the fix the peak was ~870 MB above idle; a 512Mi limit leaves ~320 MB of headroom.
    expect(after.peak - idle.rss, report).toBeLessThan(150);
    expect(after.rss - warm.rss, report).toBeLessThan(40);
    expect(after.external - warm.external, report).toBeLessThan(8);
  });
});
