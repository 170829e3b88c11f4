// The chart's PrometheusRule, rendered by helm, as a Prometheus rule file (its spec.groups), for
// Prometheus itself and for `promtool test rules`.
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { find, render } from "../chart/helm.ts";

export interface RuleGroup {
  name: string;
  rules: { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string> }[];
}

/** Renders with metrics.prometheusRule enabled (plus `thresholds`) and writes the rule file. */
export async function renderRuleFile(
  thresholds: Record<string, unknown> = {},
): Promise<{ file: string; groups: RuleGroup[] }> {
  const objects = await render({
    values: { metrics: { prometheusRule: { enabled: true, ...thresholds } } },
  });
  const groups = (find(objects, "PrometheusRule").spec as { groups: RuleGroup[] }).groups;
  const dir = await mkdtemp(join(tmpdir(), "airlock-rules-"));
  const file = join(dir, "airlock.rules.yaml");
  await writeFile(file, stringify({ groups }));
  return { file, groups };
}
