import { applyPatch, type Patch } from "rfc6902";
import { describe, expect, it } from "vitest";
import { admit, BadReviewError, parseReview } from "./admission.ts";
import { defaultConfig } from "./config.ts";
import { podPatch } from "./patch.ts";
import { selectorMatches, staticPolicySource } from "./policies.ts";
import { webhookConfiguration } from "./webhook-config.ts";

const deps = { config: defaultConfig(), policies: staticPolicySource([]) };
const podRequest = (object: unknown, extra: Record<string, unknown> = {}) => ({
  uid: "u1",
  kind: { group: "", version: "v1", kind: "Pod" },
  resource: { group: "", version: "v1", resource: "pods" },
  operation: "CREATE",
  namespace: "agents",
  object,
  ...extra,
});

describe("admission", () => {
  it("rejects malformed reviews", () => {
    expect(() => parseReview(null)).toThrow(BadReviewError);
    expect(() => parseReview({ apiVersion: "admission.k8s.io/v1beta1", kind: "AdmissionReview" })).toThrow(
      /admission.k8s.io\/v1/,
    );
    expect(() =>
      parseReview({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: {} }),
    ).toThrow(/uid/);
  });

  it("answers a JSON patch for a pod creation, echoing the uid", () => {
    const pod = {
      metadata: { generateName: "a-", annotations: { note: "x" } },
      spec: { containers: [{ name: "a", image: "x" }] },
    };
    const out = admit(podRequest(pod), deps);
    expect(out.result).toBe("injected");
    const res = out.review.response;
    expect(res).toMatchObject({ uid: "u1", allowed: true, patchType: "JSONPatch" });
    const patch = JSON.parse(Buffer.from(res?.patch ?? "", "base64").toString()) as Patch;
    const patched = structuredClone(pod) as unknown as { spec: { initContainers: { name: string }[] } };
    expect(applyPatch(patched, patch)).toEqual(patch.map(() => null));
    expect(patched.spec.initContainers.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
    // Annotation keys contain "/": escaped as ~1 in the pointer.
    expect(patch.some((op) => op.path.includes("~1"))).toBe(true);
    expect(res?.warnings?.[0]).toContain("no AgentAccessPolicy in namespace agents");
  });

  it("refuses with 403 and the message", () => {
    const pod = {
      metadata: { name: "s" },
      spec: { shareProcessNamespace: true, containers: [{ name: "a" }] },
    };
    const out = admit(podRequest(pod), deps);
    expect(out.result).toBe("refused");
    expect(out.review.response).toMatchObject({
      uid: "u1",
      allowed: false,
      status: { code: 403, reason: "Forbidden" },
    });
    expect(out.review.response?.status?.message).toContain("shareProcessNamespace");
  });

  // Found by test/fuzz/admission-review.fuzz.ts: spec without containers threw a TypeError in
  // injectPod (the server's 500 InternalError). Fields of another type are refused the same way:
  // a runAsUser "1337" would otherwise compare unequal to the proxy UID and pass.
  it("refuses with 403 a pod whose fields it cannot read, naming the field", () => {
    const cases: [unknown, RegExp][] = [
      [{ metadata: { name: "p" }, spec: { containehs: [{ name: "a" }] } }, /spec.containers must list/],
      [{ metadata: { name: "p" } }, /spec.containers is required/],
      [
        { spec: { containers: [{ name: "a", securityContext: { runAsUser: "1337" } }] } },
        /containers\[0\].securityContext.runAsUser must be an integer/,
      ],
      [
        { spec: { hostNetwork: "false", containers: [{ name: "a" }] } },
        /spec.hostNetwork must be true or false/,
      ],
      [{ spec: { containers: [{ name: "a", env: {} }] } }, /spec.containers\[0\].env must be a list/],
      [
        { metadata: { labels: { app: 1 } }, spec: { containers: [{ name: "a" }] } },
        /metadata.labels must be a map of strings/,
      ],
      [{ spec: { volumes: [null], containers: [{ name: "a" }] } }, /spec.volumes\[0\] must be an object/],
      [
        { spec: { containers: [{ name: "a", securityContext: { capabilities: { add: "ALL" } } }] } },
        /capabilities.add must be a list of strings/,
      ],
    ];
    for (const [pod, message] of cases) {
      const out = admit(podRequest(pod), deps);
      expect(out.result, JSON.stringify(pod)).toBe("refused");
      expect(out.review.response).toMatchObject({ uid: "u1", allowed: false, status: { code: 403 } });
      expect(out.review.response?.status?.message).toMatch(message);
    }
    // null is an absent field, as Kubernetes reads it.
    const nulls = {
      metadata: { labels: null },
      spec: { volumes: null, containers: [{ name: "a", env: null }] },
    };
    expect(admit(podRequest(nulls), deps).result).toBe("injected");
  });

  it("ignores everything that is not a pod creation", () => {
    const pod = { metadata: { name: "p" }, spec: { containers: [] } };
    for (const extra of [
      { operation: "UPDATE" },
      { subResource: "ephemeralcontainers" },
      { kind: { kind: "Secret" } },
    ]) {
      const out = admit(podRequest(pod, extra), deps);
      expect(out.result).toBe("ignored");
      expect(out.review.response).toEqual({ uid: "u1", allowed: true });
    }
  });
});

describe("JSON patch", () => {
  it("adds the injected init containers before the pod's own without rewriting them", () => {
    const own = { name: "migrate", image: "m", env: [{ name: "A", value: "1" }] };
    const pod = {
      metadata: { name: "p" },
      spec: { initContainers: [own], containers: [{ name: "a", image: "x" }] },
    };
    const res = admit(podRequest(pod), deps).review.response;
    const patch = JSON.parse(Buffer.from(res?.patch ?? "", "base64").toString()) as Patch;
    const patched = structuredClone(pod) as unknown as { spec: { initContainers: { name: string }[] } };
    expect(applyPatch(patched, patch)).toEqual(patch.map(() => null));
    expect(patched.spec.initContainers.map((c) => c.name)).toEqual([
      "airlock-init",
      "airlock-sidecar",
      "migrate",
    ]);
    expect(patched.spec.initContainers[2]).toMatchObject({ name: "migrate", image: "m" });
    expect(JSON.stringify(patched.spec.initContainers[2])).toContain('{"name":"A","value":"1"}');
    // Not appended to: replaced whole, never morphed field by field into airlock-init.
    expect(patch.filter((op) => op.path.startsWith("/spec/initContainers"))).toEqual([
      { op: "replace", path: "/spec/initContainers", value: expect.any(Array) },
    ]);
  });

  it("appends with add, diffs same-length arrays by element, escapes ~ and / in keys", () => {
    const a = { list: [1, 2], same: [{ x: 1 }, { x: 2 }], other: [1, 2, 3], gone: true, "a/b": { "c~d": 1 } };
    const b = { list: [1, 2, 3], same: [{ x: 1 }, { x: 3 }], other: [0, 1, 2, 3], "a/b": { "c~d": 2 } };
    const ops = podPatch(a, b);
    expect(ops).toContainEqual({ op: "add", path: "/list/-", value: 3 });
    expect(ops).toContainEqual({ op: "replace", path: "/same/1/x", value: 3 });
    expect(ops).toContainEqual({ op: "replace", path: "/other", value: [0, 1, 2, 3] });
    expect(ops).toContainEqual({ op: "replace", path: "/a~1b/c~0d", value: 2 });
    expect(ops).toContainEqual({ op: "remove", path: "/gone" });
    const c = structuredClone(a);
    expect(applyPatch(c, ops)).toEqual(ops.map(() => null));
    expect(c).toEqual(b);
    expect(podPatch(b, b)).toEqual([]);
  });
});

describe("label selectors", () => {
  it("follows Kubernetes semantics", () => {
    const labels = { app: "a", tier: "gold" };
    expect(selectorMatches(undefined, labels)).toBe(true);
    expect(selectorMatches({}, labels)).toBe(true);
    expect(selectorMatches({ matchLabels: { app: "a" } }, labels)).toBe(true);
    expect(selectorMatches({ matchLabels: { app: "b" } }, labels)).toBe(false);
    expect(
      selectorMatches({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["gold"] }] }, labels),
    ).toBe(false);
    expect(
      selectorMatches({ matchExpressions: [{ key: "zone", operator: "NotIn", values: ["x"] }] }, labels),
    ).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "app", operator: "Exists" }] }, labels)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "app", operator: "Bogus" }] }, labels)).toBe(false);
  });
});

