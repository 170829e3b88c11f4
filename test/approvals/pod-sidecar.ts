// An agent pod's sidecar in Kubernetes mode, in this process: its policy from the API server, its
// approvals as AccessRequests, the agent service account's real token; audit events kept in memory.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { type Sidecar, startSidecar } from "../../sidecar/src/app.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { createMemoryAuditSink } from "../../sidecar/src/audit/sink.ts";
import type { Cluster } from "./cluster.ts";

export interface PodSidecar {
  sidecar: Sidecar;
  audit: AuditEvent[];
  /** Closes the sidecar and removes its secrets directory (once; later calls do nothing). */
  close(): Promise<void>;
}

export async function startPodSidecar(
  c: Cluster,
  opts: {
    /** The pod (default agent-0). */
    podName?: string;
    /** The API server's URL (default the control plane's; a relay's to cut it). */
    server?: string;
    /** Default: a new key in the sidecar's own directory. */
    hashKeyFile?: string;
  } = {},
): Promise<PodSidecar> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-approvals-"));
  const memory = createMemoryAuditSink();
  const sidecar = await startSidecar({
    kubernetes: true,
    kubeConfig: c.agentKubeConfig(opts.server),
    podInfoDir: await c.podInfo(opts.podName ?? "agent-0"),
    secretsDir: dir,
    hashKeyFile: opts.hashKeyFile ?? join(dir, "hash.key"),
    adminPort: 0,
    proxyPort: 0,
    capturePort: false,
    logger: pino({ level: "silent" }),
    audit: memory,
  });
  let closed = false;
  return {
    sidecar,
    audit: memory.events,
    async close() {
      if (closed) return;
      closed = true;
      await sidecar.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
