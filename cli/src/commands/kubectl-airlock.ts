// `kubectl airlock` (the `kubectl-airlock` executable, also `airlock approvals`): list, show,
// approve and deny AccessRequests, and list open grants. Against a cluster it acts as the
// kubeconfig's user (the admission policy makes the API server check that an approval carries that
// user's own name); standalone, `--sidecar URL` talks to a sidecar's loopback admin API.
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import type { AccessRequest } from "../../../api/src/index.ts";
import { assess } from "../../../sidecar/src/approvals/request.ts";
import { type Command, UsageError } from "../command.ts";
import {
  type Backend,
  type DecisionKind,
  kubeBackend,
  PluginError,
  sidecarBackend,
} from "../kubectl/backend.ts";
import { grantsTable, isPending, requestsTable, showRequest } from "../kubectl/format.ts";

const COMMON = `Flags for every command:
  -n, --namespace NS     namespace (default: the kubeconfig context's namespace)
      --kubeconfig FILE  kubeconfig to use (default: $KUBECONFIG or ~/.kube/config)
      --context NAME     kubeconfig context to use
      --user NAME        kubeconfig user to use
  -o, --output FORMAT    json or yaml instead of the human-readable output
      --sidecar URL      standalone: talk to a sidecar's admin API (e.g. http://127.0.0.1:15990)
                         instead of Kubernetes; decisions are signed with a token from the sidecar's
                         approver credentials file, and the name on it is who decides
      --approver-token-file FILE   with --sidecar: the credentials file (default:
                         $AIRLOCK_APPROVER_TOKEN_FILE, else ~/.config/airlock/approver-tokens)
      --as NAME          with --sidecar: which approver of that file, when it holds several
  -h, --help             help
`;

const HELP: Record<string, string> = {
  main: `kubectl airlock — decide Airlock just-in-time access requests

Usage: kubectl airlock <command> [flags]

Commands:
  requests          pending access requests, with age, requester and operation
  show NAME         one request in full: who, what, why, approvals so far
  approve NAME      approve a request   [--comment TEXT]
  deny NAME         deny a request      --reason TEXT
  grants            open grants (approved requests that let later operations through)
  sessions          list and replay recorded sessions (see kubectl airlock sessions --help)

Examples:
  kubectl airlock requests -A
  kubectl airlock show delete-needs-dba-7k2p9qaz -n agents
  kubectl airlock approve delete-needs-dba-7k2p9qaz -n agents --comment "ticket OPS-42"
  kubectl airlock deny delete-needs-dba-7k2p9qaz -n agents --reason "use the archive job"

${COMMON}`,
  requests: `Usage: kubectl airlock requests [-n NS | -A] [--all] [-o json|yaml]

Lists access requests waiting for a decision, oldest first: age, requester (end user or the agent's
service account), pod, connection, rule, approvals so far / needed, time left, and the operation
(literals and secrets masked by the sidecar).

  -A, --all-namespaces   every namespace you may list
      --all              also decided and expired requests (with a PHASE column)

${COMMON}`,
  show: `Usage: kubectl airlock show NAME [-n NS] [-o json|yaml]

Shows one access request: requester, agent, policy and rule, the operation, the agent's reason,
who may approve and how many approvals are needed, the grant it would open, approvals and denials.

${COMMON}`,
  approve: `Usage: kubectl airlock approve NAME [-n NS] [--comment TEXT] [-o json|yaml]

Appends your approval ({user: you, time, comment}) to the request's status.approvals through the
status subresource. You are who the API server says you are (SelfSubjectReview); the admission
policy refuses approvals in anyone else's name, by the requester, or by users outside the rule's
approvers. Concurrent decisions are retried on the latest version.

      --comment TEXT     why you approve (shown to others and kept with the request)

${COMMON}`,
  deny: `Usage: kubectl airlock deny NAME --reason TEXT [-n NS] [-o json|yaml]

Appends your denial to status.denials. One denial from an approver denies the request: the held
operation fails at once with your reason.

      --reason TEXT      why (required; the agent sees it)

${COMMON}`,
  grants: `Usage: kubectl airlock grants [-n NS | -A] [-o json|yaml]

Lists open grants: approved requests whose rule has a grantTtl. Until the grant expires, later
operations of the same requester under the same rule and connection pass without a new request.

  -A, --all-namespaces   every namespace you may list

${COMMON}`,
};

interface Io {
  out(text: string): void;
  err(text: string): void;
  now(): number;
}

const defaultIo: Io = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  now: Date.now,
};

function render(value: unknown, format: string): string {
  return format === "json" ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
}

const asList = (items: unknown[]) => ({ apiVersion: "v1", kind: "List", items });

