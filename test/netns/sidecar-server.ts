// The sidecar for the network-namespace tests, run inside the agent namespace: the real transparent
// listener (SO_ORIGINAL_DST through the N-API addon) with the raw TCP test forwarder as the handler
// of every protocol. Starts as root, loads everything, then drops to the proxy UID/GID (what the
// injected sidecar container runs as) before it listens or dials anything.
// Prints JSON lines: {"ready":...}, {"accepted":...} per handed-over socket (with the original
// destination read again from the socket), {"audit":...} per audit event.
import type { Socket } from "node:net";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { CompiledConnection } from "../../sidecar/src/policy/compile.ts";
import type { AcceptInfo } from "../../sidecar/src/protocols/handler.ts";
import { createTransparentListener } from "../../sidecar/src/transparent/listener.ts";
import { loadNativeAddon, originalDst } from "../../sidecar/src/transparent/original-dst.ts";
import { tcpForwarder, testContext } from "../fixtures/transparent.ts";

interface Spec {
  policies: AgentAccessPolicy[];
  port: number;
  uid: number;
  gid: number;
}

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

loadNativeAddon();
const { ctx } = testContext(spec.policies, { onAudit: (e) => print({ audit: e }) });
const forwarder = tcpForwarder(ctx);
const handler = {
  accept(socket: Socket, connection: CompiledConnection, info: AcceptInfo) {
    print({
      accepted: {
        connection: connection.spec.name,
        originalDst: originalDst(socket),
        uid: process.getuid?.(),
        head: info.head?.toString("latin1"),
      },
    });
    forwarder.accept(socket, connection, info);
  },
  drain: () => forwarder.drain(),
};

process.setgroups?.([]);
process.setgid?.(spec.gid);
process.setuid?.(spec.uid);

const listener = await createTransparentListener({
  ctx,
  port: spec.port,
  handlers: { http: handler, postgres: handler, ssh: handler },
  peekTimeoutMs: 2_000,
});
print({
  ready: true,
  uid: process.getuid?.(),
  gid: process.getgid?.(),
  addresses: listener.addresses(),
  resolved: listener.addressMap.snapshot(),
});
process.on("SIGTERM", () => {
  void listener.close().then(() => process.exit(0));
});
