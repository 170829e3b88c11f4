// The alert logic of the chart's PrometheusRule, with `promtool test rules` (Debian's promtool):
// the rules as helm renders them with default values, staged series in alerts.promtest.yaml, and
// for each alert when it must fire, when it must not yet (its `for`), and what must never fire.
// Live evaluation against a running Prometheus is in live.test.ts.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ensureHelm } from "../chart/helm.ts";
import { PROMTOOL } from "./prometheus.ts";
import { type RuleGroup, renderRuleFile } from "./rules.ts";

const execFileP = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
let rules: { file: string; groups: RuleGroup[] };

beforeAll(async () => {
  await ensureHelm();
  rules = await renderRuleFile();
}, 900_000);

describe("the chart's alert rules", () => {
  it("pass promtool check rules", async () => {
    const { stdout } = await execFileP(PROMTOOL, ["check", "rules", rules.file]);
    expect(stdout).toContain("SUCCESS: 6 rules found");
  });

  it("behave as alerts.promtest.yaml says (promtool test rules)", async () => {
    const text = await readFile(join(HERE, "alerts.promtest.yaml"), "utf8");
    const dir = await mkdtemp(join(tmpdir(), "airlock-promtest-"));
    const file = join(dir, "alerts.promtest.yaml");
    await writeFile(file, text.replace(/^(\s*- )RULES_FILE$/m, `$1${rules.file}`));
    const r = await execFileP(PROMTOOL, ["test", "rules", file]).catch(
      (err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? "", stderr: err.stderr ?? "" }),
    );
    expect(`${r.stdout}${r.stderr}`).toContain("SUCCESS");
  });

  it("every alert has a firing case and a not-firing case in alerts.promtest.yaml", async () => {
    const tests = parse(await readFile(join(HERE, "alerts.promtest.yaml"), "utf8")) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test);
    for (const alert of rules.groups.flatMap((g) => g.rules.map((r) => r.alert ?? ""))) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect(
        mine.some((c) => c.exp_alerts.length > 0),
        `${alert} fires somewhere`,
      ).toBe(true);
      expect(
        mine.some((c) => c.exp_alerts.length === 0),
        `${alert} stays quiet somewhere`,
      ).toBe(true);
    }
  });
});
