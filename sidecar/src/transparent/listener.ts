// The transparent listener: where airlock-init's REDIRECT rule sends every outbound TCP connection of
// the pod (127.0.0.1:15900 for IPv4, [::1]:15900 for IPv6). For each captured socket it recovers the
// original destination, maps it to a policy connection, and hands the socket to that connection's
// protocol handler. What it cannot map is refused with a TCP reset, audited and counted: fail closed.
//
// Mapping, in order:
//   1. the address: connection targets/aliases that are, or resolve to, the original IP and port;
//   2. when that is not exactly one connection and an HTTP connection uses the port: the first
//      bytes (TLS ClientHello server_name, HTTP/1 Host or absolute request target), read with a
//      byte and time bound and passed to the handler as AcceptInfo.head;
//   3. otherwise: deny ("unknown destination", or "ambiguous" when several non-HTTP connections share
//      the address).
// Handlers always dial the connection's configured target, never the address the agent dialled.
import { randomUUID } from "node:crypto";
import { type AddressInfo, createServer, isIP, type Server, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { OperationLog } from "../operations/lifecycle.ts";
import type { CompiledConnection, PolicySet } from "../policy/compile.ts";
import { ridesHttp } from "../policy/protocols.ts";
import type { AcceptInfo, ConnectionHandler } from "../protocols/handler.ts";
import type { SidecarContext } from "../runtime/context.ts";
import { type AddressMap, canonicalIp, createAddressMap, type Resolver } from "./address-map.ts";
import { type OriginalDestination, originalDst } from "./original-dst.ts";
import { type SniffResult, sniff } from "./sniff.ts";

export type Protocol = CompiledConnection["spec"]["protocol"];

export const DEFAULT_CAPTURE_PORT = 15900;
/** A TLS ClientHello with post-quantum key shares is ~2 KB; one full record is 16 KB. */
export const DEFAULT_MAX_PEEK_BYTES = 16 * 1024 + 5;

export interface TransparentListenerOptions {
  ctx: SidecarContext;
  /** Capture port (airlock-init --redirect-port). 0 picks a free port (tests). */
  port?: number;
  /** Where REDIRECT delivers: 127.0.0.1 for IPv4 and ::1 for IPv6. A host that cannot be bound
   *  (no IPv6 in the pod) is skipped with a warning; IPv6 captures then fail closed. */
  hosts?: readonly string[];
  handlers: Partial<Record<Protocol, ConnectionHandler>>;
  resolve?: Resolver;
  dnsTtlMs?: number;
  /** How long to wait for a client's first bytes when the address alone is not enough (default 5 s). */
  peekTimeoutMs?: number;
  maxPeekBytes?: number;
  /** An unknown address triggers a re-resolution when the last one is older than this (default 1 s). */
  missRefreshIntervalMs?: number;
  /** At most this long for the first resolution of the policy's host names before listening. */
  startupResolveTimeoutMs?: number;
  /** Test seam: how the original destination is read (default: SO_ORIGINAL_DST via the addon). */
  originalDestination?: (socket: Socket) => OriginalDestination;
}

export interface TransparentListener {
  /** The bound addresses (one per host). */
  addresses(): AddressInfo[];
  readonly addressMap: AddressMap;
  /** Stops accepting and refuses sockets still being classified; handed-over sockets are the handlers'. */
  close(): Promise<void>;
}

type Mapping =
  | { ok: true; connection: CompiledConnection; head?: Buffer; by: "address" | "tls-sni" | "http-host" }
  | { ok: false; reason: string; connection?: string };

const LOOPBACK = (a: string) => a === "::1" || a.startsWith("127.");
const formatDestination = (d: OriginalDestination) =>
  d.family === 6 ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;

function localAddresses(): Set<string> {
  const out = new Set<string>(["0.0.0.0", "::"]);
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) out.add(canonicalIp(a.address));
  return out;
}

interface PeekResult {
  head: Buffer;
  result: SniffResult;
  why?: string;
}

/** Reads the client's first bytes until `sniff` decides, the byte bound, the timeout, or EOF. */
function peek(socket: Socket, timeoutMs: number, maxBytes: number): Promise<PeekResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: SniffResult, why?: string) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.pause();
      resolve({ head: Buffer.concat(chunks, size), result, ...(why ? { why } : {}) });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const r = sniff(Buffer.concat(chunks, size));
      if (r.kind !== "need-more") finish(r);
      else if (size >= maxBytes) finish({ kind: "unknown" }, `no host name in the first ${maxBytes} bytes`);
    };
    const onEnd = () => finish({ kind: "unknown" }, "the client closed before naming a host");
    const timer = setTimeout(
      () => finish({ kind: "unknown" }, `the client sent no host name within ${timeoutMs} ms`),
      timeoutMs,
    );
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
  });
}

