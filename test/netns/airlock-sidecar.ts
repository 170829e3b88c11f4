// The real sidecar (app.ts: policy files, the HTTP/PostgreSQL guards, the pod CA keeper, the
// transparent listener on 15900, the explicit proxy on 15901, the admin port with standalone
// approvals on 15990) for the network-namespace tests, run inside the agent namespace. Starts as
// root so the native addon loads, then drops to the proxy UID/GID — what the injected sidecar
// container runs as, and what airlock-init's rules exempt — before it listens or dials anything.
// Prints JSON lines: the sidecar's own logs (pino), {"audit":...} per audit event, {"ready":...}.

import { startSidecar } from "../../sidecar/src/app.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { loadNativeAddon } from "../../sidecar/src/transparent/original-dst.ts";

interface Spec {
  policyFiles: string[];
  secretsDir: string;
  trustBundle: string;
  hashKeyFile: string;
  approverTokenFile: string;
  uid: number;
  gid: number;
}

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

loadNativeAddon();
process.setgroups?.([]);
process.setgid?.(spec.gid);
process.setuid?.(spec.uid);

const sidecar = await startSidecar({
  policyFiles: spec.policyFiles,
  secretsDir: spec.secretsDir,
  serviceAccount: "agents/agent",
  trustBundlePath: spec.trustBundle,
  hashKeyFile: spec.hashKeyFile,
  approverTokenFile: spec.approverTokenFile,
  approver: "ann",
  capturePort: 15900,
  proxyPort: 15901,
  adminPort: 15990,
  audit: { emit: (e: AuditEvent) => print({ audit: e }) },
});
print({ ready: true, uid: process.getuid?.(), gid: process.getgid?.() });
process.once("SIGTERM", () => {
  void sidecar
    .drain("SIGTERM")
    .then(() => sidecar.close())
    .then(() => process.exit(0));
});
