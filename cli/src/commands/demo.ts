// `airlock demo` (the README's `npm start`): a standalone sidecar in front of a small local API,
// with the example policy, and curl lines that show an allow, a deny and a masked response.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { parse, stringify } from "yaml";
import { startSidecar } from "../../../sidecar/src/app.ts";
import { defaultApproverTokenFile } from "../../../sidecar/src/approvals/credentials.ts";
import type { AuditEvent } from "../../../sidecar/src/audit/events.ts";
import type { Command } from "../command.ts";
import { startDemoUpstream } from "../demo/upstream.ts";

const HELP = `Usage: airlock demo [--no-wait]

Starts, on localhost:
  - a small "customers API" on 127.0.0.1:18080 that only answers the sidecar's token,
  - the Airlock sidecar with examples/demo-policy.yaml, serving that API on 127.0.0.1:15001
    (admin and metrics on 127.0.0.1:15990),
then prints curl lines to try and a line per audit event. Ctrl-C stops it.
  --no-wait   start, print, and exit (used by the tests)
`;

const line = (e: AuditEvent) => {
  const masked = e.masked ? ` masked=${JSON.stringify(e.masked)}` : "";
  const op = e.operation.kind === "http" ? `${e.operation.method} ${e.operation.path}` : e.operation.kind;
  return `  audit: ${op} → ${e.decision.action}${e.decision.rule ? ` (rule ${e.decision.rule})` : ""} upstream=${e.upstream?.status ?? "-"}${masked}\n`;
};

export const command: Command = {
  summary: "run the standalone sidecar demo on localhost",
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { help: { type: "boolean", short: "h" }, "no-wait": { type: "boolean" } },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    const token = randomBytes(18).toString("base64url");
    const approverFile = defaultApproverTokenFile();
    const secrets = mkdtempSync(join(tmpdir(), "airlock-demo-"));
    mkdirSync(join(secrets, "customers-api"), { mode: 0o700 });
    writeFileSync(join(secrets, "customers-api", "token"), token, { mode: 0o600 });
    // The example policy, recording sessions to files here so that `airlock sessions` finds them
    // (on stdout they would be mixed into the audit stream the demo prints as one line each).
    const sessionsDir = join(secrets, "sessions");
    const example = fileURLToPath(new URL("../../../examples/demo-policy.yaml", import.meta.url));
    const policy = parse(readFileSync(example, "utf8")) as { spec: Record<string, unknown> };
    policy.spec.audit = { recordSessions: true, destination: "file", directory: sessionsDir };
    const policyFile = join(secrets, "demo-policy.yaml");
    writeFileSync(policyFile, stringify(policy));
    const upstream = await startDemoUpstream({ port: 18080, token });

    // Audit events go to the terminal as one readable line each; the JSON stream is what a
    // cluster's log pipeline would get.
    const audit = { emit: (e: AuditEvent) => void process.stdout.write(line(e)) };
    let sidecar: Awaited<ReturnType<typeof startSidecar>>;
    try {
      sidecar = await startSidecar({
        policyFiles: [policyFile],
        secretsDir: secrets,
        hashKeyFile: join(secrets, "hash.key"),
        // The demo policy's approver; its token goes to the approver credentials file, which the
        // approvals CLI reads (the agent's curl never needs it).
        approver: "demo-approver",
        logger: pino({ level: "warn" }),
        audit,
      });
    } catch (e) {
      // Nothing may keep the process alive after a failed start (a port taken by another demo).
      await new Promise<void>((r) => upstream.close(() => r()));
      throw e;
    }
    process.stdout.write(
      [
        "Airlock demo is running.",
        "  upstream API   http://127.0.0.1:18080   (needs a token only the sidecar holds)",
        "  through Airlock http://127.0.0.1:15001  (policy: examples/demo-policy.yaml)",
        `  metrics        http://127.0.0.1:${sidecar.adminPort}/metrics`,
        "",
        "Try:",
        "  curl -s http://127.0.0.1:15001/customers/1            # allowed; PII masked, token injected",
        "  curl -s -X DELETE http://127.0.0.1:15001/customers/1  # blocked by rule no-deletes (403)",
        "  curl -s --path-as-is http://127.0.0.1:15001/api/../admin/keys   # normalized to /admin/keys, blocked",
        "  curl -s http://127.0.0.1:18080/customers/1            # straight to the API: 401, the agent has no token",
        "  curl -s -X POST -H 'X-Airlock-Reason: ticket 42' http://127.0.0.1:15001/customers/1/refund",
        "                                                        # needs approval: 403 naming the request",
        "  npx airlock approvals requests --sidecar http://127.0.0.1:15990",
        "  npx airlock approvals approve NAME --sidecar http://127.0.0.1:15990 --as demo-approver",
        `                                                        # signed with demo-approver's token from ${approverFile}`,
        "                                                        # then the same POST passes (grant: 2m)",
        "  npx airlock policy test --policy examples/demo-policy.yaml --connection customers-api --http 'POST /customers'",
        `  npx airlock sessions list --dir ${sessionsDir}     # the recorded sessions, then: sessions replay ID --dir ...`,
        "",
      ].join("\n"),
    );
    if (!values["no-wait"]) {
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
    }
    await sidecar.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    return 0;
  },
};
