// A protocol guard loaded only once a policy in force has a connection of its protocol: the
// PostgreSQL guard brings the SQL parser (libpg-query's WebAssembly, compiled when imported) and
// the SSH guard ssh2, which a pod whose policies name neither would carry for nothing (HTTP-only
// policy: idle RSS ~141 → ~133 MB, V8 heap 63 → 42 MB, external memory 165 → 12 MB). A socket that arrives while the guard is loading waits
// for it, unread; one whose guard failed to load is closed (fail closed), and the failure is the
// sidecar's not-ready reason until a later load succeeds.
import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { CompiledConnection } from "../policy/compile.ts";
import type { AcceptInfo, ConnectionHandler } from "./handler.ts";

export interface LazyHandler<G extends ConnectionHandler> extends ConnectionHandler {
  /** Loads the guard (once; again after a failure) and resolves with it. */
  load(): Promise<G>;
  /** The guard, once loaded. */
  readonly loaded: G | undefined;
  /** Why the last load failed, until one succeeds. */
  readonly problem: string | undefined;
}

export function lazyHandler<G extends ConnectionHandler>(
  protocol: string,
  create: () => Promise<G>,
  logger: Logger,
): LazyHandler<G> {
  let guard: G | undefined;
  let loading: Promise<G> | undefined;
  let problem: string | undefined;
  let draining = false;

  const load = () => {
    loading ??= create().then(
      (g) => {
        guard = g;
        problem = undefined;
        return g;
      },
      (err: unknown) => {
        loading = undefined;
        problem = `the ${protocol} guard failed to load: ${err instanceof Error ? err.message : String(err)}`;
        logger.error({ protocol }, problem);
        throw err;
      },
    );
    return loading;
  };

  return {
    load,
    get loaded() {
      return guard;
    },
    get problem() {
      return problem;
    },
    accept(socket: Socket, connection: CompiledConnection, info: AcceptInfo) {
      if (guard) return guard.accept(socket, connection, info);
      if (draining) return void socket.destroy();
      // Until the guard owns it, an error on the socket must not go unhandled.
      const onError = () => socket.destroy();
      socket.on("error", onError);
      load().then(
        (g) => {
          socket.off("error", onError);
          if (socket.destroyed) return;
          g.accept(socket, connection, info);
          // As the capture listener does after a synchronous hand-over: bytes read to map the
          // socket left it paused, and a handler that attached 'data' listeners expects a flow.
          if (info.head && socket.isPaused() && socket.listenerCount("data") > 0) socket.resume();
        },
        () => socket.destroy(),
      );
    },
    async drain(deadline) {
      draining = true;
      // Sockets waiting for the load are handed over before the drain starts (then-order).
      const g = guard ?? (await loading?.catch(() => undefined));
      await g?.drain(deadline);
    },
  };
}
