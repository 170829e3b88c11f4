import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createPolicyStore } from "../runtime/policy-store.ts";
import { PolicyFileError, readPolicyFiles, startFileSource } from "./files.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-policy-"));
const logger = pino({ level: "silent" });
const doc = (name: string, method: string) => `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: ${name} }
spec:
  connections: [{ name: ${name}, protocol: http, target: { host: ${name}.example, port: 80 }, tls: { mode: disable } }]
  rules: [{ name: only-${method.toLowerCase()}, action: allow, match: { http: { methods: [${method}] } } }]
`;
const subject = { serviceAccount: "system:serviceaccount:default:agent", groups: [] };
const op = (method: string) => ({ kind: "http", method, path: "/", websocket: false }) as const;

describe("policy files", () => {
  it("reads multi-document files and defaults the namespace", async () => {
    const f = join(dir, "multi.yaml");
    writeFileSync(f, `${doc("a", "GET")}---\n${doc("b", "POST")}`);
    const policies = await readPolicyFiles([f]);
    expect(policies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`)).toEqual([
      "default/a",
      "default/b",
    ]);
  });

  it.each([
    ["not: [valid", /multi-bad.yaml: /],
    ["kind: Pod\nmetadata: {name: x}", /expected kind AgentAccessPolicy, found "Pod"/],
    // Found by test/fuzz/policy-loader.fuzz.ts: yaml's own ReferenceError escaped, unnamed.
    ["apiVersion: *airlock\nkind: AgentAccessPolicy", /multi-bad.yaml: Unresolved alias/],
    [
      `a: &a [x, x, x, x, x, x, x, x, x, x]\n${[..."bcdefghij"].map((k, i) => `${k}: &${k} [${Array(10).fill(`*${"abcdefghij"[i]}`).join(", ")}]`).join("\n")}`,
      /multi-bad.yaml: Excessive alias count/,
    ],
  ])("names the file and the problem for %j", async (text, message) => {
    const f = join(dir, "multi-bad.yaml");
    writeFileSync(f, text);
    await expect(readPolicyFiles([f])).rejects.toThrow(PolicyFileError);
    await expect(readPolicyFiles([f])).rejects.toThrow(message);
  });

  it("reloads on change and keeps the last good set when the file breaks", async () => {
    const f = join(dir, "live.yaml");
    writeFileSync(f, doc("live", "GET"));
    const store = createPolicyStore({ logger });
    const source = await startFileSource({ files: [f], store, logger });
    try {
      expect(store.current().evaluate("live", subject, op("GET")).action).toBe("allow");
      writeFileSync(f, doc("live", "POST"));
      await expect
        .poll(() => store.current().evaluate("live", subject, op("POST")).action, { timeout: 5000 })
        .toBe("allow");
      writeFileSync(f, "{{{ broken");
      await new Promise((r) => setTimeout(r, 400));
      expect(store.current().evaluate("live", subject, op("POST")).action).toBe("allow");
    } finally {
      source.close();
    }
  });

  it("follows atomic replaces, again and again (editors, sed -i: a new file renamed over the old)", async () => {
    const f = join(dir, "atomic.yaml");
    writeFileSync(f, doc("atomic", "GET"));
    const store = createPolicyStore({ logger });
    const source = await startFileSource({ files: [f], store, logger });
    const replace = (method: string) => {
      writeFileSync(`${f}.tmp`, doc("atomic", method));
      renameSync(`${f}.tmp`, f);
    };
    try {
      for (const method of ["POST", "PUT", "DELETE"]) {
        replace(method);
        await expect
          .poll(() => store.current().evaluate("atomic", subject, op(method)).action, { timeout: 5000 })
          .toBe("allow");
      }
    } finally {
      source.close();
    }
  });

  it("follows a ConfigMap-style update (the ..data symlink swapped to a new directory)", async () => {
    const mount = mkdtempSync(join(tmpdir(), "airlock-configmap-"));
    const version = (n: number, method: string) => {
      mkdirSync(join(mount, `..v${n}`));
      writeFileSync(join(mount, `..v${n}`, "policy.yaml"), doc("cm", method));
      symlinkSync(`..v${n}`, join(mount, "..data_tmp"));
      renameSync(join(mount, "..data_tmp"), join(mount, "..data"));
    };
    version(1, "GET");
    symlinkSync("..data/policy.yaml", join(mount, "policy.yaml"));
    const store = createPolicyStore({ logger });
    const source = await startFileSource({ files: [join(mount, "policy.yaml")], store, logger });
    try {
      expect(store.current().evaluate("cm", subject, op("GET")).action).toBe("allow");
      for (const [n, method] of [
        [2, "POST"],
        [3, "PATCH"],
      ] as const) {
        version(n, method);
        rmSync(join(mount, `..v${n - 1}`), { recursive: true });
        await expect
          .poll(() => store.current().evaluate("cm", subject, op(method)).action, { timeout: 5000 })
          .toBe("allow");
      }
    } finally {
      source.close();
    }
  });

  it("refuses to start with a policy that has a problem, naming the path and the fix", async () => {
    const f = join(dir, "typo.yaml");
    writeFileSync(f, doc("typo", "GET").replace("methods:", "method:"));
    await expect(
      startFileSource({ files: [f], store: createPolicyStore({ logger }), logger }),
    ).rejects.toThrow(
      /default\/typo: spec\.rules\[0\]\.match\.http\.method: unknown field "method"; did you mean "methods"\?/,
    );
  });

  it("refuses to start without a readable policy", async () => {
    await expect(
      startFileSource({ files: [join(dir, "missing.yaml")], store: createPolicyStore({ logger }), logger }),
    ).rejects.toThrow(/cannot read policy file/);
  });
});
