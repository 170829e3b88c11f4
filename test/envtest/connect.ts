// Inside a test file of the `integration` project: the shared control plane started by
// global-setup.ts, as a handle.
//
//   const k8s = connect();
//   const ns = await k8s.createNamespace("injector");
//   const { code } = await k8s.kubectl(["apply", "-n", ns, "-f", "-"], { stdin: yaml });
import { randomBytes } from "node:crypto";
import { CoreV1Api } from "@kubernetes/client-node";
import { expect, inject } from "vitest";
import { attachControlPlane, type ClusterAccess } from "./control-plane.ts";
import type { EnvtestProvided } from "./global-setup.ts";

export type { ClusterAccess, EnvtestInfo, KubectlOptions, KubectlResult, User } from "./control-plane.ts";

export interface Envtest extends ClusterAccess {
  /**
   * Creates a namespace `<prefix>-<random>` (as admin) and returns its name. There is no
   * kube-controller-manager, so deleting a namespace would leave it Terminating forever: don't;
   * the whole etcd is thrown away after the run.
   */
  createNamespace(prefix: string): Promise<string>;
}

/** `kubectl apply` (as admin) of one object or List, which must succeed. */
export async function apply(k8s: Envtest, obj: unknown): Promise<void> {
  const r = await k8s.kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(obj) });
  expect(r.code, r.stderr).toBe(0);
}

let cached: Envtest | undefined;

/** The shared control plane; throws with the start-up error if it is not available. */
export function connect(): Envtest {
  if (cached) return cached;
  const provided = inject("envtest") as EnvtestProvided | undefined;
  if (!provided) {
    throw new Error(
      "envtest: no control plane was provided; run this file in the vitest `integration` project " +
        "(npx vitest run --project integration), whose globalSetup is test/envtest/global-setup.ts",
    );
  }
  if (!provided.ok)
    throw new Error(`envtest: the Kubernetes control plane is not available:\n${provided.error}`);
  const { ok: _ok, ...info } = provided;
  const access = attachControlPlane(info);
  const core = access.kubeConfig.makeApiClient(CoreV1Api);
  cached = {
    ...access,
    async createNamespace(prefix: string): Promise<string> {
      const base =
        prefix
          .toLowerCase()
          .replace(/[^a-z0-9-]+/g, "-")
          .replace(/^-+|-+$/g, "")
          .slice(0, 50) || "test";
      const name = `${base}-${randomBytes(3).toString("hex")}`;
      await core.createNamespace({
        body: { metadata: { name, labels: { "airlock.dev/envtest": "true" } } },
      });
      return name;
    },
  };
  return cached;
}
