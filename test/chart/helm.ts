// helm for the chart suites: built from the Go module proxy by test/harness/helm.sh (cached outside
// the repo), run against charts/airlock. Rendered manifests come back as objects.
import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CHART = join(ROOT, "charts", "airlock");
const HELM_SCRIPT = join(ROOT, "test", "harness", "helm.sh");

/** A rendered Kubernetes object (loosely typed: tests read what they assert on). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  cmd: string,
  args: readonly string[],
  opts: { stderr?: "pipe" | "inherit" } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], { stdio: ["ignore", "pipe", opts.stderr ?? "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

let helmPath: Promise<string> | undefined;

/**
 * The cached helm binary, built first if missing (minutes on a cold Go cache; the build's progress
 * goes to this process's stderr). Throws with the build's output when it fails.
 */
export function ensureHelm(): Promise<string> {
  helmPath ??= (async () => {
    const where = await run("bash", [HELM_SCRIPT, "--print-path"]);
    const path = where.stdout.trim();
    const built = await run("bash", [HELM_SCRIPT], { stderr: "inherit" });
    if (built.code !== 0)
      throw new Error(`test/harness/helm.sh failed (exit ${built.code}); see its output above`);
    return path;
  })();
  return helmPath;
}

export async function helm(args: readonly string[]): Promise<RunResult> {
  return run(await ensureHelm(), args);
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  values?: Record<string, unknown>;
  /** e.g. 1.35.4: the cluster version helm assumes (Capabilities.KubeVersion). */
  kubeVersion?: string;
}

async function valuesFile(values: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-chart-values-"));
  const file = join(dir, "values.yaml");
  // JSON is YAML.
  await writeFile(file, JSON.stringify(values));
  return file;
}

export async function templateArgs(opts: RenderOptions): Promise<string[]> {
  const args = [
    "template",
    opts.release ?? "airlock",
    CHART,
    "--namespace",
    opts.namespace ?? "airlock-system",
  ];
  if (opts.values) args.push("--values", await valuesFile(opts.values));
  if (opts.kubeVersion) args.push("--kube-version", opts.kubeVersion);
  return args;
}

/** `helm template` as it is; tests assert on failures too. */
export async function template(opts: RenderOptions = {}): Promise<RunResult> {
  return helm(await templateArgs(opts));
}

/** `helm template --include-crds`, parsed; throws with helm's stderr when it fails. */
export async function render(opts: RenderOptions & { includeCrds?: boolean } = {}): Promise<K8sObject[]> {
  const args = await templateArgs(opts);
  if (opts.includeCrds) args.push("--include-crds");
  const r = await helm(args);
  if (r.code !== 0) throw new Error(`helm ${args.join(" ")} failed:\n${r.stderr}`);
  return parseManifests(r.stdout);
}

export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length) throw new Error(`rendered YAML does not parse: ${d.errors[0]?.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null && typeof o === "object" && "kind" in o);
}

export function find(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const hit = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!hit) {
    const have = objects.map((o) => `${o.kind}/${o.metadata.name}`).join(", ");
    throw new Error(`no ${kind}${name ? `/${name}` : ""} rendered; have: ${have}`);
  }
  return hit;
}

export function kinds(objects: readonly K8sObject[]): string[] {
  return [...new Set(objects.map((o) => o.kind))].sort();
}
