// `airlock policy test`: asks the same policy engine the sidecar uses what it would decide, offline.
import { parseArgs } from "node:util";
import { serviceAccountId } from "../../../sidecar/src/policy/subjects.ts";
import type { Decision, Operation, Subject } from "../../../sidecar/src/policy/types.ts";
import { PolicyFileError } from "../../../sidecar/src/sources/files.ts";
import { type Command, UsageError } from "../command.ts";
import { loadConnection } from "../policy-files.ts";

const HELP = `Usage: airlock policy test --policy FILE [--policy FILE...] --connection NAME
         [--user U] [--group G...] [--service-account [NS/]NAME]
         (--http "METHOD PATH" | --sql TEXT [--database URL] | --ssh COMMAND |
          --mcp "METHOD [NAME|URI] [ARGS_JSON]")

Evaluates one operation against AgentAccessPolicy files with the sidecar's own engine and prints
{"decision", "policy", "rule", "reason"} as JSON. Exit status: 0 when a decision was made (whatever
it is), 2 on bad input (unreadable or invalid policy, unknown flags, malformed operation).

  --policy FILE            policy YAML (repeatable; multi-document files allowed)
  --connection NAME        the connection the operation goes to
  --user U, --group G      the end user (as from a verified OIDC token) and their groups
  --service-account SA     the agent pod's service account (NAME in the policy's namespace, or NS/NAME)
  --http "METHOD PATH"     an HTTP request; the path is normalized as the sidecar does
                           ("CONNECT host:port": answered as the sidecar does — on a
                           tls.mode passthrough connection the agent's own TLS is relayed
                           opaque when "decision" allows ("tlsInside": relayed or refused); on
                           any other HTTPS connection it is intercepted ("intercepted") and,
                           like plain HTTP inside ("plainHttpInside": inspected or refused),
                           judged request by request; test those requests with "METHOD PATH")
  --sql TEXT               SQL, classified by the PostgreSQL parser
  --database URL           with --sql: judge against this database's catalog, as the sidecar does
                           (postgresql://USER@HOST:PORT/DB; the password from the URL or
                           PGPASSWORD; ?sslmode=disable|verify-ca|verify-full, default verify-full;
                           &sslrootcert=FILE). The functions, operators, casts and tables a statement
                           touches may run code its text does not show (a function that writes,
                           a trigger, a view); without --database only the text is judged and
                           the answer says so ("catalog": "not loaded")
  --ssh COMMAND            an SSH exec command, analysed as the SSH guard does (chains, wrappers,
                           metacharacters: sidecar/src/protocols/ssh/README.md)
  --mcp "METHOD ..."       an MCP JSON-RPC request on a protocol mcp connection, read by the
                           MCP guard's own parser:
                             "tools/call NAME [ARGS_JSON]"   e.g. 'tools/call get_weather {"city":"Oslo"}'
                             "resources/read URI"            "prompts/get NAME"
                             "tools/list", "initialize", ... any other method, without params
                           sampling/createMessage, elicitation/create and roots/list are judged as
                           the server's requests to the agent (match.mcp.serverRequests; the answer
                           says "origin": "server"). Tool-definition pins are not judged offline:
                           they depend on what the server lists
`;

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      policy: { type: "string", multiple: true },
      connection: { type: "string" },
      user: { type: "string" },
      group: { type: "string", multiple: true },
      "service-account": { type: "string" },
      http: { type: "string" },
      sql: { type: "string" },
      database: { type: "string" },
      ssh: { type: "string" },
      mcp: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.policy?.length) throw new UsageError("--policy FILE is required");
  if (!values.connection) throw new UsageError("--connection NAME is required");
  const ops = [values.http, values.sql, values.ssh, values.mcp].filter((v) => v !== undefined);
  if (ops.length !== 1) throw new UsageError("give exactly one of --http, --sql, --ssh, --mcp");
  if (values.database !== undefined && values.sql === undefined)
    throw new UsageError("--database goes with --sql (it is the catalog SQL is judged against)");

  const { set, connection } = await loadConnection(values.policy, values.connection);
  const namespace = connection.policy.split("/")[0] ?? "default";
  const subject: Subject = {
    serviceAccount: serviceAccountId(values["service-account"] ?? "default", namespace),
    groups: values.group ?? [],
    ...(values.user !== undefined ? { user: values.user } : {}),
  };

  // SQL goes through the PostgreSQL guard's own judgement: built-in refusals (dangerous functions,
  // guarded settings, unparseable text) come before any rule, exactly as on the wire.
  if (values.sql !== undefined) {
    const { classify } = await import("../../../sidecar/src/sql/index.ts");
    const { judgeSql } = await import("../../../sidecar/src/decisions/sql.ts");
    const { connectionMasking } = await import("../../../sidecar/src/operations/masking.ts");
    const { catalogFor, touchesCatalog } = await import("../sql-catalog.ts");
    const classification = await classify(values.sql);
    const resolved = connectionMasking(connection, Buffer.alloc(32));
    const response = resolved.response;
    const masking = "error" in response || response.masker !== undefined;
    // Column rules: statements storing covered values are refused, as on the wire (without
    // --database, the database's functions and views over covered data are not known).
    const columns = new Set(
      resolved.responseRules.flatMap((r) => r.columns ?? []).map((c) => c.toLowerCase()),
    );
    const catalog = values.database !== undefined ? await catalogFor(values.database) : undefined;
    const { decision: d } = judgeSql({
      classification,
      policies: set,
      connection,
      subject,
      masking,
      ...(columns.size ? { covered: { columns } } : {}),
      text: values.sql,
      ...(catalog ? { catalog } : {}),
    });
    print(
      d,
      catalog
        ? { catalog: "loaded" }
        : touchesCatalog(classification)
          ? {
              catalog:
                "not loaded: judged by the text alone; the sidecar also judges the functions, operators, casts and tables it touches against the database's catalog (pass --database URL)",
            }
          : {},
    );
    return 0;
  }
  // SSH exec commands go through the SSH guard's command analysis: chains judged part by part,
  // wrapped commands offered to deny rules, shell metacharacters refused before any rule.
  if (values.ssh !== undefined) {
    const { decideExec } = await import("../../../sidecar/src/decisions/ssh-exec.ts");
    const name = values.connection;
    print(
      decideExec((op: Operation) => set.evaluate(name, subject, op), values.ssh, connection.policy).decision,
    );
    return 0;
  }
  if (values.mcp !== undefined) {
    if (connection.spec.protocol !== "mcp")
      throw new UsageError(
        `--mcp needs a protocol mcp connection; ${values.connection} speaks ${connection.spec.protocol}`,
      );
    const { mcpOperation } = await import("../mcp-operation.ts");
    const { op, arguments: args } = mcpOperation(values.mcp);
    const input = op.method === "tools/call" ? { arguments: args } : undefined;
    print(set.evaluate(values.connection, subject, op, input), op.origin ? { origin: op.origin } : {});
    return 0;
  }
  // Exactly one of --http/--sql/--ssh was given, and the others returned above: HTTP goes through
  // the HTTP guard's own judgement (path normalization; CONNECT as the host-level tunnel).
  const { httpOperation, judgeConnect, judgeHttp } = await import("../../../sidecar/src/decisions/http.ts");
  const m = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(values.http as string);
  if (!m)
    throw new UsageError(
      '--http takes "METHOD PATH", e.g. --http "GET /customers/1" (or "CONNECT host:port")',
    );
  const method = (m[1] as string).toUpperCase();
  if (method === "CONNECT") {
    const judged = judgeConnect(set, values.connection, subject);
    // What the agent's TLS inside becomes: relayed opaque (passthrough), or intercepted and judged
    // per request like plain HTTP (any other connection whose rules may admit a request).
    const inside = judged.inspectsHttp ? "inspected" : "refused";
    const spec = set.connections.get(values.connection)?.spec;
    const interceptable = spec?.protocol === "http" && spec.tls?.mode !== "disable";
    print(judged.tls, {
      tlsInside: judged.passthrough
        ? judged.tls.action === "allow"
          ? "relayed"
          : "refused"
        : interceptable && judged.inspectsHttp
          ? "intercepted"
          : "refused",
      plainHttpInside: inside,
    });
    return 0;
  }
  const judged = httpOperation(method, (m[2] as string).split("?")[0] as string, false);
  if (!judged.ok) throw new UsageError(`--http path refused: ${judged.detail}`);
  print(judgeHttp(set, values.connection, subject, judged.operation));
  return 0;
}

function print(d: Decision, extra: Record<string, string> = {}): void {
  const out = {
    decision: d.action,
    policy: d.policy ?? null,
    rule: d.rule ?? null,
    reason: d.reason,
    ...extra,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

export const command: Command = {
  summary: "test what a policy decides for an operation",
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "--help" || sub === "-h" || sub === undefined) {
      process.stdout.write(`Usage: airlock policy test ...\n\n${HELP}`);
      return sub === undefined ? 2 : 0;
    }
    if (sub !== "test") {
      process.stderr.write(`airlock policy: unknown subcommand "${sub}" (try: airlock policy test --help)\n`);
      return 2;
    }
    try {
      return await run(rest);
    } catch (e) {
      if (
        e instanceof UsageError ||
        e instanceof PolicyFileError ||
        (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
      ) {
        process.stderr.write(`airlock policy test: ${(e as Error).message}\n`);
        return 2;
      }
      throw e;
    }
  },
};
