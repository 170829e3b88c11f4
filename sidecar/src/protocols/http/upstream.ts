// Where and how an allowed request goes: one keep-alive agent per connection, HTTPS unless the
// policy says `tls.mode: disable`, certificates verified (verify-full: chain and host name;
// verify-ca: chain only), CA from the connection's Secret when set, SNI from `tls.serverName`.
import { createHash } from "node:crypto";
import { Agent as HttpsAgent, type AgentOptions as HttpsAgentOptions } from "node:https";
import { isIP } from "node:net";
import type { CompiledConnection } from "../../policy/compile.ts";
import { Agent as HttpAgent } from "../../runtime/node-http.ts";
import type { SecretStore } from "../../runtime/secrets.ts";

export interface Upstream {
  /** `http:` or `https:` */
  protocol: "http:" | "https:";
  host: string;
  port: number;
  /** Host header value (serverName when set, else target.host; the port unless it is the default). */
  hostHeader: string;
  agent: HttpAgent;
}

export interface UpstreamPool {
  get(connection: CompiledConnection): Promise<Upstream>;
  /** Closes idle upstream sockets and forgets every agent. */
  close(): void;
}

const DEFAULT_PORT = { "http:": 80, "https:": 443 } as const;

function formatHost(host: string, port: number, protocol: "http:" | "https:"): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return port === DEFAULT_PORT[protocol] ? h : `${h}:${port}`;
}

export function createUpstreamPool(secrets: SecretStore, opts: { maxSockets?: number } = {}): UpstreamPool {
  const agents = new Map<string, { key: string; agent: HttpAgent }>();
  // Per compiled connection (replaced on every policy swap): the last answer and the CA it was
  // built with, so the common case — same policy version, same CA — skips the agent key (and the
  // CA digest) entirely. A different CA value, or an agent replaced or closed since, takes the full
  // path below.
  const resolved = new WeakMap<CompiledConnection, { ca: string | undefined; upstream: Upstream }>();

  const retire = (agent: HttpAgent) => {
    // In-flight requests finish on their sockets; nothing returns to this agent's pool afterwards
    // (the agent's own 'free' listener pools the socket first, then this one closes it).
    agent.on("free", (socket) => socket.destroy());
    for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) s.destroy();
  };

  return {
    async get(connection) {
      const spec = connection.spec;
      const mode = spec.tls?.mode ?? "verify-full";
      const protocol = mode === "disable" ? "http:" : "https:";
      const ca =
        protocol === "https:" && spec.tls?.caSecretRef
          ? await secrets.get(spec.tls.caSecretRef.name, spec.tls.caSecretRef.key)
          : undefined;
      const hit = resolved.get(connection);
      if (hit !== undefined && hit.ca === ca && agents.get(spec.name)?.agent === hit.upstream.agent)
        return hit.upstream;
      // The agent depends on the connection's target and TLS settings and on the CA's content, so a
      // policy edit or a rotated CA Secret gets a fresh agent.
      const key = JSON.stringify([
        spec.target.host,
        spec.target.port,
        mode,
        spec.tls?.serverName ?? null,
        ca === undefined ? null : createHash("sha256").update(ca).digest("hex"),
      ]);
      let entry = agents.get(spec.name);
      if (!entry || entry.key !== key) {
        if (entry) retire(entry.agent);
        const common = { keepAlive: true, scheduling: "lifo" as const, maxSockets: opts.maxSockets ?? 256 };
        let agent: HttpAgent;
        if (protocol === "http:") agent = new HttpAgent(common);
        else {
          const tls: HttpsAgentOptions = { ...common, rejectUnauthorized: true };
          if (ca !== undefined) tls.ca = ca;
          const serverName = spec.tls?.serverName ?? (isIP(spec.target.host) ? undefined : spec.target.host);
          if (serverName !== undefined) tls.servername = serverName;
          // verify-ca: the chain must still verify (rejectUnauthorized); only the name check is skipped.
          if (mode === "verify-ca") tls.checkServerIdentity = () => undefined;
          agent = new HttpsAgent(tls);
        }
        entry = { key, agent };
        agents.set(spec.name, entry);
      }
      const upstream: Upstream = {
        protocol,
        host: spec.target.host,
        port: spec.target.port,
        hostHeader: formatHost(spec.tls?.serverName ?? spec.target.host, spec.target.port, protocol),
        agent: entry.agent,
      };
      resolved.set(connection, { ca, upstream });
      return upstream;
    },
    close() {
      for (const { agent } of agents.values()) agent.destroy();
      agents.clear();
    },
  };
}
