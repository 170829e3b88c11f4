// Compiles one rule's `match` into a predicate over operations. Quantifiers follow the action so
// that every ambiguity fails closed: a deny or requireApproval rule matches when ANY table or
// function of a statement matches it; an allow rule only when ALL of them do. Capabilities that
// widen what an agent can do (WebSocket upgrades, SSH shells, port forwarding, SFTP) are allowed
// only by a rule that names them, never by a rule that merely leaves `match` open. HTTP paths: a
// restrictive rule matches case-insensitively and ignores `;` path parameters, an allow rule
// matches exactly (see http-path.ts).
import type { SqlStatementKind } from "../../../api/src/index.ts";
import { anyOf, compileNameGlob, compilePathGlob, compileUriGlob, type Matcher } from "./glob.ts";
import { looseMatchPath } from "./http-path.ts";
import { compileWhen } from "./mcp-when.ts";
import type { Operation, Rule, SqlKind, SqlStatement, ToolCallInput } from "./types.ts";

/** `input`: a tools/call's arguments for match.mcp.when (absent: unknown, judged fail closed). */
export type OperationMatcher = (op: Operation, input?: ToolCallInput) => boolean;

const READ: readonly SqlKind[] = ["select", "show", "copyTo", "explain"];
/** Session housekeeping (CLOSE, DEALLOCATE, DISCARD, UNLISTEN, RESET) goes wherever reads go. */
const HOUSEKEEPING: SqlKind = "housekeeping";
const WRITE: readonly SqlKind[] = ["insert", "update", "delete", "merge", "copyFrom"];

export function expandStatementKinds(
  kinds: readonly SqlStatementKind[] | undefined,
): Set<SqlKind> | undefined {
  if (!kinds || kinds.length === 0 || kinds.includes("*")) return undefined;
  const out = new Set<SqlKind>();
  for (const k of kinds) {
    if (k === "read") for (const r of READ) out.add(r);
    else if (k === "write") for (const w of WRITE) out.add(w);
    else if (k !== "*") out.add(k);
  }
  for (const r of READ) if (out.has(r)) out.add(HOUSEKEEPING);
  return out;
}

function quantified(matcher: Matcher | undefined, restrictive: boolean) {
  return (values: readonly string[]) => {
    if (!matcher) return true;
    return restrictive ? values.some(matcher) : values.every(matcher);
  };
}

/** A table matches `orders` whether or not the statement qualified it as `public.orders`. */
function tableMatcher(globs: readonly string[] | undefined): Matcher | undefined {
  const m = anyOf(globs, (g) => compileNameGlob(g, true));
  if (!m) return undefined;
  return (table) => m(table) || (table.startsWith("public.") && m(table.slice("public.".length)));
}

