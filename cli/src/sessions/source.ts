// Where `airlock sessions` reads recordings from: a recording directory (`audit.destination:
// file`), a saved log of the sidecar's stdout (`kubectl logs ... > FILE`, `-` for stdin), or the
// sidecar's logs read through the Kubernetes API (container airlock-sidecar of a pod).
import { readFile } from "node:fs/promises";
import {
  catalogFromDirectory,
  catalogFromLog,
  type RecordingCatalog,
} from "../../../sidecar/src/recording/index.ts";
import { UsageError } from "../command.ts";

export const SIDECAR_CONTAINER = "airlock-sidecar";

export interface SourceFlags {
  dir?: string | undefined;
  logs?: string | undefined;
  pod?: string | undefined;
  namespace?: string | undefined;
  container?: string | undefined;
  kubeconfig?: string | undefined;
  context?: string | undefined;
}

export const SOURCE_HELP = `Where recordings come from (exactly one):
  --dir DIR                a recording directory (policy audit.destination: file)
  --logs FILE              a saved log of the sidecar's stdout (kubectl logs POD -c airlock-sidecar > FILE); - reads stdin
  --pod NAME [-n NS]       the sidecar's logs through the Kubernetes API (container ${SIDECAR_CONTAINER})
      --container NAME     another container name
      --kubeconfig FILE, --context NAME   which cluster (default: KUBECONFIG / ~/.kube/config, current context)`;

export const SOURCE_OPTIONS = {
  dir: { type: "string" },
  logs: { type: "string" },
  pod: { type: "string" },
  namespace: { type: "string", short: "n" },
  container: { type: "string" },
  kubeconfig: { type: "string" },
  context: { type: "string" },
} as const;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** The pod's sidecar log text, through CoreV1Api.readNamespacedPodLog. */
export async function readPodLog(flags: SourceFlags): Promise<string> {
  const { CoreV1Api, KubeConfig } = await import("@kubernetes/client-node");
  const kc = new KubeConfig();
  if (flags.kubeconfig) kc.loadFromFile(flags.kubeconfig);
  else kc.loadFromDefault();
  if (flags.context) kc.setCurrentContext(flags.context);
  const namespace = flags.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
  const api = kc.makeApiClient(CoreV1Api);
  try {
    return await api.readNamespacedPodLog({
      name: flags.pod as string,
      namespace,
      container: flags.container ?? SIDECAR_CONTAINER,
    });
  } catch (err) {
    const e = err as { code?: number; body?: unknown; message?: string };
    let status: unknown = e.body;
    if (typeof status === "string") {
      try {
        status = JSON.parse(status);
      } catch {
        // not a Status object
      }
    }
    const message = (status as { message?: string } | undefined)?.message ?? e.message ?? String(err);
    throw new UsageError(`cannot read logs of pod ${namespace}/${flags.pod}: ${message}`);
  }
}

export async function openSource(flags: SourceFlags): Promise<RecordingCatalog> {
  const given = [flags.dir, flags.logs, flags.pod].filter((v) => v !== undefined);
  if (given.length !== 1) throw new UsageError("give exactly one of --dir DIR, --logs FILE, --pod NAME");
  if (flags.dir !== undefined) {
    try {
      return await catalogFromDirectory(flags.dir);
    } catch (err) {
      throw new UsageError(`cannot read ${flags.dir}: ${(err as Error).message}`);
    }
  }
  if (flags.logs !== undefined) {
    let text: string;
    try {
      text = flags.logs === "-" ? await readStdin() : await readFile(flags.logs, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read ${flags.logs}: ${(err as Error).message}`);
    }
    return catalogFromLog(text);
  }
  return catalogFromLog(await readPodLog(flags));
}
