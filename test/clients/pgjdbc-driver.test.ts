// pgjdbc (Java, from Maven Central; a JDK from Debian) through the guard to PostgreSQL 15 with
// masking on: the shared workload (driver-workload.ts) — a PreparedStatement executed past
// prepareThreshold, where pgjdbc switches to server-prepared statements and binary results —
// plus batches, binary from the first execution (prepareThreshold=-1) and a derived value that
// binary cannot carry masked. test/clients/jdbc/Workload.java runs as a single-file source
// program; .ci/run puts the driver jar in ~/.cache/airlock/pgjdbc (override with AIRLOCK_PGJDBC_JAR).
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

const PGJDBC_VERSION = "42.7.14";
const JAR =
  process.env.AIRLOCK_PGJDBC_JAR ??
  join(homedir(), ".cache", "airlock", "pgjdbc", `postgresql-${PGJDBC_VERSION}.jar`);
const SOURCE = join(import.meta.dirname, "jdbc", "Workload.java");

function javaWorks(): boolean {
  try {
    execFileSync("java", ["-version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const why = !existsSync(JAR) ? `no ${JAR}` : !javaWorks() ? "no java on PATH" : undefined;
if (why) console.warn(`pgjdbc suite skipped: ${why} (.ci/run installs a JDK and the driver)`);

let fx: DriverFixture;
beforeAll(async () => {
  if (!why) fx = await startDriverFixture();
});
afterAll(async () => {
  await fx?.close();
});

describe.skipIf(why !== undefined)("pgjdbc", () => {
  it("workload past prepareThreshold, batches, binary from the first execution", async () => {
    const { report, stdout } = await runDriver(
      "java",
      ["-cp", JAR, SOURCE, fx.guard.host, String(fx.guard.port)],
      { timeoutMs: 120_000 },
    );
    expectWorkload(report, stdout);
    const x = report.extras as {
      batch: number;
      batchDenied: DriverError;
      batchAfter: number;
      forceBinary: CustomerRow;
      derivedInt: DriverError;
      derivedText: string;
    };
    expect(x.batch).toBe(3);
    expectDenied(x.batchDenied, "denied in a batch");
    expect(x.batchAfter).toBe(1);
    expectMaskedRow(x.forceBinary, "prepareThreshold=-1");
    expect(x.derivedInt.code).toBe("42501");
    expect(x.derivedInt.message).toMatch(/column "n".*n::text/);
    expect(x.derivedText).not.toBe("15");
  }, 150_000);
});
