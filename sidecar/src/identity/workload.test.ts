import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadWorkloadIdentity, parseDownwardApiLabels, WorkloadIdentityError } from "./workload.ts";

describe("parseDownwardApiLabels", () => {
  it('parses the kubelet format (sorted key="value" lines, no trailing newline)', () => {
    const text = 'app.kubernetes.io/name="agent"\nteam="payments"\ntier=""';
    expect(parseDownwardApiLabels(text)).toEqual({
      "app.kubernetes.io/name": "agent",
      team: "payments",
      tier: "",
    });
  });

  it.each(["", "\n", "  \n\n"])("returns {} for an empty file %j", (text) => {
    expect(parseDownwardApiLabels(text)).toEqual({});
  });

  it("decodes Go %q escapes", () => {
    const text = [
      String.raw`quote="say \"hi\""`,
      String.raw`backslash="a\\b"`,
      String.raw`controls="\a\b\f\n\r\t\v"`,
      String.raw`hex="\x41\xc3\xa9"`,
      String.raw`octal="\101\303\251"`,
      String.raw`u="\u00e9\u2603"`,
      String.raw`bigU="\U0001F600"`,
      'raw="caf\u00e9 \u{1F600}"',
      'eq="a=b"',
    ].join("\n");
    expect(parseDownwardApiLabels(text)).toEqual({
      quote: 'say "hi"',
      backslash: "a\\b",
      controls: "\x07\b\f\n\r\t\v",
      hex: "A\u00e9",
      octal: "A\u00e9",
      u: "\u00e9\u2603",
      bigU: "\u{1F600}",
      raw: "caf\u00e9 \u{1F600}",
      eq: "a=b",
    });
  });

  it("replaces invalid UTF-8 bytes (Go quotes them as \\xNN) instead of failing", () => {
    expect(parseDownwardApiLabels(String.raw`k="\xff"`)).toEqual({ k: "\ufffd" });
  });

  it("keeps a __proto__ key as an own property without touching the prototype", () => {
    const labels = parseDownwardApiLabels('__proto__="x"');
    expect(Object.getPrototypeOf(labels)).toBe(Object.prototype);
    expect(Object.hasOwn(labels, "__proto__")).toBe(true);
  });

  it.each([
    ["no quotes", "k=v"],
    ["no key", '="v"'],
    ["no equals", "k"],
    ["unterminated", 'k="v'],
    ["trailing text", 'k="v"x'],
    ["inner unescaped quote", 'k="a"b"'],
    ["unknown escape", String.raw`k="\q"`],
    ["short hex escape", String.raw`k="\x4"`],
    ["surrogate escape", String.raw`k="\ud800"`],
    ["out-of-range escape", String.raw`k="\U00110000"`],
    ["dangling backslash", 'k="\\"'],
    ["duplicate key", 'k="a"\nk="b"'],
    ["space in key", 'a b="v"'],
  ])("rejects %s", (_name, text) => {
    expect(() => parseDownwardApiLabels(text)).toThrow();
  });
});

describe("loadWorkloadIdentity", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "airlock-podinfo-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function files(entries: Record<string, string>): Promise<void> {
    await mkdir(dir, { recursive: true });
    await Promise.all(Object.entries(entries).map(([name, text]) => writeFile(join(dir, name), text)));
  }

  it("reads every field from the downward API directory", async () => {
    await files({
      namespace: "payments\n",
      pod_name: "agent-7d9f-x2k",
      service_account: "agent",
      labels: 'app="agent"\nteam="payments"',
    });
    await expect(loadWorkloadIdentity(dir, {})).resolves.toEqual({
      namespace: "payments",
      podName: "agent-7d9f-x2k",
      serviceAccount: "agent",
      subject: "system:serviceaccount:payments:agent",
      labels: { app: "agent", team: "payments" },
    });
  });

  it("falls back to env per field and prefers files over env", async () => {
    await files({ namespace: "from-file", pod_name: "" });
    const identity = await loadWorkloadIdentity(dir, {
      AIRLOCK_POD_NAMESPACE: "from-env",
      AIRLOCK_POD_NAME: "pod-from-env",
      AIRLOCK_SERVICE_ACCOUNT: "sa-from-env",
    });
    expect(identity).toMatchObject({
      namespace: "from-file",
      podName: "pod-from-env",
      serviceAccount: "sa-from-env",
      subject: "system:serviceaccount:from-file:sa-from-env",
      labels: {},
    });
  });

  it("works from env alone when the directory does not exist", async () => {
    const identity = await loadWorkloadIdentity(join(dir, "missing"), {
      AIRLOCK_POD_NAMESPACE: "ns",
      AIRLOCK_POD_NAME: "pod",
      AIRLOCK_SERVICE_ACCOUNT: "sa",
    });
    expect(identity.subject).toBe("system:serviceaccount:ns:sa");
  });

  it("names the file and env var when a field is missing", async () => {
    await files({ namespace: "ns", pod_name: "pod" });
    const err = await loadWorkloadIdentity(dir, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkloadIdentityError);
    expect((err as Error).message).toContain(join(dir, "service_account"));
    expect((err as Error).message).toContain("AIRLOCK_SERVICE_ACCOUNT");
  });

  it("rejects names that are not valid Kubernetes names (they feed the subject string)", async () => {
    await files({ namespace: "ns", pod_name: "pod", service_account: "evil:admin" });
    await expect(loadWorkloadIdentity(dir, {})).rejects.toThrow(/service account .* not a valid/);
  });

  it("reports a malformed labels file with its path", async () => {
    await files({ namespace: "ns", pod_name: "pod", service_account: "sa", labels: "broken" });
    await expect(loadWorkloadIdentity(dir, {})).rejects.toThrow(join(dir, "labels"));
  });
});
