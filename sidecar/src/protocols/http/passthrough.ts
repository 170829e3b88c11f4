// The opaque relay of a `tls.mode: passthrough` connection: the agent's own TLS (a CONNECT, or TLS
// the transparent listener captured) goes byte for byte to the connection's target, so a client
// that pins the server's key keeps working. Host-level only: the policy decided who may open it
// (a rule allowing CONNECT, for the subject) before this runs. Here the ClientHello must name the
// connection (its host or an alias; none only when the target is an address), or nothing is
// relayed; the tunnel is one operation, audited when it ends with the server name and the bytes
// relayed each way (as Envoy's TCP proxy logs a connection when it closes).
import { connect, isIP, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { sniff } from "../../transparent/sniff.ts";
import type { Exchange } from "./exchange.ts";
import { FIRST_BYTES_TIMEOUT_MS } from "./first-bytes.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

export interface RelayDeps {
  ctx: SidecarContext;
  connectTimeoutMs: number;
  /** Open tunnels, so close() can cut them. */
  open: Set<Duplex>;
}

/** A ClientHello spans at most a few records: past this nothing is relayed. */
const MAX_HELLO_BYTES = 64 * 1024;

const norm = (h: string) => h.toLowerCase().replace(/\.$/, "");

/** Why the first bytes may not be relayed (undefined: they may), and the server name they carry. */
export function checkHello(
  connection: CompiledConnection,
  bytes: Buffer,
): { sni?: string; refusal?: { reason: string; detail: string } } {
  const hello = sniff(bytes);
  if (hello.kind !== "tls")
    return {
      refusal: {
        reason: "not_tls",
        detail: "the agent did not start TLS: a passthrough connection relays only the agent's own TLS",
      },
    };
  if (hello.serverNameInvalid)
    return {
      refusal: {
        reason: "bad_sni",
        detail:
          "the agent's TLS server_name does not name exactly one valid host (repeated, several names, another name type, or characters no host name has): refused whatever the target",
      },
    };
  const target = connection.spec.target;
  const sni = hello.serverName === undefined ? undefined : norm(hello.serverName);
  if (sni === undefined)
    return isIP(target.host)
      ? {}
      : {
          refusal: {
            reason: "no_sni",
            detail: `the agent's TLS names no server, and ${target.host} is a name: without one the tunnel's destination is unknown`,
          },
        };
  const names = [target.host, ...(target.aliases ?? [])].map(norm);
  if (!names.includes(sni))
    return {
      sni,
      refusal: {
        reason: "sni_mismatch",
        detail: `the TLS server name ${sni} is not a name of connection ${connection.spec.name} (${names.join(", ")})`,
      },
    };
  return { sni };
}

/**
 * Reads until the agent's ClientHello is complete (or its first bytes show it is not TLS), starting
 * with `head`; `then` gets the bytes read, or undefined when the agent left, stayed silent past
 * the timeout or sent more than a ClientHello can be. The socket is left paused.
 */
export function readHello(socket: Duplex, head: Buffer | undefined, then: (bytes?: Buffer) => void): void {
  const chunks: Buffer[] = head?.length ? [head] : [];
  let size = head?.length ?? 0;
  const decided = (buf: Buffer) => size > 0 && sniff(buf).kind !== "need-more";
  if (size > 0 && decided(Buffer.concat(chunks, size))) {
    then(Buffer.concat(chunks, size));
    return;
  }
  const timer = setTimeout(() => finish(undefined), FIRST_BYTES_TIMEOUT_MS);
  timer.unref();
  function finish(bytes?: Buffer) {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("end", onGone);
    socket.off("close", onGone);
    socket.pause();
    then(bytes);
  }
  function onData(chunk: Buffer) {
    chunks.push(chunk);
    size += chunk.length;
    const buf = Buffer.concat(chunks, size);
    if (decided(buf)) finish(buf);
    else if (size >= MAX_HELLO_BYTES) finish(undefined);
  }
  function onGone() {
    finish(undefined);
  }
  socket.on("data", onData);
  socket.once("end", onGone);
  socket.once("close", onGone);
  socket.resume();
}

/**
 * Relays `client` to the connection's target once the decision (already recorded on `ex`) allowed
 * it: connects, calls `ready` (the CONNECT's 200), reads and checks the ClientHello, then splices.
 * `ex` ends exactly once: refused, failed, or when the tunnel closes.
 */
export function relay(
  deps: RelayDeps,
  ex: Exchange,
  connection: CompiledConnection,
  client: Duplex,
  head: Buffer | undefined,
  ready: () => void,
  failed: (status: number, detail: string) => void,
): void {
  const { ctx } = deps;
  const name = connection.spec.name;
  const started = performance.now();
  const upstream = connect({ host: connection.spec.target.host, port: connection.spec.target.port });
  upstream.setNoDelay(true);
  const timer = setTimeout(() => {
    const e = new Error("connect timeout") as Error & { code: string };
    e.code = "ECONNECT_TIMEOUT";
    upstream.destroy(e);
  }, deps.connectTimeoutMs);
  timer.unref();
  const onError = (err: Error) => {
    clearTimeout(timer);
    const failure = classifyUpstreamError(err);
    ctx.metrics.upstreamErrors.inc({ connection: name, protocol: "http", reason: failure.reason });
    ex.upstream = { error: failure.detail };
    ex.finish();
    failed(failure.status, failure.detail);
  };
  upstream.once("error", onError);
  upstream.once("connect", () => {
    clearTimeout(timer);
    upstream.off("error", onError);
    // Until the splice, an upstream that goes away just ends the attempt.
    upstream.once("error", () => upstream.destroy());
    ctx.metrics.upstreamSeconds.observe(
      { connection: name, protocol: "http" },
      (performance.now() - started) / 1000,
    );
    if (client.destroyed) {
      upstream.destroy();
      ex.end("agent_disconnected");
      return;
    }
    ready();
    readHello(client, head, (bytes) => {
      if (!bytes) {
        upstream.destroy();
        client.destroy();
        ex.end("agent_disconnected");
        return;
      }
      const checked = checkHello(connection, bytes);
      if (checked.sni !== undefined) ex.operation = { kind: "http-tunnel", sni: checked.sni };
      if (checked.refusal) {
        ctx.logger.warn(
          { connection: name, reason: checked.refusal.reason, ...(checked.sni ? { sni: checked.sni } : {}) },
          "passthrough tunnel refused",
        );
        ex.decide({ action: "deny", policy: connection.policy, reason: checked.refusal.detail });
        ex.end(checked.refusal.reason);
        upstream.destroy();
        client.destroy();
        return;
      }
      ex.upstream = { status: "connected" };
      upstream.write(bytes);
      splice(deps, ex, client, upstream);
    });
  });
}

function splice(deps: RelayDeps, ex: Exchange, client: Duplex, upstream: Socket): void {
  const { ctx, open } = deps;
  const connection = ex.connection;
  open.add(client);
  ctx.metrics.sessions.inc({ connection, protocol: "http" });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    open.delete(client);
    ctx.metrics.sessions.dec({ connection, protocol: "http" });
    client.destroy();
    upstream.destroy();
    // What went to the upstream is what the agent sent (the ClientHello included), and back.
    const op = ex.operation;
    ex.operation = {
      kind: "http-tunnel",
      ...(op.kind === "http-tunnel" && op.sni !== undefined ? { sni: op.sni } : {}),
      bytes: { fromAgent: upstream.bytesWritten, fromUpstream: upstream.bytesRead },
    };
    ex.end();
  };
  client.on("error", close);
  upstream.on("error", close);
  client.on("close", close);
  upstream.on("close", close);
  client.pipe(upstream);
  upstream.pipe(client);
  client.resume();
}
