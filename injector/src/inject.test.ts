// Behaviours of the mutation that the golden files show but a reader should not have to diff for.
import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { defaultConfig } from "./config.ts";
import { injectPod, parseStatus, secretVolumeName } from "./inject.ts";
import { ANTHROPIC_PLACEHOLDER_API_KEY, JAVA_TRUST_OPTIONS } from "./names.ts";

const config = defaultConfig({ version: "1.2.3", image: "example/airlock:1.2.3" });
const ctx = (policies: AgentAccessPolicy[] = [], namespace = "agents") => ({ config, namespace, policies });

const pod = (spec: Partial<V1Pod["spec"]> = {}, metadata: V1Pod["metadata"] = { name: "p" }): V1Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata,
  spec: { containers: [{ name: "agent", image: "python" }], ...spec },
});

const policy = (name: string, podSelector: object | undefined, secret: string): AgentAccessPolicy => ({
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AgentAccessPolicy",
  metadata: { name, namespace: "agents" },
  spec: {
    ...(podSelector ? { podSelector } : {}),
    connections: [
      {
        name: "api",
        protocol: "http",
        target: { host: "api.internal", port: 443 },
        credentials: { secretRef: { name: secret } },
      },
    ],
    rules: [{ name: "all", action: "allow" }],
  },
});

function injected(p: V1Pod, policies: AgentAccessPolicy[] = []) {
  const out = injectPod(p, ctx(policies));
  if (out.kind !== "injected") throw new Error(`expected injection, got ${out.kind}: ${JSON.stringify(out)}`);
  return out;
}