async function run(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      namespace: { type: "string", short: "n" },
      "all-namespaces": { type: "boolean", short: "A" },
      kubeconfig: { type: "string" },
      context: { type: "string" },
      user: { type: "string" },
      output: { type: "string", short: "o" },
      comment: { type: "string" },
      reason: { type: "string" },
      sidecar: { type: "string" },
      as: { type: "string" },
      "approver-token-file": { type: "string" },
      all: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [sub, ...args] = positionals;
  if (!sub || sub === "help") {
    io.out(HELP.main as string);
    return sub ? 0 : values.help ? 0 : 2;
  }
  const help = HELP[sub];
  if (!help || sub === "main") throw new UsageError(`unknown command "${sub}"; see kubectl airlock --help`);
  if (values.help) {
    io.out(help);
    return 0;
  }
  const format = values.output;
  if (format !== undefined && format !== "json" && format !== "yaml")
    throw new UsageError(`--output must be json or yaml, got ${format}`);
  const takesName = sub === "show" || sub === "approve" || sub === "deny";
  if (takesName && args.length !== 1) throw new UsageError(`${sub} needs exactly one request NAME`);
  if (!takesName && args.length) throw new UsageError(`${sub} takes no arguments (got ${args.join(" ")})`);
  if (values.comment !== undefined && sub !== "approve") throw new UsageError("--comment is for approve");
  if (values.reason !== undefined && sub !== "deny") throw new UsageError("--reason is for deny");
  if (sub === "deny" && !values.reason?.trim()) throw new UsageError("deny needs --reason TEXT");
  if (values["all-namespaces"] && values.namespace) throw new UsageError("give -n NS or -A, not both");
  if (values["all-namespaces"] && takesName) throw new UsageError(`${sub} works in one namespace: use -n NS`);
  if (values.as && !values.sidecar)
    throw new UsageError("--as is only for --sidecar (Kubernetes knows who you are)");
  if (values["approver-token-file"] && !values.sidecar)
    throw new UsageError("--approver-token-file is only for --sidecar (Kubernetes knows who you are)");

  const backend: Backend = values.sidecar
    ? sidecarBackend({
        url: values.sidecar,
        ...(values.as ? { as: values.as } : {}),
        ...(values["approver-token-file"] ? { credentialsFile: values["approver-token-file"] } : {}),
      })
    : kubeBackend({
        ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
        ...(values.context ? { context: values.context } : {}),
        ...(values.user ? { user: values.user } : {}),
      });
  const allNamespaces = values["all-namespaces"] === true;
  const namespace = allNamespaces ? undefined : (values.namespace ?? (await backend.defaultNamespace()));
  const nsFlag = (ns: string | undefined) =>
    backend.kind === "sidecar" ? ` --sidecar ${values.sidecar}` : ns ? ` -n ${ns}` : "";
  const now = io.now();
  // Standalone, the decider is the approver credential chosen with --as: name the rule's approvers
  // (Kubernetes knows who you are).
  const asFlag = (obj: AccessRequest) => {
    const users = obj.spec.approvers.users ?? [];
    if (backend.kind !== "sidecar" || users.length === 0) return "";
    return ` --as ${users.length === 1 ? users[0] : `{${users.join("|")}}`}`;
  };

  switch (sub) {
    case "requests": {
      const items = (await backend.list(namespace))
        .filter((o) => values.all || isPending(o, now))
        .sort((a, b) =>
          String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)),
        );
      if (format) io.out(render(asList(items), format));
      else if (items.length === 0)
        io.out(
          `No ${values.all ? "" : "pending "}access requests${allNamespaces ? "" : namespace ? ` in namespace ${namespace}` : ""}.\n`,
        );
      else io.out(requestsTable(items, { now, allNamespaces, showPhase: values.all === true }));
      return 0;
    }
    case "show": {
      const obj = await backend.get(args[0] as string, namespace as string);
      if (format) io.out(render(obj, format));
      else
        io.out(
          showRequest(
            obj,
            now,
            `Decide: kubectl airlock approve ${obj.metadata.name}${nsFlag(namespace)}${asFlag(obj)} [--comment TEXT]\n` +
              `        kubectl airlock deny ${obj.metadata.name}${nsFlag(namespace)}${asFlag(obj)} --reason TEXT`,
          ),
        );
      return 0;
    }
    case "approve":
    case "deny": {
      const kind: DecisionKind = sub;
      const user = await backend.whoami();
      const text = kind === "approve" ? values.comment : values.reason;
      const obj = await backend.decide(
        args[0] as string,
        namespace as string,
        kind,
        user,
        text?.trim() || undefined,
      );
      if (format) io.out(render(obj, format));
      else io.out(decisionLine(obj, kind, user));
      return 0;
    }
    case "grants": {
      const grants = await backend.grants(namespace);
      if (format) io.out(render(asList(grants), format));
      else if (grants.length === 0)
        io.out(`No open grants${allNamespaces ? "" : namespace ? ` in namespace ${namespace}` : ""}.\n`);
      else io.out(grantsTable(grants, { now, allNamespaces }));
      return 0;
    }
  }
  throw new UsageError(`unknown command "${sub}"`);
}

function decisionLine(obj: AccessRequest, kind: DecisionKind, user: string): string {
  const ref = `accessrequest ${obj.metadata.namespace}/${obj.metadata.name}`;
  if (kind === "deny") return `${ref} denied by ${user}: the operation is refused.\n`;
  const a = assess(obj);
  const need = obj.spec.minApprovals;
  return a.approvers.length >= need
    ? `${ref} approved by ${user} (${a.approvers.length}/${need}): the operation may proceed.\n`
    : `${ref} approved by ${user} (${a.approvers.length}/${need}): ${need - a.approvers.length} more approval${need - a.approvers.length > 1 ? "s" : ""} from other approvers needed.\n`;
}

/** Entry point of the `kubectl-airlock` executable. Exit status: 0 ok, 1 failed, 2 bad usage. */
export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  // Session replay is its own command; the plugin exposes it as `kubectl airlock sessions`.
  if (argv[0] === "sessions") return (await import("./sessions.ts")).command.run(argv.slice(1));
  try {
    return await run(argv, io);
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.err(`kubectl airlock: ${(e as Error).message}\n(see kubectl airlock --help)\n`);
      return 2;
    }
    if (e instanceof PluginError) {
      io.err(`error: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

export const command: Command = {
  summary: "decide just-in-time access requests (the kubectl airlock plugin)",
  run: (argv) => main(argv),
};
