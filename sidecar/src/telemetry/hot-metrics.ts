// Counters and histograms for the per-operation path. prom-client hashes and validates the label
// object on every inc/observe (~0.3 µs each, three per SQL statement: as much as the guard's
// cached policy decision). Here a label set is resolved once to a cell — callers on hot paths
// keep the cell (`counter.cell(labels)`) and update plain numbers — and prom-client still does
// the exposition: these metrics live in its Registry and answer its `get()` contract with the
// same values its own Counter and Histogram would.
import type { Registry } from "prom-client";

type Labels<L extends string> = Record<L, string | number>;
interface Value {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}
/** What prom-client's registry reads from a metric's get() (its typings declare `type` as an enum). */
interface Values {
  name: string;
  help: string;
  type: "counter" | "histogram";
  values: Value[];
  aggregator: "sum";
}

interface Config<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: Registry[];
}

abstract class HotMetric<L extends string, C> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = "sum" as const;
  readonly #labelNames: readonly L[];
  #cells = new Map<string, { labels: Labels<L>; cell: C }>();

  constructor(config: Config<L>) {
    this.name = config.name;
    this.help = config.help;
    this.#labelNames = config.labelNames;
    // prom-client's registry takes any metric that answers get() (it falls back to it when
    // getForPromString is absent); its TypeScript type lists only its own classes.
    for (const r of config.registers)
      r.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
  }

  protected abstract newCell(): C;

  /** The cell of one label set: keep it to update without a lookup. */
  cell(labels: Labels<L>): C {
    let key = "";
    for (const n of this.#labelNames) {
      const v = labels[n];
      if (v === undefined) throw new Error(`${this.name}: label "${n}" missing`);
      key += `${v}\u0000`;
    }
    let entry = this.#cells.get(key);
    if (!entry) {
      for (const k of Object.keys(labels))
        if (!this.#labelNames.includes(k as L)) throw new Error(`${this.name}: unknown label "${k}"`);
      entry = { labels: { ...labels }, cell: this.newCell() };
      this.#cells.set(key, entry);
    }
    return entry.cell;
  }

  protected entries(): Iterable<{ labels: Labels<L>; cell: C }> {
    return this.#cells.values();
  }

  reset(): void {
    this.#cells = new Map();
  }
}

export class CounterCell {
  value = 0;
  inc(n = 1): void {
    if (!(n >= 0) || n === Number.POSITIVE_INFINITY)
      throw new Error(`counter increment must be a finite number ≥ 0, got ${n}`);
    this.value += n;
  }
}

export class HotCounter<L extends string> extends HotMetric<L, CounterCell> {
  readonly type = "counter" as const;

  protected newCell(): CounterCell {
    return new CounterCell();
  }

  inc(labels: Labels<L>, n = 1): void {
    this.cell(labels).inc(n);
  }

  async get(): Promise<Values> {
    const values: Value[] = [];
    for (const { labels, cell } of this.entries()) values.push({ labels, value: cell.value });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

export class HistogramCell {
  readonly #bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) throw new Error(`histogram value must be finite, got ${v}`);
    const b = this.#bounds;
    for (let i = 0; i < b.length; i++)
      if (v <= (b[i] as number)) {
        (this.counts[i] as number)++;
        break;
      }
    this.sum += v;
    this.count++;
  }
}

export class HotHistogram<L extends string> extends HotMetric<L, HistogramCell> {
  readonly type = "histogram" as const;
  readonly #bounds: readonly number[];

  constructor(config: Config<L> & { buckets: readonly number[] }) {
    super(config);
    this.#bounds = [...config.buckets].sort((a, b) => a - b);
  }

  protected newCell(): HistogramCell {
    return new HistogramCell(this.#bounds);
  }

  observe(labels: Labels<L>, v: number): void {
    this.cell(labels).observe(v);
  }

  async get(): Promise<Values> {
    const values: Value[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, cell } of this.entries()) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += cell.counts[i] as number;
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: bucket });
      });
      values.push({ labels: { le: "+Inf", ...labels }, value: cell.count, metricName: bucket });
      values.push({ labels, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: cell.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