describe("injectPod", () => {
  it("does not modify its input", () => {
    const input = pod();
    const copy = structuredClone(input);
    injected(input);
    expect(input).toEqual(copy);
  });

  it("orders init containers airlock-init, airlock-sidecar, then the user's", () => {
    const out = injected(pod({ initContainers: [{ name: "migrate", image: "m" }] }));
    expect(out.pod.spec?.initContainers?.map((c) => c.name)).toEqual([
      "airlock-init",
      "airlock-sidecar",
      "migrate",
    ]);
  });

  it("records version, image, volumes, secrets and policies in airlock.dev/status", () => {
    const out = injected(pod({}, { name: "p", labels: { app: "a" } }), [policy("pol", undefined, "tok")]);
    expect(parseStatus(out.pod)).toEqual({
      version: "1.2.3",
      image: "example/airlock:1.2.3",
      containers: ["airlock-init", "airlock-sidecar"],
      volumes: ["airlock-podinfo", "airlock-token", "airlock-tmp", "airlock-trust", "airlock-secret-tok"],
      secrets: ["tok"],
      policies: ["pol"],
    });
  });

  it("mounts only the Secrets of policies whose podSelector matches", () => {
    const out = injected(pod({}, { name: "p", labels: { app: "a", tier: "gold" } }), [
      policy("match-labels", { matchLabels: { app: "a" } }, "s1"),
      policy("other-app", { matchLabels: { app: "b" } }, "s2"),
      policy("expr", { matchExpressions: [{ key: "tier", operator: "In", values: ["gold"] }] }, "s3"),
      policy("not-exists", { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] }, "s4"),
      policy("empty", {}, "s5"),
    ]);
    expect(out.status.secrets).toEqual(["s1", "s3", "s5"]);
    expect(out.status.policies).toEqual(["empty", "expr", "match-labels"]);
    const agent = out.pod.spec?.containers[0];
    // Agents get only the trust bundle, read-only: never a Secret.
    expect(agent?.volumeMounts).toEqual([
      { name: "airlock-trust", mountPath: "/var/run/airlock/trust", readOnly: true },
    ]);
    const sidecar = out.pod.spec?.initContainers?.[1];
    expect(sidecar?.volumeMounts?.filter((m) => m.mountPath.startsWith("/etc/airlock/secrets/"))).toEqual([
      { name: "airlock-secret-s1", mountPath: "/etc/airlock/secrets/s1", readOnly: true },
      { name: "airlock-secret-s3", mountPath: "/etc/airlock/secrets/s3", readOnly: true },
      { name: "airlock-secret-s5", mountPath: "/etc/airlock/secrets/s5", readOnly: true },
    ]);
  });

  it("warns when no policy selects the pod, and when the agent mounts a policy Secret itself", () => {
    expect(injected(pod()).warnings.join("\n")).toContain("no AgentAccessPolicy");
    const out = injected(
      pod({
        containers: [{ name: "agent", image: "x", volumeMounts: [{ name: "creds", mountPath: "/creds" }] }],
        volumes: [{ name: "creds", secret: { secretName: "tok" } }],
      }),
      [policy("pol", undefined, "tok")],
    );
    expect(out.warnings.join("\n")).toContain("container agent mounts Secret tok");
  });

  it("keeps secret volume names valid DNS labels for long or dotted Secret names", () => {
    expect(secretVolumeName("db")).toBe("airlock-secret-db");
    const dotted = secretVolumeName("db.creds");
    expect(dotted).toMatch(/^airlock-secret-db-creds-[0-9a-f]{8}$/);
    const long = secretVolumeName("x".repeat(200));
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(secretVolumeName("a.b")).not.toBe(secretVolumeName("a-b"));
  });

  it("skips already-injected, opted-out, hostNetwork and system-namespace pods", () => {
    const once = injected(pod()).pod;
    expect(injectPod(once, ctx())).toMatchObject({
      kind: "skipped",
      reason: expect.stringContaining("already"),
    });
    expect(injectPod(pod({}, { name: "p", labels: { "airlock.dev/inject": "false" } }), ctx()).kind).toBe(
      "skipped",
    );
    expect(injectPod(pod({ hostNetwork: true }), ctx()).kind).toBe("skipped");
    expect(injectPod(pod(), ctx([], "kube-system")).kind).toBe("skipped");
  });

  it("where injection is required, skips a pod marked injected only if it carries Airlock's containers as made", () => {
    const required = { ...ctx([policy("p", undefined, "api-cred")]), required: true };
    const once = injectPod(pod(), required);
    if (once.kind !== "injected") throw new Error(once.kind);
    // What the API server adds (defaults) does not matter; reinvocation skips.
    const defaulted = structuredClone(once.pod);
    for (const c of defaulted.spec?.initContainers ?? []) c.terminationMessagePath = "/dev/termination-log";
    expect(injectPod(defaulted, required).kind).toBe("skipped");
    const forged = (edit: (p: V1Pod) => void) => {
      const p = structuredClone(once.pod);
      edit(p);
      return injectPod(p, required);
    };
    const inits = (p: V1Pod) => p.spec?.initContainers ?? [];
    const cases: [string, (p: V1Pod) => void, RegExp][] = [
      ["annotation alone", (p) => (p.spec = pod().spec), /init container 1 is not airlock-init/],
      [
        "capture excluded",
        (p) => inits(p)[0]?.args?.push("--exclude-cidrs", "0.0.0.0/0"),
        /airlock-init container's args/,
      ],
      [
        "another image",
        (p) => Object.assign(inits(p)[1] ?? {}, { image: "evil/proxy" }),
        /airlock-sidecar container's image/,
      ],
      [
        "sidecar as root",
        (p) => Object.assign(inits(p)[1]?.securityContext ?? {}, { runAsUser: 0 }),
        /securityContext/,
      ],
      ["sidecar removed", (p) => inits(p).splice(1, 1), /init container 2 is not airlock-sidecar/],
    ];
    for (const [label, edit, why] of cases) {
      const out = forged(edit);
      expect(out.kind, label).toBe("refused");
      if (out.kind === "refused") expect(out.message).toMatch(why);
    }
    // Elsewhere the annotation is an opt-out like airlock.dev/inject=false (skipped, as before).
    expect(
      injectPod({ ...pod(), metadata: { name: "p", annotations: { "airlock.dev/status": "{}" } } }, ctx())
        .kind,
    ).toBe("skipped");
  });

  it("refuses the proxy UID/GID however it is reached", () => {
    const refused = (p: V1Pod) => {
      const out = injectPod(p, ctx());
      return out.kind === "refused" ? out.problems : [];
    };
    expect(refused(pod({ securityContext: { runAsUser: 1717 } }))).toHaveLength(1);
    expect(refused(pod({ securityContext: { fsGroup: 1717 } }))[0]).toContain("fsGroup");
    expect(refused(pod({ securityContext: { supplementalGroups: [5, 1717] } }))[0]).toContain(
      "supplementalGroups",
    );
    expect(
      refused(pod({ initContainers: [{ name: "i", image: "x", securityContext: { runAsGroup: 1717 } }] }))[0],
    ).toContain("init container i runs as GID 1717");
    // Overridden per container: fine.
    expect(
      refused(
        pod({
          securityContext: { runAsUser: 1717 },
          containers: [{ name: "a", image: "x", securityContext: { runAsUser: 10 } }],
        }),
      ),
    ).toEqual([]);
  });

  it("refuses hostPID, ALL/NET_RAW capabilities and reserved names", () => {
    const problems = (p: V1Pod) => {
      const out = injectPod(p, ctx());
      return out.kind === "refused" ? out.problems.join("\n") : "";
    };
    expect(problems(pod({ hostPID: true }))).toContain("hostPID");
    expect(
      problems(
        pod({ containers: [{ name: "a", image: "x", securityContext: { capabilities: { add: ["all"] } } }] }),
      ),
    ).toContain("adds capability ALL");
    expect(
      problems(
        pod({
          containers: [
            { name: "a", image: "x", securityContext: { capabilities: { add: ["CAP_NET_RAW"] } } },
          ],
        }),
      ),
    ).toContain("adds capability NET_RAW");
    expect(problems(pod({ containers: [{ name: "airlock-sidecar", image: "x" }] }))).toContain("reserved");
    expect(problems(pod({ volumes: [{ name: "airlock-tmp", emptyDir: {} }] }))).toContain("reserved");
  });

  it("drops SETUID/SETGID and privilege escalation unless the pod opts out, NET_ADMIN/NET_RAW always", () => {
    const hardened = injected(pod()).pod.spec?.containers[0]?.securityContext;
    expect(hardened).toEqual({
      capabilities: { drop: ["NET_ADMIN", "NET_RAW", "SETUID", "SETGID"] },
      allowPrivilegeEscalation: false,
    });
    const optOut = injected(
      pod({}, { name: "p", annotations: { "airlock.dev/allow-agent-setuid": "true" } }),
    );
    expect(optOut.pod.spec?.containers[0]?.securityContext).toEqual({
      capabilities: { drop: ["NET_ADMIN", "NET_RAW"] },
    });
    expect(optOut.warnings.join("\n")).toContain("bypass capture");
    const dropAll = injected(
      pod({ containers: [{ name: "a", image: "x", securityContext: { capabilities: { drop: ["ALL"] } } }] }),
    );
    expect(dropAll.pod.spec?.containers[0]?.securityContext?.capabilities?.drop).toEqual(["ALL"]);
  });

  it("leaves proxy variables the user set, in either case", () => {
    const out = injected(
      pod({ containers: [{ name: "a", image: "x", env: [{ name: "https_proxy", value: "u" }] }] }),
    );
    const env = out.pod.spec?.containers[0]?.env ?? [];
    expect(env.filter((e) => e.name.toUpperCase() === "HTTPS_PROXY")).toEqual([
      { name: "https_proxy", value: "u" },
    ]);
    expect(env.map((e) => e.name)).toContain("HTTP_PROXY");
  });

  it("points JVMs at the Java truststore through JAVA_TOOL_OPTIONS, keeping what the container sets", () => {
    const java = (env?: { name: string; value?: string; valueFrom?: object }[]) => {
      const out = injected(pod({ containers: [{ name: "a", image: "x", ...(env ? { env } : {}) }] }));
      return {
        env: out.pod.spec?.containers[0]?.env?.filter((e) => e.name === "JAVA_TOOL_OPTIONS"),
        warnings: out.warnings,
      };
    };
    expect(java().env).toEqual([{ name: "JAVA_TOOL_OPTIONS", value: JAVA_TRUST_OPTIONS }]);
    expect(JAVA_TRUST_OPTIONS).toBe(
      "-Djavax.net.ssl.trustStore=/var/run/airlock/trust/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12",
    );
    // The container's own options stay, the truststore is added after them.
    expect(java([{ name: "JAVA_TOOL_OPTIONS", value: "-Xmx512m" }]).env).toEqual([
      { name: "JAVA_TOOL_OPTIONS", value: `-Xmx512m ${JAVA_TRUST_OPTIONS}` },
    ]);
    // A truststore of its own: left as it is.
    const own = "-Djavax.net.ssl.trustStore=/etc/pki/mine.jks";
    expect(java([{ name: "JAVA_TOOL_OPTIONS", value: own }]).env).toEqual([
      { name: "JAVA_TOOL_OPTIONS", value: own },
    ]);
    // From a ConfigMap: cannot be extended here; said so.
    const fromMap = java([
      { name: "JAVA_TOOL_OPTIONS", valueFrom: { configMapKeyRef: { name: "jvm", key: "opts" } } },
    ]);
    expect(fromMap.env).toEqual([
      { name: "JAVA_TOOL_OPTIONS", valueFrom: { configMapKeyRef: { name: "jvm", key: "opts" } } },
    ]);
    expect(fromMap.warnings.join("\n")).toMatch(
      /container a takes JAVA_TOOL_OPTIONS from a ConfigMap: add -Djavax/,
    );
  });

  it("gives agents an inert ANTHROPIC_API_KEY when a policy has an Anthropic connection with a credential", () => {
    const anthropic = (connection: Record<string, unknown>, name = "claude"): AgentAccessPolicy => ({
      apiVersion: "airlock.dev/v1alpha1",
      kind: "AgentAccessPolicy",
      metadata: { name, namespace: "agents" },
      spec: {
        connections: [
          {
            name: "model",
            protocol: "http",
            target: { host: "api.anthropic.com", port: 443 },
            credentials: { secretRef: { name: "anthropic-api-key" } },
            ...connection,
          } as never,
        ],
        rules: [{ name: "all", action: "allow" }],
      },
    });
    const keyOf = (out: ReturnType<typeof injected>, i = 0) =>
      out.pod.spec?.containers[i]?.env?.filter((e) => e.name === "ANTHROPIC_API_KEY");
    const twoContainers = pod({
      initContainers: [{ name: "setup", image: "s" }],
      containers: [
        { name: "agent", image: "a" },
        { name: "helper", image: "h" },
      ],
    });
    const out = injected(twoContainers, [anthropic({})]);
    for (const i of [0, 1])
      expect(keyOf(out, i)).toEqual([{ name: "ANTHROPIC_API_KEY", value: ANTHROPIC_PLACEHOLDER_API_KEY }]);
    const setup = out.pod.spec?.initContainers?.find((c) => c.name === "setup");
    expect(setup?.env?.find((e) => e.name === "ANTHROPIC_API_KEY")?.value).toBe(
      ANTHROPIC_PLACEHOLDER_API_KEY,
    );
    // The sidecar is not an agent: it reads the real key from its Secret, never from this variable.
    const sidecar = out.pod.spec?.initContainers?.find((c) => c.name === "airlock-sidecar");
    expect(sidecar?.env?.some((e) => e.name === "ANTHROPIC_API_KEY")).toBe(false);
    expect(out.warnings.join("\n")).not.toContain("ANTHROPIC_API_KEY");

    // By alias, and an Anthropic-shaped API elsewhere (a gateway), count too.
    expect(
      keyOf(
        injected(pod(), [
          anthropic({ target: { host: "llm.internal", port: 443, aliases: ["api.anthropic.com"] } }),
        ]),
      ),
    ).toHaveLength(1);
    expect(
      keyOf(
        injected(pod(), [
          anthropic({ target: { host: "llm.internal", port: 443 }, errorFormat: "anthropic" }),
        ]),
      ),
    ).toHaveLength(1);
    // No credential on the connection: the agent's own key is what goes upstream, so nothing is added.
    expect(keyOf(injected(pod(), [anthropic({ credentials: undefined })]))).toEqual([]);
    // No Anthropic connection, or a policy that does not select the pod: nothing.
    expect(keyOf(injected(pod(), [policy("other", undefined, "tok")]))).toEqual([]);
    const elsewhere = {
      ...anthropic({}),
      spec: { ...anthropic({}).spec, podSelector: { matchLabels: { app: "x" } } },
    };
    expect(keyOf(injected(pod(), [elsewhere]))).toEqual([]);

    // A key the user set is left alone (the sidecar still overwrites it upstream), with a warning.
    const own = injected(
      pod({
        containers: [
          {
            name: "a",
            image: "x",
            env: [{ name: "ANTHROPIC_API_KEY", valueFrom: { secretKeyRef: { name: "k", key: "k" } } }],
          },
        ],
      }),
      [anthropic({})],
    );
    expect(keyOf(own)).toEqual([
      { name: "ANTHROPIC_API_KEY", valueFrom: { secretKeyRef: { name: "k", key: "k" } } },
    ]);
    expect(own.warnings.join("\n")).toMatch(
      /container a sets ANTHROPIC_API_KEY itself; .* connection model \(policy claude\)/,
    );
    // Injecting its own output again changes nothing.
    const again = injectPod(out.pod, ctx([anthropic({})]));
    expect(again.kind).toBe("skipped");
  });

  it("removes the ServiceAccount plugin's token from agents and gives the sidecar its own", () => {
    const out = injected(
      pod({
        serviceAccountName: "agent-sa",
        automountServiceAccountToken: true,
        containers: [
          {
            name: "a",
            image: "x",
            volumeMounts: [
              { name: "kube-api-access-abcde", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" },
            ],
          },
        ],
        volumes: [
          {
            name: "kube-api-access-abcde",
            projected: { sources: [{ serviceAccountToken: { path: "token" } }] },
          },
        ],
      }),
    );
    const spec = out.pod.spec;
    expect(spec?.automountServiceAccountToken).toBe(false);
    expect(spec?.serviceAccountName).toBe("agent-sa");
    expect(spec?.containers[0]?.volumeMounts).toEqual([
      { name: "airlock-trust", mountPath: "/var/run/airlock/trust", readOnly: true },
    ]);
    expect(spec?.volumes?.map((v) => v.name)).toEqual([
      "airlock-podinfo",
      "airlock-token",
      "airlock-tmp",
      "airlock-trust",
    ]);
  });

  it("turns capture annotations into airlock-init arguments", () => {
    const out = injected(
      pod(
        {},
        {
          name: "p",
          annotations: {
            "airlock.dev/exclude-outbound-cidrs": "10.0.0.0/8, 10.0.0.0/8,::1",
            "airlock.dev/exclude-outbound-ports": "22",
            "airlock.dev/include-outbound-ports": "443,5432",
          },
        },
      ),
    );
    expect(out.pod.spec?.initContainers?.[0]?.args).toEqual([
      "--proxy-uid",
      "1717",
      "--proxy-gid",
      "1717",
      "--redirect-port",
      "15900",
      "--exclude-cidrs",
      "10.0.0.0/8,::1/128",
      "--exclude-ports",
      "22",
      "--include-ports",
      "443,5432",
    ]);
  });

  it("takes sidecar resources from annotations, defaults otherwise", () => {
    const def = injected(pod()).pod.spec?.initContainers?.[1]?.resources;
    expect(def).toEqual({ limits: { memory: "512Mi" }, requests: { cpu: "50m", memory: "192Mi" } });
    const tuned = injected(
      pod(
        {},
        { name: "p", annotations: { "airlock.dev/proxy-cpu": "0.5", "airlock.dev/proxy-cpu-limit": "2" } },
      ),
    ).pod.spec?.initContainers?.[1]?.resources;
    expect(tuned).toEqual({
      limits: { cpu: "2", memory: "512Mi" },
      requests: { cpu: "0.5", memory: "192Mi" },
    });
  });
});
