// Local listeners for connections that declare `listen.port`, kept in step with the policy in
// force: a reload opens new ports and closes ones no longer declared. HTTP listeners are the
// HTTP guard's own (it knows its servers); other protocols get a plain TCP listener whose
// sockets go to their handler. A port that cannot be opened (taken by another process) keeps the
// sidecar unready, naming the connection and port, and is retried until it opens: an agent must
// never start talking to whatever holds the port instead.
import { createServer, type Server } from "node:net";
import type { CompiledConnection } from "./policy/compile.ts";
import { ridesHttp } from "./policy/protocols.ts";
import type { ConnectionHandler } from "./protocols/handler.ts";
import type { HttpGuard } from "./protocols/http/index.ts";
import type { SidecarContext } from "./runtime/context.ts";

export interface ListenerSet {
  /** `connection name → port` of every listener open now. */
  ports(): ReadonlyMap<string, number>;
  notReadyReason(): string | undefined;
  close(): Promise<void>;
}

export async function startListenerSet(opts: {
  ctx: SidecarContext;
  handlers: Partial<Record<"http" | "postgres" | "ssh", ConnectionHandler>>;
  http: HttpGuard;
  bindHost?: string;
  /** Retry interval while a listener failed to open; default 2 s. */
  retryMs?: number;
}): Promise<ListenerSet> {
  const { ctx } = opts;
  const host = opts.bindHost ?? "127.0.0.1";
  const tcp = new Map<string, { server: Server; port: number }>();
  const failures = new Map<string, string>();
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let logged = "";

  const open = async (conn: CompiledConnection) => {
    const handler =
      opts.handlers[ridesHttp(conn.spec.protocol) ? "http" : (conn.spec.protocol as "postgres" | "ssh")];
    const name = conn.spec.name;
    if (!handler) {
      failures.set(name, `protocol ${conn.spec.protocol} is not supported by this sidecar build`);
      return;
    }
    const server = createServer((socket) => {
      // Re-resolve per socket: the policy may have changed since the listener opened.
      const current = ctx.policies.current().connections.get(name);
      if (!current) return socket.destroy();
      handler.accept(socket, current, { via: "listener" });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(conn.spec.listen?.port, host, () => resolve());
    });
    tcp.set(name, { server, port: (server.address() as { port: number }).port });
  };

  // Readiness follows the policy in force, not the last sync: between a change and the end of the
  // sync it starts, a new connection's port is not open yet, and an agent told "ready" then would
  // meet a refused connection. Syncs run one at a time, so two never open one port.
  let wanted = 0;
  let synced = 0;
  let queue: Promise<void> = Promise.resolve();
  const requestSync = () => {
    const generation = ++wanted;
    queue = queue
      .then(() => sync())
      .catch((e: Error) => void failures.set("sync", `listeners could not be synced: ${e.message}`))
      .then(() => {
        synced = Math.max(synced, generation);
      });
    return queue;
  };

  const sync = async () => {
    if (closed) return;
    clearTimeout(retry);
    failures.clear();
    try {
      await opts.http.syncListeners();
    } catch (e) {
      failures.set("http", (e as Error).message);
    }
    // syncListeners logs a port it cannot open and goes on; listen() is idempotent for a bound
    // connection and throws for one that is not, which is what readiness needs to know.
    for (const conn of ctx.policies.current().connections.values()) {
      if (!ridesHttp(conn.spec.protocol) || conn.spec.listen?.port === undefined) continue;
      await opts.http
        .listen(conn)
        .catch((e: Error) =>
          failures.set(
            conn.spec.name,
            `connection ${conn.spec.name} cannot listen on port ${conn.spec.listen?.port}: ${e.message}`,
          ),
        );
    }
    const declared = new Map(
      [...ctx.policies.current().connections.values()]
        .filter((c) => c.spec.listen?.port && !ridesHttp(c.spec.protocol))
        .map((c) => [c.spec.name, c] as const),
    );
    for (const [name, l] of tcp) {
      if (declared.get(name)?.spec.listen?.port !== l.port) {
        l.server.close();
        tcp.delete(name);
      }
    }
    for (const [name, conn] of declared) {
      if (tcp.has(name)) continue;
      await open(conn).catch((e: Error) =>
        failures.set(
          name,
          `connection ${name} cannot listen on port ${conn.spec.listen?.port}: ${e.message}`,
        ),
      );
    }
    const summary = [...failures.values()].join("; ");
    if (summary !== logged)
      for (const [name, why] of failures)
        ctx.logger.error({ connection: name }, `${why}; not ready, retrying`);
    logged = summary;
    if (failures.size && !closed) {
      retry = setTimeout(() => void requestSync(), opts.retryMs ?? 2000);
      retry.unref();
    }
  };
  await requestSync();
  const unsubscribe = ctx.policies.onChange(() => void requestSync());

  return {
    ports: () => new Map([...tcp].map(([n, l]) => [n, l.port])),
    notReadyReason: () =>
      synced < wanted
        ? "opening the listeners of the policy now in force"
        : failures.size
          ? [...failures.values()].join("; ")
          : undefined,
    async close() {
      closed = true;
      clearTimeout(retry);
      unsubscribe();
      await Promise.all([...tcp.values()].map((l) => new Promise<void>((r) => l.server.close(() => r()))));
      tcp.clear();
    },
  };
}
