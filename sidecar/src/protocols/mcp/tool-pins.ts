// Tool-definition pinning: a server that changes what a tool says it does after the agent (or the
// person who wrote the policy) saw it — a "rug pull" — is caught. A definition is the SHA-256 of
// the canonical JSON (RFC 8785: keys sorted by UTF-16 code units, JSON.stringify numbers and
// strings) of its name, description, inputSchema and annotations (those present). Its pin is the
// policy's digest (`connections[].mcp.pinnedTools`) or else the first definition this sidecar
// process saw for the tool on that connection and server (host:port). A listed definition that
// differs from its pin is removed from tools/list; a call to the tool is refused while the latest
// list the sidecar saw showed a changed definition.
//
// First-sight pins live in this process only (a restart pins afresh — the policy's pins are what
// survives), bounded: MAX_TOOLS per server (further tools are not shown, fail closed) and
// MAX_SERVERS servers (the oldest server is forgotten when a policy retargets connections past it).
import { createHash } from "node:crypto";
import type { CompiledConnection } from "../../policy/compile.ts";

export const MAX_TOOLS = 1024;
export const MAX_SERVERS = 256;

export type PinVerdict =
  | { ok: true; digest?: string; pinnedNow?: boolean }
  | { ok: false; why: "changed"; source: "policy" | "firstSight"; pinned: string; seen: string }
  | { ok: false; why: "full"; seen: string };

/** RFC 8785 canonical JSON of a JSON value (as JSON.parse gives it). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The digest of a tools/list entry: what a policy pins. */
export function toolDigest(tool: Record<string, unknown>): string {
  const def: Record<string, unknown> = { name: tool.name };
  for (const k of ["description", "inputSchema", "annotations"]) if (k in tool) def[k] = tool[k];
  return `sha256:${createHash("sha256").update(canonicalJson(def)).digest("hex")}`;
}

interface Entry {
  firstSight?: string;
  /** Digest in the latest tools/list the sidecar saw. */
  seen: string;
}

export interface ToolPins {
  /** A tools/list entry: pinned at first sight, or held to its pin. */
  observe(connection: CompiledConnection, tool: Record<string, unknown> & { name: string }): PinVerdict;
  /** A tools/call: refused while the latest definition seen differs from its pin. */
  check(connection: CompiledConnection, name: string): PinVerdict;
}

const policyPins = new WeakMap<CompiledConnection["spec"], ReadonlyMap<string, string>>();

function pinsOf(connection: CompiledConnection): ReadonlyMap<string, string> {
  let pins = policyPins.get(connection.spec);
  if (!pins) {
    pins = new Map((connection.spec.mcp?.pinnedTools ?? []).map((t) => [t.name, t.digest]));
    policyPins.set(connection.spec, pins);
  }
  return pins;
}

const serverKey = (c: CompiledConnection) => `${c.spec.name}\n${c.spec.target.host}:${c.spec.target.port}`;

export function createToolPins(limits: { tools?: number; servers?: number } = {}): ToolPins {
  const maxTools = limits.tools ?? MAX_TOOLS;
  const maxServers = limits.servers ?? MAX_SERVERS;
  const servers = new Map<string, Map<string, Entry>>();
  const server = (c: CompiledConnection) => {
    const key = serverKey(c);
    let tools = servers.get(key);
    if (tools) {
      // Most recently used last, so that the oldest is the one forgotten.
      servers.delete(key);
      servers.set(key, tools);
      return tools;
    }
    tools = new Map();
    servers.set(key, tools);
    if (servers.size > maxServers) {
      const oldest = servers.keys().next().value;
      if (oldest !== undefined) servers.delete(oldest);
    }
    return tools;
  };
  const verdict = (pinned: string | undefined, source: "policy" | "firstSight", seen: string): PinVerdict =>
    pinned === undefined || pinned === seen
      ? { ok: true, digest: seen }
      : { ok: false, why: "changed", source, pinned, seen };
  return {
    observe(connection, tool) {
      const seen = toolDigest(tool);
      const tools = server(connection);
      const policy = pinsOf(connection).get(tool.name);
      let entry = tools.get(tool.name);
      if (!entry) {
        if (tools.size >= maxTools) return { ok: false, why: "full", seen };
        entry = { seen, ...(policy === undefined ? { firstSight: seen } : {}) };
        tools.set(tool.name, entry);
        if (policy === undefined) return { ok: true, digest: seen, pinnedNow: true };
      }
      entry.seen = seen;
      if (policy !== undefined) return verdict(policy, "policy", seen);
      // Pinned by the policy before, not any more: the definition seen now is the pin.
      entry.firstSight ??= seen;
      return verdict(entry.firstSight, "firstSight", seen);
    },
    check(connection, name) {
      const entry = servers.get(serverKey(connection))?.get(name);
      if (!entry) return { ok: true };
      const policy = pinsOf(connection).get(name);
      return policy !== undefined
        ? verdict(policy, "policy", entry.seen)
        : verdict(entry.firstSight, "firstSight", entry.seen);
    },
  };
}
