// `airlock inject -f FILE`: prints the manifests with every Pod and pod template mutated exactly
// as the webhook would (like `istioctl kube-inject`). Policies come from --policy files and from
// AgentAccessPolicy documents in the input; no cluster is needed.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { defaultConfig } from "../../../injector/src/config.ts";
import {
  formatManifests,
  InjectionRefusedError,
  injectObjects,
  isPolicy,
  ManifestError,
  parseManifests,
} from "../../../injector/src/manifests.ts";
import { type Command, UsageError } from "../command.ts";

const USAGE = `Usage: airlock inject -f FILE [-f FILE...] [--policy FILE...] [flags]

Prints the given Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs
as the Airlock webhook would mutate them. Other objects pass through unchanged. A refused pod
prints the admission message and exits 1.

Flags:
  -f, --filename FILE   manifest file (YAML, several documents allowed); - reads stdin
  -p, --policy FILE     AgentAccessPolicy file(s) to consult (which Secrets the sidecar mounts);
                        policies inside the -f files are consulted too
  -n, --namespace NS    namespace of objects that name none; default "default"
      --image IMAGE     sidecar image; default ghcr.io/airlock-dev/airlock:<version>
  -o, --output FORMAT   yaml (default) or json
  -v, --verbose         say on stderr what happened to each object
  -h, --help            this text

Example:
  airlock inject -f deploy/agent.yaml -p deploy/policy.yaml | kubectl apply -f -
`;

async function readInput(path: string): Promise<string> {
  if (path === "-") {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

export const command: Command = {
  summary: "print manifests as the webhook would inject them (like istioctl kube-inject)",
  async run(argv) {
    let values: {
      filename?: string[];
      policy?: string[];
      namespace?: string;
      image?: string;
      output?: string;
      verbose?: boolean;
      help?: boolean;
    };
    try {
      ({ values } = parseArgs({
        args: argv,
        options: {
          filename: { type: "string", short: "f", multiple: true },
          policy: { type: "string", short: "p", multiple: true },
          namespace: { type: "string", short: "n" },
          image: { type: "string" },
          output: { type: "string", short: "o" },
          verbose: { type: "boolean", short: "v" },
          help: { type: "boolean", short: "h" },
        },
        strict: true,
        allowPositionals: false,
      }));
    } catch (err) {
      throw new UsageError(`${(err as Error).message}\n\n${USAGE}`);
    }
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (!values.filename?.length) throw new UsageError(`-f FILE is required\n\n${USAGE}`);
    const output = values.output ?? "yaml";
    if (output !== "yaml" && output !== "json") throw new UsageError(`--output must be yaml or json`);

    try {
      const policies: AgentAccessPolicy[] = [];
      for (const file of values.policy ?? []) {
        const docs = parseManifests(await readInput(file), file);
        const notPolicies = docs.filter((d) => !isPolicy(d));
        if (notPolicies.length)
          throw new UsageError(`${file}: --policy files hold AgentAccessPolicy objects only`);
        policies.push(...(docs as unknown as AgentAccessPolicy[]));
      }
      const objects = [];
      for (const file of values.filename) objects.push(...parseManifests(await readInput(file), file));
      const result = injectObjects(objects, {
        config: defaultConfig(values.image ? { image: values.image } : {}),
        policies,
        ...(values.namespace ? { namespace: values.namespace } : {}),
      });
      for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
      if (values.verbose) for (const n of result.notes) process.stderr.write(`${n}\n`);
      process.stdout.write(
        output === "json"
          ? `${JSON.stringify(result.objects.length === 1 ? result.objects[0] : { apiVersion: "v1", kind: "List", items: result.objects }, null, 2)}\n`
          : formatManifests(result.objects),
      );
      return 0;
    } catch (err) {
      if (err instanceof InjectionRefusedError) {
        for (const m of err.messages) process.stderr.write(`${m}\n`);
        return 1;
      }
      if (err instanceof ManifestError) throw new UsageError(err.message);
      throw err;
    }
  },
};
