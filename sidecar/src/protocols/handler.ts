// The seam between listeners (per-connection local ports, the transparent capture port, the
// explicit proxy) and protocol handlers. A listener decides which policy connection a socket is
// for; the handler owns the socket from then on.
import type { Socket } from "node:net";
import type { CompiledConnection } from "../policy/compile.ts";

export interface AcceptInfo {
  /** How the socket reached the sidecar, for the audit trail. */
  via: "listener" | "transparent" | "proxy";
  /** Bytes already read from the socket while mapping it (e.g. a TLS ClientHello, an HTTP head). */
  head?: Buffer;
}

export interface ConnectionHandler {
  accept(socket: Socket, connection: CompiledConnection, info: AcceptInfo): void;
  /**
   * Stops taking new work and resolves once in-flight operations finished (preStop drain).
   * `deadline` (epoch ms): when the sidecar stops waiting; a handler that holds sessions ends
   * them by then.
   */
  drain(deadline?: number): Promise<void>;
}
