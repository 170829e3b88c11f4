import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { HotCounter, HotHistogram } from "./hot-metrics.ts";

const BUCKETS = [0.0001, 0.001, 0.01, 1];

// The exposition must be what prom-client's own metrics write for the same updates.
async function both(contentType?: string) {
  const reference = new Registry();
  const hot = new Registry();
  if (contentType) for (const r of [reference, hot]) r.setContentType(contentType as never);
  const labelNames = ["connection", "protocol"] as const;
  const refC = new Counter({ name: "t_ops_total", help: "ops", labelNames, registers: [reference] });
  const hotC = new HotCounter({ name: "t_ops_total", help: "ops", labelNames, registers: [hot] });
  const refH = new Histogram({
    name: "t_seconds",
    help: "lat",
    labelNames,
    buckets: BUCKETS,
    registers: [reference],
  });
  const hotH = new HotHistogram({
    name: "t_seconds",
    help: "lat",
    labelNames,
    buckets: BUCKETS,
    registers: [hot],
  });
  const values = [0, 0.00005, 0.0001, 0.0005, 0.001, 0.002, 0.5, 1, 3, 250];
  const a = { connection: "db", protocol: "postgres" };
  const b = { connection: 'we"ird\\name', protocol: "http" };
  const cellA = hotH.cell(a);
  for (const v of values) {
    refH.observe(a, v);
    cellA.observe(v);
    refH.observe(b, v / 2);
    hotH.observe(b, v / 2);
  }
  refC.inc(a);
  hotC.cell(a).inc();
  refC.inc(b, 2.5);
  hotC.inc(b, 2.5);
  return { reference, hot };
}

describe("hot metrics", () => {
  it("expose exactly what prom-client's Counter and Histogram expose", async () => {
    const { reference, hot } = await both();
    expect(await hot.metrics()).toBe(await reference.metrics());
    // (prom-client adds an empty `exemplar` to histogram values; exemplars are not used here.)
    const json = async (r: Registry) =>
      JSON.parse(JSON.stringify(await r.getMetricsAsJSON(), (k, v) => (k === "exemplar" ? undefined : v)));
    expect(await json(hot)).toEqual(await json(reference));
  });

  it("expose the same in OpenMetrics format", async () => {
    const { reference, hot } = await both(Registry.OPENMETRICS_CONTENT_TYPE);
    expect(await hot.metrics()).toBe(await reference.metrics());
  });

  it("reject unknown or missing labels and invalid values", () => {
    const r = new Registry();
    const c = new HotCounter({ name: "x_total", help: "x", labelNames: ["a"], registers: [r] });
    expect(() => c.inc({ a: "1", b: "2" } as never)).toThrow(/unknown label "b"/);
    expect(() => c.inc({} as never)).toThrow(/label "a" missing/);
    expect(() => c.inc({ a: "1" }, -1)).toThrow(/≥ 0/);
    const h = new HotHistogram({ name: "y", help: "y", labelNames: ["a"], buckets: [1], registers: [r] });
    expect(() => h.observe({ a: "1" }, Number.NaN)).toThrow(/finite/);
  });

  it("share a cell between equal label sets and reset", async () => {
    const r = new Registry();
    const c = new HotCounter({ name: "z_total", help: "z", labelNames: ["a", "b"], registers: [r] });
    expect(c.cell({ a: "1", b: "2" })).toBe(c.cell({ b: "2", a: "1" }));
    c.inc({ a: "1", b: "2" });
    expect((await c.get()).values).toEqual([{ labels: { a: "1", b: "2" }, value: 1 }]);
    c.reset();
    expect((await c.get()).values).toEqual([]);
  });
});
