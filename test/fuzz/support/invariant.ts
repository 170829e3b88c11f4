// Invariant checks for fuzz targets: a broken invariant throws an InvariantError, which the
// fuzzer reports as a finding (the input is written as a crash file).
import { inspect } from "node:util";

export class InvariantError extends Error {
  override name = "InvariantError";
}

export function fail(what: string, details: Record<string, unknown>): never {
  throw new InvariantError(`${what}: ${inspect(details, { depth: 6, breakLength: 120 })}`);
}

export function check(ok: boolean, what: string, details: Record<string, unknown>): asserts ok {
  if (!ok) fail(what, details);
}
