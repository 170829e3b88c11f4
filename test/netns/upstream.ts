// An "upstream" for the network-namespace tests, run inside the upstream namespace. TCP: greets
// with `UPSTREAM <local address>:<port>` (so the agent can tell where it landed) and echoes.
// UDP: echoes with a `UDP ` prefix. Prints `{"ready":true}` once every socket is bound.
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { createServer } from "node:net";

interface Spec {
  tcp: number[];
  udp: number[];
  /** UDP sockets are bound per address: a wildcard socket would answer from whatever source
   *  address the kernel picks, which a connected client socket then drops. */
  udpHosts: string[];
}

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const closers: (() => void)[] = [];

for (const port of spec.tcp) {
  const server = createServer((socket) => {
    socket.on("error", () => {});
    const local = socket.localAddress ?? "";
    const address = local.startsWith("::ffff:") ? local.slice(7) : local;
    socket.write(`UPSTREAM ${address.includes(":") ? `[${address}]` : address}:${socket.localPort}\n`);
    socket.pipe(socket);
  });
  server.listen({ port, host: "::", ipv6Only: false });
  await once(server, "listening");
  closers.push(() => server.close());
}
for (const port of spec.udp) {
  for (const host of spec.udpHosts) {
    const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
    socket.on("message", (msg, rinfo) =>
      socket.send(Buffer.concat([Buffer.from("UDP "), msg]), rinfo.port, rinfo.address),
    );
    socket.bind(port, host);
    await once(socket, "listening");
    closers.push(() => socket.close());
  }
}
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.on("SIGTERM", () => {
  for (const c of closers) c();
  process.exit(0);
});
