// The chart's Grafana dashboards as queries: every panel target's expr (rows included), with the
// template variables replaced the way Grafana would for a concrete selection, and the PromQL facts
// tests check (metrics used, labels grouped by).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CHART } from "../chart/helm.ts";

interface Panel {
  type: string;
  title: string;
  panels?: Panel[];
  targets?: { refId: string; expr: string }[];
}

interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: { query: string } | string }[] };
}

export interface DashboardQuery {
  dashboard: string;
  file: string;
  panel: string;
  refId: string;
  expr: string;
}

export interface DashboardVariable {
  dashboard: string;
  name: string;
  query: string;
}

export function dashboardFiles(): string[] {
  return readdirSync(join(CHART, "dashboards"))
    .filter((f) => f.endsWith(".json"))
    .sort();
}

function load(file: string): Dashboard {
  return JSON.parse(readFileSync(join(CHART, "dashboards", file), "utf8")) as Dashboard;
}

function flat(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...flat(p.panels ?? [])]);
}

export function dashboardQueries(): DashboardQuery[] {
  return dashboardFiles().flatMap((file) => {
    const d = load(file);
    return flat(d.panels).flatMap((p) =>
      (p.targets ?? []).map((t) => ({
        dashboard: d.title,
        file,
        panel: p.title,
        refId: t.refId,
        expr: t.expr,
      })),
    );
  });
}

/** The query variables (label_values(...)) of every dashboard. */
export function dashboardVariables(): DashboardVariable[] {
  return dashboardFiles().flatMap((file) => {
    const d = load(file);
    return d.templating.list
      .filter((v) => v.type === "query")
      .map((v) => ({
        dashboard: d.title,
        name: v.name,
        query: typeof v.query === "string" ? v.query : (v.query?.query ?? ""),
      }));
  });
}

/** Grafana's substitution: `$var`/`${var}` by the selected value, built-in intervals by durations. */
export function substitute(expr: string, vars: Record<string, string>): string {
  const all: Record<string, string> = { __rate_interval: "2m", __interval: "5s", __range: "10m", ...vars };
  const out = expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a: string | undefined, b: string | undefined) => {
    const name = a ?? b ?? "";
    return name in all ? (all[name] as string) : m;
  });
  const left = /\$\{?\w+/.exec(out);
  if (left) throw new Error(`unknown template variable ${left[0]} in ${expr}`);
  return out;
}

/** `label_values(metric{sel}, label)` as PromQL: the label's values among the metric's series. */
export function labelValuesQuery(query: string): { expr: string; label: string } {
  const m = /^label_values\((.+),\s*(\w+)\)$/.exec(query.trim());
  if (!m) throw new Error(`not a label_values() query: ${query}`);
  return { expr: `group by (${m[2]}) (${m[1]})`, label: m[2] as string };
}

export function metricsOf(expr: string): string[] {
  return [...new Set(expr.match(/\bairlock_[a-z0-9_]+/g) ?? [])];
}

/** Labels of every `by (...)` in the expression, `le` aside (histogram_quantile consumes it). */
export function groupingLabels(expr: string): string[] {
  const labels = new Set<string>();
  for (const m of expr.matchAll(/\bby\s*\(([^)]*)\)/g))
    for (const l of (m[1] ?? "").split(",").map((s) => s.trim())) if (l && l !== "le") labels.add(l);
  return [...labels];
}
