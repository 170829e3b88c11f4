// The `host:port` names a connection claims: captured traffic (transparent listener, CONNECT)
// is attributed by them, so two connections may not claim one — which of them the agent meant
// could not be known, and picking either would apply the wrong rules.
import type { Connection } from "../../../api/src/index.ts";

/** Lower-cased `host:port` for the target host and each alias (the spec may be unvalidated). */
export function targetKeys(c: Pick<Connection, "target">): string[] {
  const t = c.target as Partial<Connection["target"]> | undefined;
  if (!t || typeof t.host !== "string" || typeof t.port !== "number") return [];
  const hosts = [t.host, ...(Array.isArray(t.aliases) ? t.aliases.filter((a) => typeof a === "string") : [])];
  return [...new Set(hosts.map((h) => `${h.toLowerCase()}:${t.port}`))];
}
