// Terminates the agent's TLS inside a CONNECT with a leaf the pod CA mints for the CONNECT host,
// so the decrypted stream can go to the connection's HTTP guard like plain HTTP in a tunnel.

import { isIP } from "node:net";
import type { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { Leaf, PodCa } from "./pod-ca.ts";

const contexts = new WeakMap<Leaf, SecureContext>();

function contextFor(leaf: Leaf): SecureContext {
  let c = contexts.get(leaf);
  if (!c) {
    c = createSecureContext({ cert: leaf.chainPem, key: leaf.keyPem, minVersion: "TLSv1.2" });
    contexts.set(leaf, c);
  }
  return c;
}

/** The CONNECT host, normalized as SNI compares to it. */
const norm = (h: string) => h.toLowerCase().replace(/\.$/, "");

/** Why an intercepted handshake did not complete. */
export type TlsRefusal =
  | "tls_untrusted_by_client"
  | "sni_mismatch"
  | "no_sni"
  | "handshake_failed"
  /** The handshake completed and the agent hung up without a byte of HTTP: what a pinning client does. */
  | "closed_before_request";

// OpenSSL's names for the alerts a client sends when it does not accept the server's certificate
// (unknown CA above all: the agent's trust store lacks the pod CA bundle).
const CLIENT_REJECTED =
  /alert (unknown ca|bad certificate|certificate unknown|unsupported certificate|certificate expired|certificate revoked|decrypt error)/i;

export function refusalOf(err: Error & { code?: string }, refusedSni: boolean): TlsRefusal {
  if (refusedSni) return "sni_mismatch";
  return CLIENT_REJECTED.test(err.message) ||
    /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_)/.test(err.code ?? "")
    ? "tls_untrusted_by_client"
    : "handshake_failed";
}

/**
 * Wraps `socket` (its ClientHello unread) as the TLS server for `host`. `ready` gets the decrypted
 * socket at once (reads wait for the handshake). An SNI other than `host` (or none, for a DNS
 * name) fails the handshake: the agent may not reach one name through a tunnel opened for another.
 */
export async function terminateTls(opts: {
  ca: PodCa;
  host: string;
  socket: Duplex;
  logger: Logger;
  connection: string;
  ready: (decrypted: TLSSocket) => void;
  /** Whether the consumer read anything from the decrypted socket (closed_before_request otherwise). */
  spoke?: (decrypted: TLSSocket) => boolean;
  /** The handshake did not complete (once): the caller audits it. */
  refused?: (reason: TlsRefusal, detail: string) => void;
}): Promise<void> {
  const host = norm(opts.host);
  const leaf = await opts.ca.leaf(host);
  const secureContext = contextFor(leaf);
  let refusedSni: string | undefined;
  let failed = false;
  let secured = false;
  const tls = new TLSSocket(opts.socket, {
    isServer: true,
    secureContext,
    ALPNProtocols: ["http/1.1"],
    SNICallback: (name, cb) => {
      if (norm(name) === host) return cb(null, secureContext);
      refusedSni = name;
      cb(new Error(`SNI ${name} is not the CONNECT host ${host}`));
    },
  });
  tls.once("secure", () => {
    secured = true;
    // No SNI at all is normal for an IP, not for a name.
    if (!tls.servername && !isIP(host)) {
      opts.logger.warn(
        { connection: opts.connection, host },
        "agent TLS without SNI for a named host: refused",
      );
      failed = true;
      opts.refused?.("no_sni", `no SNI for ${host}`);
      tls.destroy();
      return;
    }
    const spoke = opts.spoke;
    if (!spoke) return;
    tls.once("close", () => {
      if (failed || spoke(tls)) return;
      failed = true;
      opts.logger.warn(
        { connection: opts.connection, host, reason: "closed_before_request" },
        "agent closed the intercepted TLS session without a request (a pinning client?)",
      );
      opts.refused?.("closed_before_request", "closed after the handshake");
    });
  });
  tls.on("error", (err: Error & { code?: string }) => {
    tls.destroy();
    opts.socket.destroy();
    // After the handshake an error is the session's end (a reset, a timeout), not a refusal; the
    // close handler above tells a session that never carried a request.
    if (failed || secured) return;
    failed = true;
    const reason = refusalOf(err, refusedSni !== undefined);
    opts.logger.warn(
      {
        connection: opts.connection,
        host,
        reason,
        ...(refusedSni !== undefined ? { sni: refusedSni } : {}),
        err: err.message,
      },
      "agent TLS handshake failed",
    );
    opts.refused?.(reason, refusedSni !== undefined ? `SNI ${refusedSni}` : err.message);
  });
  opts.ready(tls);
}
