// Test fixture: the sidecar composition in Kubernetes mode in its own process, as
// `airlock sidecar --kubernetes` runs in a pod, except that the API server and the service
// account's token come from a kubeconfig file ($KUBECONFIG): outside a pod there is no in-cluster
// service account. Log and audit lines go to stdout; SIGTERM drains and exits, as the CLI does.
//
//   node test/faults/kube-sidecar.ts '{"podInfoDir":…,"secretsDir":…,"hashKeyFile":…,"adminPort":N}'
import { KubeConfig } from "@kubernetes/client-node";
import { startSidecar } from "../../sidecar/src/app.ts";

const args = JSON.parse(process.argv[2] ?? "{}") as {
  podInfoDir: string;
  secretsDir: string;
  hashKeyFile: string;
  adminPort: number;
};
const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(process.env.KUBECONFIG ?? "");
const sidecar = await startSidecar({
  kubernetes: true,
  kubeConfig,
  podInfoDir: args.podInfoDir,
  secretsDir: args.secretsDir,
  hashKeyFile: args.hashKeyFile,
  adminPort: args.adminPort,
  proxyPort: 0,
  capturePort: false,
});
process.once("SIGTERM", () => {
  void sidecar
    .drain("SIGTERM")
    .then(() => sidecar.close())
    .then(() => process.exit(0));
});