export function compileRuleMatch(rule: Rule): OperationMatcher {
  const restrictive = rule.action !== "allow";
  const match = rule.match;
  const http = match?.http;
  const sql = match?.sql;
  const ssh = match?.ssh;
  const mcp = match?.mcp;
  const open = !match || (!http && !sql && !ssh && !mcp);

  const methods = http?.methods && !http.methods.includes("*") ? new Set<string>(http.methods) : undefined;
  const globs = anyOf(http?.paths, (g) => compilePathGlob(g, restrictive));
  // Both readings for a restrictive rule, so that a glob written with `;` still matches itself.
  const paths = globs && restrictive ? (path: string) => globs(path) || globs(looseMatchPath(path)) : globs;
  const kinds = expandStatementKinds(sql?.statements);
  const tables = quantified(tableMatcher(sql?.tables), restrictive);
  const functions = quantified(
    anyOf(sql?.functions, (g) => compileNameGlob(g, true)),
    restrictive,
  );
  const commands = anyOf(ssh?.commands, (g) => compileNameGlob(g));
  const settingGlobs = anyOf(sql?.settings, (g) => compileNameGlob(g, true));
  // Custom settings are what row-level security and application code read as "who is this": an
  // allow or requireApproval rule admits a statement that changes one only when it lists it; a
  // deny rule with `settings` applies to statements that change a setting it lists.
  const admits = rule.action !== "deny";
  const settings = (names: readonly string[] | undefined) => {
    if (!names?.length) return admits || !settingGlobs;
    if (!settingGlobs) return !admits;
    return admits ? names.every(settingGlobs) : names.some(settingGlobs);
  };

  // MCP: tools/resources/prompts each imply the method that names them; `methods` may widen that.
  const mcpMethods = anyOf(mcp?.methods, (g) => compileNameGlob(g));
  const mcpTools = anyOf(mcp?.tools, (g) => compileNameGlob(g));
  const mcpResources = anyOf(mcp?.resources, compileUriGlob);
  const mcpPrompts = anyOf(mcp?.prompts, (g) => compileNameGlob(g));
  const mcpServerRequests = anyOf(mcp?.serverRequests, (g) => compileNameGlob(g));
  // Validation refuses a policy whose expression does not compile; should one get here, the rule
  // is treated as if its condition always failed (fail closed).
  const compiledWhen = mcp?.when === undefined ? undefined : compileWhen(mcp.when);
  const when = (tool: string, input: ToolCallInput | undefined): boolean => {
    if (compiledWhen === undefined) return true;
    // Listing: a restrictive rule with a condition applies to some calls only, an allow rule may
    // admit some; neither decides whether the tool is shown.
    if (input === "any-arguments") return !restrictive;
    if (input === "some-arguments") return true;
    const outcome =
      "error" in compiledWhen
        ? { ok: false as const, error: compiledWhen.error }
        : input === undefined
          ? { ok: false as const, error: "the arguments are not known" }
          : compiledWhen.evaluate(tool, input.arguments);
    if (outcome.ok) return outcome.matched;
    if (input !== undefined) {
      input.failures ??= [];
      input.failures.push({ rule: rule.name, error: outcome.error });
    }
    return restrictive;
  };
  const mcpOp = (op: Extract<Operation, { kind: "mcp" }>, input: ToolCallInput | undefined): boolean => {
    // A server's request to the agent is matched by serverRequests alone (or refused by a deny
    // rule without match): rules written for the agent's requests never admit one.
    if (op.origin === "server")
      return (open && rule.action === "deny") || (mcpServerRequests?.(op.method) ?? false);
    if (!mcp) return false;
    // A rule that names only server requests says nothing about the agent's own requests.
    if (mcpServerRequests && !mcpMethods && !mcpTools && !mcpResources && !mcpPrompts) return false;
    const named = mcpTools || mcpResources || mcpPrompts;
    if (mcpMethods && !mcpMethods(op.method)) return false;
    if (!named) return true;
    if (op.method === "tools/call" && mcpTools)
      return op.tool !== undefined && mcpTools(op.tool) && when(op.tool, input);
    if (op.method === "resources/read" && mcpResources)
      return op.resource !== undefined && mcpResources(op.resource);
    if (op.method === "prompts/get" && mcpPrompts) return op.prompt !== undefined && mcpPrompts(op.prompt);
    // Other methods pass a rule with names only when `methods` lists them explicitly.
    return mcpMethods !== undefined;
  };

  const statement = (s: SqlStatement) =>
    (!kinds || kinds.has(s.kind)) && tables(s.tables) && functions(s.functions) && settings(s.customSettings);

  return (op, input) => {
    switch (op.kind) {
      case "http":
        if (op.websocket && !restrictive && !http?.websocket) return false;
        if (open) return true;
        return !!http && (!methods || methods.has(op.method)) && (!paths || paths(op.path));
      case "http-tunnel":
        // Inside a tunnel any method and path may travel: a restrictive rule on this connection
        // could apply, so it matches; an allow rule must name CONNECT and cannot scope paths.
        if (restrictive) return open || !!http;
        return !!http && !!methods?.has("CONNECT") && !paths;
      case "sql":
        if (open) return true;
        if (!sql) return false;
        // One statement is enough for a restrictive rule; an allow rule must cover all of them.
        return restrictive ? op.statements.some(statement) : op.statements.every(statement);
      case "ssh-exec":
        if (open) return true;
        return (
          !!ssh &&
          (!commands || commands(op.command)) &&
          (!!ssh.commands || (!ssh.shell && !ssh.portForwarding && !ssh.sftp))
        );
      case "ssh-shell":
        return restrictive ? open || !!ssh?.shell : !!ssh?.shell;
      case "ssh-forward":
        return restrictive ? open || !!ssh?.portForwarding : !!ssh?.portForwarding;
      case "ssh-sftp":
        return restrictive ? open || !!ssh?.sftp : !!ssh?.sftp;
      case "mcp":
        return op.origin === "server" ? mcpOp(op, input) : open || mcpOp(op, input);
    }
  };
}
