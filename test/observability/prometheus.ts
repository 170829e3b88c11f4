// A real Prometheus (Debian's /usr/bin/prometheus) for tests: a temp config and data dir, a free
// loopback port, a 1 s scrape and evaluation interval, static targets labelled the way the chart's
// PodMonitor/ServiceMonitor label them (namespace, pod), and the HTTP API as functions.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { freePort } from "../harness/ports.ts";

export const PROMETHEUS = process.env.AIRLOCK_PROMETHEUS ?? "/usr/bin/prometheus";
export const PROMTOOL = process.env.AIRLOCK_PROMTOOL ?? "/usr/bin/promtool";

export interface Target {
  job: string;
  address: string;
  labels: Record<string, string>;
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface Alert {
  labels: Record<string, string>;
  state: "pending" | "firing" | "inactive";
  value: string;
}

export interface RunningPrometheus {
  url: string;
  /** Instant query; throws on an API error (bad PromQL included) with Prometheus' message. */
  query(expr: string): Promise<Sample[]>;
  alerts(): Promise<Alert[]>;
  /** Scrape health of every target. */
  targets(): Promise<{ labels: Record<string, string>; health: string; lastError: string }[]>;
  logs(): string;
  stop(): Promise<void>;
}

export { freePort };

export async function startPrometheus(opts: {
  targets: Target[];
  ruleFiles?: string[];
}): Promise<RunningPrometheus> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-prometheus-"));
  const jobs = new Map<string, Target[]>();
  for (const t of opts.targets) jobs.set(t.job, [...(jobs.get(t.job) ?? []), t]);
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
    rule_files: opts.ruleFiles ?? [],
    scrape_configs: [...jobs].map(([job, targets]) => ({
      job_name: job,
      static_configs: targets.map((t) => ({ targets: [t.address], labels: t.labels })),
    })),
  };
  const configFile = join(dir, "prometheus.yml");
  await writeFile(configFile, stringify(config));

  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    let output = "";
    const child: ChildProcess = spawn(
      PROMETHEUS,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      output += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      output += d;
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const ready = await waitReady(url, exited);
    if (!ready) {
      child.kill("SIGKILL");
      lastError = output;
      if (/address already in use/.test(output)) continue;
      break;
    }
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    };
    process.once("exit", () => child.kill("SIGKILL"));
    return {
      url,
      logs: () => output,
      async query(expr) {
        const data = await api<{ resultType: string; result: Sample[] | [number, string] }>(
          url,
          `/api/v1/query?query=${encodeURIComponent(expr)}`,
        );
        if (data.resultType === "scalar") return [{ metric: {}, value: data.result as [number, string] }];
        return data.result as Sample[];
      },
      async alerts() {
        return (await api<{ alerts: Alert[] }>(url, "/api/v1/alerts")).alerts;
      },
      async targets() {
        const d = await api<{
          activeTargets: { labels: Record<string, string>; health: string; lastError: string }[];
        }>(url, "/api/v1/targets");
        return d.activeTargets;
      },
      stop,
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`prometheus did not start:\n${lastError}`);
}

async function waitReady(url: string, exited: Promise<number | null>): Promise<boolean> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && !gone) {
    try {
      const r = await fetch(`${url}/-/ready`);
      if (r.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function api<T>(url: string, path: string): Promise<T> {
  const r = await fetch(`${url}${path}`);
  const body = (await r.json()) as { status: string; data: T; error?: string; errorType?: string };
  if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.errorType}: ${body.error}`);
  return body.data;
}
