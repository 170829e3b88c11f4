// Mcp-Session-Id binding. A Streamable HTTP server issues a session id in its answer to
// `initialize`; whoever presents it afterwards is that session at the server. The sidecar binds
// each id to the subject (service account and verified end user) it was first seen for, when the
// server issues it or, for a session begun before the sidecar started, on the first request that
// carries it; another subject presenting the same id is refused. The audit never records the id
// (it works as a bearer credential at the server), only a keyed digest of it.
import { createHmac } from "node:crypto";
import type { Subject } from "../../policy/types.ts";

/** Bindings kept; past this the oldest are forgotten (their ids bind again on next sight). */
export const MAX_SESSIONS = 10_000;

export interface McpSessions {
  /** Binds `id` to `subject` on first sight; false when it is bound to another subject. */
  claim(connection: string, id: string, subject: Subject): boolean;
  /** What the audit carries instead of the id. */
  digest(id: string): string;
}

export function createMcpSessions(hashKey: Buffer, max = MAX_SESSIONS): McpSessions {
  const owners = new Map<string, string>();
  const digest = (id: string) => createHmac("sha256", hashKey).update(id).digest("hex").slice(0, 16);
  return {
    claim(connection, id, subject) {
      const key = `${connection}\n${digest(id)}`;
      const who = JSON.stringify([subject.serviceAccount, subject.user ?? ""]);
      const owner = owners.get(key);
      if (owner !== undefined) return owner === who;
      owners.set(key, who);
      if (owners.size > max) {
        const oldest = owners.keys().next().value;
        if (oldest !== undefined) owners.delete(oldest);
      }
      return true;
    },
    digest,
  };
}
