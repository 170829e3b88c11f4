// pgx v5 (Go) through the guard to PostgreSQL 15 with masking on: the shared workload
// (driver-workload.ts) in pgx's default exec mode (statements prepared and described, binary
// results for every type pgx knows), every other exec mode, batches and pgxpool. The program is
// test/clients/pgx, built by .ci/run into ~/.cache/airlock/pgx-workload (override with
// AIRLOCK_PGX_WORKLOAD).
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

const BIN = process.env.AIRLOCK_PGX_WORKLOAD ?? join(homedir(), ".cache", "airlock", "pgx-workload");
const available = existsSync(BIN);
if (!available) console.warn(`pgx suite skipped: no ${BIN} (.ci/run builds it from test/clients/pgx)`);

let fx: DriverFixture;
beforeAll(async () => {
  if (available) fx = await startDriverFixture();
});
afterAll(async () => {
  await fx?.close();
});

describe.skipIf(!available)("pgx v5", () => {
  it("workload in the default mode, every exec mode, batches, pgxpool", async () => {
    const { report, stdout } = await runDriver(BIN, [fx.guard.host, String(fx.guard.port)]);
    expectWorkload(report, stdout);
    const x = report.extras as {
      modes: Record<string, CustomerRow>;
      derivedInt: DriverError;
      derivedText: string;
      typed: [string, string, string[]];
      batch: CustomerRow[];
      batchDenied: DriverError;
      batchAfter: number;
      pool: CustomerRow[];
    };
    expect(Object.keys(x.modes).sort()).toEqual(["cacheDescribe", "describeExec", "exec", "simpleProtocol"]);
    for (const [mode, r] of Object.entries(x.modes)) expectMaskedRow(r, `exec mode ${mode}`);
    expect(x.derivedInt.code).toBe("42501");
    expect(x.derivedInt.message).toMatch(/column "n".*n::text/);
    expect(x.derivedText).not.toBe("15");
    expect(x.typed[0]).toBe("gold");
    expect(x.typed[1]).toMatch(/^card /);
    expect(x.typed[2]).toHaveLength(2);
    expect(x.batch).toHaveLength(2);
    x.batch.forEach((r, i) => {
      expectMaskedRow(r, `batch #${i + 1}`);
    });
    expectDenied(x.batchDenied, "denied in a batch");
    expect(x.batchAfter).toBe(1);
    expect(x.pool).toHaveLength(4);
    x.pool.forEach((r, i) => {
      expectMaskedRow(r, `pool #${i + 1}`);
    });
  });
});