describe("webhook configuration", () => {
  it("selects labelled namespaces (minus opted-out pods) and opted-in pods elsewhere, never system namespaces", () => {
    const cfg = webhookConfiguration({
      name: "airlock",
      service: { namespace: "airlock-system", name: "inj" },
    });
    const [ns, obj] = cfg.webhooks ?? [];
    expect(ns?.clientConfig.service).toEqual({
      namespace: "airlock-system",
      name: "inj",
      path: "/inject",
      port: 443,
    });
    expect(ns?.failurePolicy).toBe("Fail");
    expect(ns?.sideEffects).toBe("None");
    expect(ns?.reinvocationPolicy).toBe("IfNeeded");
    expect(ns?.namespaceSelector?.matchExpressions?.[0]).toEqual({
      key: "airlock.dev/inject",
      operator: "In",
      values: ["enabled"],
    });
    expect(ns?.namespaceSelector?.matchExpressions?.[1]?.values).toContain("kube-system");
    expect(ns?.objectSelector?.matchExpressions?.[0]).toEqual({
      key: "airlock.dev/inject",
      operator: "NotIn",
      values: ["false"],
    });
    expect(obj?.namespaceSelector?.matchExpressions?.[0]?.operator).toBe("DoesNotExist");
    expect(obj?.objectSelector?.matchExpressions?.[0]?.values).toEqual(["true"]);
  });
});
