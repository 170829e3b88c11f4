// A target with a planted invariant break, for test/fuzz/fuzz.test.ts to prove that a finding
// fails the run and leaves its input (a suite that could not fail would prove nothing).
import { check } from "./invariant.ts";

export function fuzz(data: Buffer): void {
  check(!(data.length >= 3 && data[0] === 0x46 && data[1] === 0x5a && data[2] === 0x21), "planted", {});
}
