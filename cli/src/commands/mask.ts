// `airlock mask`: runs the sidecar's masking on stdin, to see what an agent would get back.
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { DETECTORS } from "../../../api/src/index.ts";
import {
  createMasker,
  isDetectorName,
  loadOrCreateHashKey,
  type MaskFinding,
  type MaskingRule,
  parseJsonLossless,
} from "../../../sidecar/src/masking/index.ts";
import { PolicyFileError } from "../../../sidecar/src/sources/files.ts";
import { type Command, UsageError } from "../command.ts";
import { loadConnection } from "../policy-files.ts";

const HELP = `Usage: airlock mask (--policy FILE [--policy FILE...] --connection NAME | --detectors LIST)
                   [--direction response|request] [--strategy redact|partial|hash]
                   [--hash-key-file FILE] [--report]

Reads JSON or text on stdin and writes it masked, as the sidecar would before the agent sees it.
With --report, prints the findings instead: [{"path": ..., "detector": ..., "family": ...}], where
family says which service's secret or which card network matched (never the values).

  --policy FILE, --connection NAME   use the masking rules a policy applies to that connection
  --detectors LIST                   comma-separated detectors, or the groups "all" and "secrets":
                                     ${DETECTORS.filter((d) => d !== "all" && d !== "secrets").join(", ")}
  --strategy S                       strategy with --detectors (default redact)
  --direction D                      which policy rules apply (default response)
  --hash-key-file FILE               key for the hash strategy (default: a random key per run)
`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function rulesFrom(values: {
  policy?: string[];
  connection?: string;
  detectors?: string;
  strategy?: string;
  direction?: string;
}): Promise<MaskingRule[]> {
  if (values.detectors !== undefined) {
    if (values.policy?.length)
      throw new UsageError("use either --detectors or --policy/--connection, not both");
    const names = values.detectors
      .split(",")
      .map((d) => d.trim())
      .filter(Boolean);
    const unknown = names.filter((n) => !isDetectorName(n));
    if (!names.length || unknown.length)
      throw new UsageError(`unknown detector(s): ${unknown.join(", ") || "(none given)"}; see --help`);
    const strategy = values.strategy ?? "redact";
    if (strategy !== "redact" && strategy !== "partial" && strategy !== "hash")
      throw new UsageError(`unknown strategy ${strategy}`);
    return [{ name: "cli", detectors: names as MaskingRule["detectors"], strategy }];
  }
  if (!values.policy?.length || !values.connection)
    throw new UsageError("give --policy FILE --connection NAME, or --detectors LIST");
  const { connection: conn } = await loadConnection(values.policy, values.connection);
  const direction = values.direction ?? "response";
  return conn.masking
    .filter((m) => (m.direction ?? "response") === direction || m.direction === "both")
    .map(
      (m) =>
        ({
          name: m.name,
          detectors: m.detectors,
          fields: m.fields,
          columns: m.columns,
          strategy: m.strategy ?? "redact",
        }) as MaskingRule,
    );
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      policy: { type: "string", multiple: true },
      connection: { type: "string" },
      detectors: { type: "string" },
      strategy: { type: "string" },
      direction: { type: "string" },
      "hash-key-file": { type: "string" },
      report: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const rules = await rulesFrom(values);
  const hashKey = values["hash-key-file"] ? loadOrCreateHashKey(values["hash-key-file"]) : randomBytes(32);
  const masker = createMasker({ rules, hashKey });
  const input = await readStdin();
  let json: unknown;
  let isJson = false;
  try {
    json = parseJsonLossless(input);
    isJson = true;
  } catch {}
  let output: string;
  let findings: readonly MaskFinding[];
  if (isJson) {
    const r = masker.maskJson(json);
    findings = r.findings;
    output = `${JSON.stringify(r.value, null, 2)}\n`;
  } else {
    const r = masker.maskText(input);
    findings = r.findings;
    output = r.text;
  }
  if (values.report) {
    const report = findings.map((f) => ({
      path: f.path ?? f.column ?? "$",
      detector: f.detector,
      ...(f.family !== undefined ? { family: f.family } : {}),
      rule: f.rule,
    }));
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(output);
  }
  return 0;
}

export const command: Command = {
  summary: "mask JSON or text from stdin as the sidecar would",
  async run(argv) {
    try {
      return await run(argv);
    } catch (e) {
      if (
        e instanceof UsageError ||
        e instanceof PolicyFileError ||
        (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
      ) {
        process.stderr.write(`airlock mask: ${(e as Error).message}\n`);
        return 2;
      }
      throw e;
    }
  },
};
