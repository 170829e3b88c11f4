// psycopg 3, psycopg2 and asyncpg (from the venv .ci/run builds: ~/.cache/airlock/pgdrivers-venv,
// override with AIRLOCK_PGDRIVERS_PYTHON) through the guard to PostgreSQL 15 with masking on: the
// shared workload (driver-workload.ts) plus what each driver does its own way — psycopg's client
// binding, binary cursors, named cursors and pipeline mode; asyncpg's binary results everywhere,
// prepared statements, cursors, COPY and Pool acquire/release.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CustomerRow,
  type DriverError,
  type DriverFixture,
  expectDenied,
  expectMaskedRow,
  expectWorkload,
  runDriver,
  startDriverFixture,
} from "./driver-workload.ts";

const PYTHON =
  process.env.AIRLOCK_PGDRIVERS_PYTHON ??
  join(homedir(), ".cache", "airlock", "pgdrivers-venv", "bin", "python");
const SCRIPT = join(import.meta.dirname, "python", "workload.py");

function has(module: string): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ["-c", `import ${module}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const drivers = { psycopg: has("psycopg"), psycopg2: has("psycopg2"), asyncpg: has("asyncpg") };
for (const [name, ok] of Object.entries(drivers))
  if (!ok) console.warn(`${name} suite skipped: ${PYTHON} cannot import ${name} (.ci/run installs it)`);

let fx: DriverFixture;
beforeAll(async () => {
  if (Object.values(drivers).some(Boolean)) fx = await startDriverFixture();
});
afterAll(async () => {
  await fx?.close();
});

const run = (driver: string) => runDriver(PYTHON, [SCRIPT, driver, fx.guard.host, String(fx.guard.port)]);

describe.skipIf(!drivers.psycopg)("psycopg 3", () => {
  it("workload, client binding, binary cursor, named cursor, pipeline", async () => {
    const { report, stdout } = await run("psycopg");
    expectWorkload(report, stdout);
    const x = report.extras as {
      clientBinding: CustomerRow;
      binary: CustomerRow;
      namedCursor: string[][];
      pipeline: { first?: CustomerRow; denied: DriverError; after: number };
    };
    expectMaskedRow(x.clientBinding, "client-side binding");
    expectMaskedRow(x.binary, "binary=True");
    expect(x.namedCursor).toHaveLength(2);
    expect(x.namedCursor.find((r) => r[1]?.startsWith("card "))?.[0]).not.toBe("ann@example.com");
    expectDenied(x.pipeline.denied, "denied in a pipeline");
    expect(x.pipeline.after).toBe(1);
  });
});

describe.skipIf(!drivers.psycopg2)("psycopg2", () => {
  it("workload (client-side binding, PREPARE/EXECUTE), named cursor", async () => {
    const { report, stdout } = await run("psycopg2");
    expectWorkload(report, stdout);
    const x = report.extras as { namedCursor: string[][] };
    expect(x.namedCursor).toHaveLength(1);
    expect(x.namedCursor[0]?.[1]).toMatch(/^card /);
  });
});

describe.skipIf(!drivers.asyncpg)("asyncpg", () => {
  it("workload in binary, derived values, cursor, COPY, Pool acquire/release", async () => {
    const { report, stdout } = await run("asyncpg");
    expectWorkload(report, stdout);
    const x = report.extras as {
      derivedInt: DriverError;
      derivedText: string;
      selectOne: number;
      typed: [string, string, string[]];
      cursor: string[][];
      copy: string | DriverError;
      pool: CustomerRow[];
    };
    // length(email) in binary int4 cannot carry a mask: refused before any row, naming the cast.
    expect(x.derivedInt.code).toBe("42501");
    expect(x.derivedInt.message).toMatch(/column "n".*n::text/);
    expect(x.derivedText).not.toBe("15");
    expect(x.selectOne).toBe(1);
    expect(x.typed[0]).toBe("gold");
    expect(x.typed[1]).toMatch(/^card /);
    expect(x.typed[2]).toHaveLength(2);
    expect(x.cursor).toHaveLength(1);
    expect(x.cursor[0]?.[1]).toMatch(/^card /);
    if (typeof x.copy === "string") expect(x.copy).toMatch(/^\S+\tcard /);
    else expect(x.copy.code).toBe("42501");
    expect(x.pool).toHaveLength(3);
    x.pool.forEach((r, i) => {
      expectMaskedRow(r, `pool #${i + 1}`);
    });
  });
});