export async function createTransparentListener(
  opts: TransparentListenerOptions,
): Promise<TransparentListener> {
  const { ctx, handlers } = opts;
  const port = opts.port ?? DEFAULT_CAPTURE_PORT;
  const hosts = opts.hosts ?? ["127.0.0.1", "::1"];
  const peekTimeoutMs = opts.peekTimeoutMs ?? 5_000;
  const maxPeekBytes = opts.maxPeekBytes ?? DEFAULT_MAX_PEEK_BYTES;
  const readDestination = opts.originalDestination ?? originalDst;
  const missRefreshIntervalMs = opts.missRefreshIntervalMs ?? 1_000;
  const log = ctx.logger.child({ component: "transparent" });

  const addressMap = createAddressMap(ctx.policies.current(), {
    ...(opts.resolve ? { resolve: opts.resolve } : {}),
    ...(opts.dnsTtlMs ? { ttlMs: opts.dnsTtlMs } : {}),
    logger: log,
  });
  let locals = localAddresses();
  const unsubscribe = ctx.policies.onChange((set) => {
    locals = localAddresses();
    void addressMap.refresh(set).catch((err: unknown) => log.error({ err }, "address refresh failed"));
  });
  const startup = addressMap.refresh();
  await Promise.race([
    startup,
    new Promise((r) => setTimeout(r, opts.startupResolveTimeoutMs ?? 5_000).unref()),
  ]);
  addressMap.start();

  const servers: Server[] = [];
  const ownPorts = new Set<number>();
  const classifying = new Set<Socket>();
  let closed = false;

  function isSelf(d: OriginalDestination): boolean {
    return ownPorts.has(d.port) && (LOOPBACK(d.address) || locals.has(canonicalIp(d.address)));
  }

  function deny(socket: Socket, started: number, destination: string, reason: string, connection = "") {
    new OperationLog(ctx, {
      session: randomUUID(),
      connection,
      protocol: "tcp",
      identity: {
        serviceAccount: ctx.workload.subject,
        pod: ctx.workload.podName,
        namespace: ctx.workload.namespace,
      },
      failClosed: () => socket.destroy(),
    })
      .begin({ kind: "tcp", destination }, started)
      .decide({ action: "deny", reason })
      .finish();
    ctx.metrics.unknownDestinations.inc();
    log.warn({ destination, reason }, "captured connection refused");
    socket.resetAndDestroy();
  }

  async function map(socket: Socket, dst: OriginalDestination, set: PolicySet): Promise<Mapping> {
    const known = (names: readonly string[]) =>
      names.map((n) => set.connections.get(n)).filter((c): c is CompiledConnection => c !== undefined);
    let candidates = known(addressMap.lookup(dst.address, dst.port));
    if (candidates.length === 0 && addressMap.age() > missRefreshIntervalMs) {
      // The agent may hold a fresher DNS answer than ours: re-resolve once before giving up.
      await Promise.race([addressMap.refresh(), new Promise((r) => setTimeout(r, peekTimeoutMs).unref())]);
      candidates = known(addressMap.lookup(dst.address, dst.port));
    }
    const [only] = candidates;
    if (candidates.length === 1 && only) return { ok: true, connection: only, by: "address" };

    const httpOnPort = [...set.connections.values()].some(
      (c) => ridesHttp(c.spec.protocol) && c.spec.target.port === dst.port,
    );
    if (!httpOnPort)
      return candidates.length > 1
        ? {
            ok: false,
            reason: `ambiguous destination ${formatDestination(dst)}: connections ${candidates
              .map((c) => c.spec.name)
              .join(", ")} share it and their protocol names no host; use their local listeners`,
          }
        : { ok: false, reason: `unknown destination ${formatDestination(dst)}: no policy connection for it` };

    const { head, result, why } = await peek(socket, peekTimeoutMs, maxPeekBytes);
    const name = result.kind === "tls" ? result.serverName : result.kind === "http" ? result.host : undefined;
    const by = result.kind === "tls" ? "tls-sni" : "http-host";
    if (name) {
      const byName = isIP(name) ? known(addressMap.lookup(name, dst.port)) : [];
      const connection = set.connectionFor(name, dst.port) ?? (byName.length === 1 ? byName[0] : undefined);
      if (connection) return { ok: true, connection, head, by };
      const key = `${name.toLowerCase()}:${dst.port}`;
      const shared = set.sharedTargets.find((t) => t.target === key);
      if (shared)
        return {
          ok: false,
          reason: `ambiguous destination ${formatDestination(dst)}: connections ${shared.connections.join(", ")} all target ${key}; use their local listeners`,
        };
      return {
        ok: false,
        reason: `unknown destination ${formatDestination(dst)}: ${by === "tls-sni" ? "TLS server name" : "HTTP host"} ${name} is not a policy connection on port ${dst.port}`,
      };
    }
    const what =
      why ??
      (result.kind === "tls"
        ? "TLS without a server name"
        : result.kind === "http"
          ? "HTTP without a Host header"
          : "neither TLS nor HTTP");
    return {
      ok: false,
      reason: `${candidates.length > 1 ? "ambiguous" : "unknown"} destination ${formatDestination(dst)}: ${what}`,
    };
  }

  async function onConnection(socket: Socket) {
    const started = performance.now();
    if (closed) return void socket.resetAndDestroy();
    classifying.add(socket);
    const onError = (err: Error) =>
      log.debug({ err: err.message }, "captured socket error while classifying");
    socket.on("error", onError);
    try {
      let dst: OriginalDestination;
      try {
        dst = readDestination(socket);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        return deny(
          socket,
          started,
          "unknown",
          `no original destination (${typeof code === "string" ? code : "error"}): not a redirected connection`,
        );
      }
      dst = { ...dst, address: canonicalIp(dst.address) };
      const destination = formatDestination(dst);
      if (isSelf(dst))
        return deny(
          socket,
          started,
          destination,
          "connection loop: the destination is the sidecar's own capture listener",
        );

      const set = ctx.policies.current();
      const mapping = await map(socket, dst, set);
      if (!mapping.ok) return deny(socket, started, destination, mapping.reason);
      if (socket.destroyed) return;
      if (closed) return void socket.resetAndDestroy();

      const { connection } = mapping;
      const handler = handlers[ridesHttp(connection.spec.protocol) ? "http" : connection.spec.protocol];
      if (!handler)
        return deny(
          socket,
          started,
          destination,
          `no ${connection.spec.protocol} handler in this sidecar for connection ${connection.spec.name}`,
          connection.spec.name,
        );
      log.debug(
        { destination, connection: connection.spec.name, by: mapping.by },
        "captured connection mapped",
      );
      const info: AcceptInfo = { via: "transparent", ...(mapping.head ? { head: mapping.head } : {}) };
      classifying.delete(socket);
      socket.off("error", onError);
      try {
        handler.accept(socket, connection, info);
      } catch (err) {
        log.error({ err, connection: connection.spec.name }, "handler refused the captured socket");
        socket.destroy();
        return;
      }
      // Bytes were read to map the socket, which left it paused: resume for a handler that attached
      // 'data' listeners in accept(). (pipe() resumes by itself; a handler that attaches later
      // must call resume().)
      if (mapping.head && socket.isPaused() && socket.listenerCount("data") > 0) socket.resume();
    } catch (err) {
      log.error({ err }, "captured connection failed");
      socket.destroy();
    } finally {
      classifying.delete(socket);
      socket.off("error", onError);
    }
  }

  for (const host of hosts) {
    const server = createServer({ noDelay: true }, (s) => void onConnection(s));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host, port, exclusive: true }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (host.includes(":") && (code === "EADDRNOTAVAIL" || code === "EAFNOSUPPORT")) {
        log.warn({ host, code }, "no IPv6 loopback in this pod: IPv6 captures will be refused");
        continue;
      }
      for (const s of servers) s.close();
      unsubscribe();
      addressMap.stop();
      throw err;
    }
    server.on("error", (err) => log.error({ err, host }, "transparent listener error"));
    servers.push(server);
    ownPorts.add((server.address() as AddressInfo).port);
  }
  log.info(
    { addresses: servers.map((s) => s.address()), hosts: addressMap.snapshot() },
    "transparent listener ready",
  );

  return {
    addresses: () => servers.map((s) => s.address() as AddressInfo),
    addressMap,
    async close() {
      closed = true;
      unsubscribe();
      addressMap.stop();
      for (const s of servers) s.close();
      for (const s of classifying) s.resetAndDestroy();
      classifying.clear();
    },
  };
}
