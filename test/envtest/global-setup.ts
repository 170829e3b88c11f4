// vitest globalSetup for the `integration` project: one shared kube-apiserver + etcd per run.
// Test files reach it through connect.ts. If the control plane cannot be built or started the
// error is handed to the tests, and every test that needs Kubernetes fails with it (never skips);
// integration tests that do not use Kubernetes still run.
import type { TestProject } from "vitest/node";
import { type ControlPlane, type EnvtestInfo, startControlPlane } from "./control-plane.ts";

export type EnvtestProvided = ({ ok: true } & EnvtestInfo) | { ok: false; error: string };

declare module "vitest" {
  interface ProvidedContext {
    envtest: EnvtestProvided;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let controlPlane: ControlPlane | undefined;
  try {
    controlPlane = await startControlPlane();
    project.provide("envtest", { ok: true, ...controlPlane.info });
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    process.stderr.write(`[envtest] control plane failed to start; Kubernetes tests will fail:\n${error}\n`);
    project.provide("envtest", { ok: false, error });
  }
  return async () => {
    await controlPlane?.stop();
  };
}
