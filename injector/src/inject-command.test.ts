// `airlock inject` as a user runs it: a child process, files and stdin in, YAML out, exit codes.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseManifests } from "./manifests.ts";
import { ANTHROPIC_PLACEHOLDER_API_KEY } from "./names.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const COMMAND = join(ROOT, "cli", "src", "commands", "inject.ts");
// What cli/src/main.ts does with a command module: run it; a UsageError exits 2.
const RUNNER = `
const { command } = await import(${JSON.stringify(COMMAND)});
try { process.exitCode = await command.run(process.argv.slice(1)); }
catch (err) { process.stderr.write(String(err.message) + "\\n"); process.exitCode = err.constructor.name === "UsageError" ? 2 : 1; }
`;

function run(args: string[], stdin?: string) {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", RUNNER, "--", ...args], {
    cwd: ROOT,
    input: stdin ?? "",
    encoding: "utf8",
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const testdata = (f: string) => join(ROOT, "injector", "testdata", f);

describe("airlock inject", () => {
  it("prints a Deployment with its template injected and passes other objects through", () => {
    const r = run(["-f", testdata("deployment.yaml")]);
    expect(r.code, r.stderr).toBe(0);
    const [deploy, service] = parseManifests(r.stdout);
    const tpl = (deploy?.spec as { template: { spec: { initContainers: { name: string }[] } } } | undefined)
      ?.template;
    if (!tpl) throw new Error("no template");
    expect(tpl.spec.initContainers.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
    expect(service?.kind).toBe("Service");
  });

  it("reads stdin, mounts the Secrets of --policy files, and honours --image", () => {
    const pod =
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: agents, labels: {app: support-agent}}\nspec: {containers: [{name: a, image: x}]}\n";
    const r = run(
      ["-f", "-", "-p", join(ROOT, "examples", "claude-agent.yaml"), "--image", "my/airlock:dev"],
      pod,
    );
    expect(r.code, r.stderr).toBe(0);
    const [out] = parseManifests(r.stdout);
    const status = JSON.parse(out?.metadata?.annotations?.["airlock.dev/status"] ?? "{}") as {
      secrets: string[];
      image: string;
    };
    expect(status.secrets).toEqual(["anthropic-api-key", "tickets-token"]);
    expect(status.image).toBe("my/airlock:dev");
    // The example's Anthropic connection: the agent gets the inert placeholder key.
    const spec = out?.spec as { containers: { env?: { name: string; value?: string }[] }[] } | undefined;
    const env = spec?.containers[0]?.env;
    expect(env?.find((e) => e.name === "ANTHROPIC_API_KEY")?.value).toBe(ANTHROPIC_PLACEHOLDER_API_KEY);
  });

  it("is idempotent on its own output", () => {
    const once = run(["-f", testdata("basic-pod.yaml")]);
    const twice = run(["-f", "-"], once.stdout);
    expect(twice.code).toBe(0);
    expect(twice.stdout).toBe(once.stdout);
  });

  it("exits 1 with the admission message for a refused pod", () => {
    const r = run(["-f", testdata("refused-share-process-namespace.yaml")]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(
      "airlock: refusing pod shared-pid in namespace agents: spec.shareProcessNamespace",
    );
  });

  it("exits 2 on bad usage or input", () => {
    expect(run([]).code).toBe(2);
    expect(run(["-f", "/nonexistent.yaml"]).code).toBe(2);
    expect(run(["-f", "-"], "a: [unclosed").code).toBe(2);
    expect(run(["-f", testdata("basic-pod.yaml"), "-p", testdata("basic-pod.yaml")]).code).toBe(2);
    const help = run(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: airlock inject");
  });
});
