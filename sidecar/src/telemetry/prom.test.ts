import { execFileSync } from "node:child_process";
import * as pkg from "prom-client";
import { describe, expect, it } from "vitest";
import * as prom from "./prom.ts";

describe("prom-client from its own modules", () => {
  it("are the package's classes (a layout change in an update fails here)", () => {
    expect(prom.Registry).toBe(pkg.Registry);
    expect(prom.Counter).toBe(pkg.Counter);
    expect(prom.Gauge).toBe(pkg.Gauge);
    expect(prom.Histogram).toBe(pkg.Histogram);
    expect(prom.collectDefaultMetrics).toBe(pkg.collectDefaultMetrics);
  });

  it("leave node:zlib and the Pushgateway unloaded", () => {
    const url = new URL("./prom.ts", import.meta.url).href;
    const loaded = execFileSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `await import(${JSON.stringify(url)}); console.log(process.moduleLoadList.join("\\n"))`,
      ],
      { encoding: "utf8" },
    ).split("\n");
    expect(loaded).not.toContain("NativeModule zlib");
    expect(loaded).toContain("NativeModule perf_hooks"); // default metrics did load
  });
});
