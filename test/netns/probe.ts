// An "agent" process for the network-namespace tests. Runs under whatever identity it is started
// with (setpriv), or drops to `drop` itself first; then optionally tries to become another user,
// opens the connections it is told to, and prints one JSON line with what happened.
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { type AddressInfo, connect, createServer } from "node:net";

interface Spec {
  drop?: { uid: number; gid: number; groups?: number[] };
  trySetuid?: number;
  tcp?: { host: string; port: number; send?: string };
  udp?: { host: string; port: number; send: string };
  loopback?: boolean;
  timeoutMs?: number;
}

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
const timeoutMs = spec.timeoutMs ?? 3_000;
const codeOf = (err: unknown) => (err as { code?: string }).code ?? String(err);
const out: Record<string, unknown> = {};

if (spec.drop) {
  process.setgroups?.(spec.drop.groups ?? []);
  process.setgid?.(spec.drop.gid);
  process.setuid?.(spec.drop.uid);
}
out.uid = process.getuid?.();
out.gid = process.getgid?.();
out.groups = process.getgroups?.();

if (spec.trySetuid !== undefined) {
  const attempt = (fn: () => void) => {
    try {
      fn();
      return "ok";
    } catch (err) {
      return codeOf(err);
    }
  };
  out.setgid = attempt(() => process.setgid?.(spec.trySetuid ?? 0));
  out.setuid = attempt(() => process.setuid?.(spec.trySetuid ?? 0));
  out.uidAfter = process.getuid?.();
}

/** Connects, sends, and reads until the first line and the echo of what was sent arrived. */
function tcp(host: string, port: number, send = "ping\n"): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let data = "";
    const timer = setTimeout(() => finish({ ok: false, code: "TIMEOUT", data }), timeoutMs);
    function finish(r: Record<string, unknown>) {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    }
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(send));
    socket.on("data", (d: string) => {
      data += d;
      if (data.includes("\n") && data.endsWith(send)) finish({ ok: true, data });
    });
    socket.on("error", (err) => finish({ ok: false, code: codeOf(err), data }));
    socket.on("close", () => finish({ ok: false, code: "CLOSED", data }));
  });
}

if (spec.tcp) out.tcp = await tcp(spec.tcp.host, spec.tcp.port, spec.tcp.send);

if (spec.udp) {
  const { host, port, send } = spec.udp;
  const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
  out.udp = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, code: "TIMEOUT" }), timeoutMs);
    socket.on("message", (msg) => {
      clearTimeout(timer);
      resolve({ ok: true, data: msg.toString() });
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, code: codeOf(err) });
    });
    socket.connect(port, host, () => socket.send(send));
  });
  socket.close();
}

if (spec.loopback) {
  const results: Record<string, unknown> = {};
  for (const host of ["127.0.0.1", "::1"]) {
    const server = createServer((s) => {
      s.write("LOCAL\n");
      s.pipe(s);
    });
    server.listen(0, host);
    await once(server, "listening");
    results[host] = await tcp(host, (server.address() as AddressInfo).port);
    server.close();
  }
  out.loopback = results;
}

process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
