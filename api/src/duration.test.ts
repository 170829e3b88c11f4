import { expect, it } from "vitest";
import { parseDuration } from "./duration.ts";

it.each([
  ["30s", 30_000],
  ["5m", 300_000],
  ["1h30m", 5_400_000],
  ["250ms", 250],
  ["1.5h", 5_400_000],
])("%s = %d ms", (text, ms) => expect(parseDuration(text)).toBe(ms));

it.each(["", "5", "5 minutes", "-1s", "1d", "m5"])("rejects %j", (text) =>
  expect(() => parseDuration(text)).toThrow(/not a duration/),
);
