// The envtest harness itself: a real kube-apiserver v1.35.4 + etcd, client-certificate users,
// RBAC enforced, the cached kubectl and @kubernetes/client-node both talking to it.
import { ApiException, CoreV1Api, RbacAuthorizationV1Api, VersionApi } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { connect } from "./connect.ts";

const k8s = connect();

describe("envtest control plane", () => {
  it("reports gitVersion v1.35.4 on /version", async () => {
    const version = await k8s.kubeConfig.makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toBe("v1.35.4");
    expect(k8s.info.version).toBe("v1.35.4");
  });

  it("runs the cached kubectl of the same version", async () => {
    const version = await k8s.kubectl(["version", "-o", "json"]);
    expect(version.code, version.stderr).toBe(0);
    const parsed = JSON.parse(version.stdout) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    expect(parsed.clientVersion.gitVersion).toBe("v1.35.4");
    expect(parsed.serverVersion.gitVersion).toBe("v1.35.4");

    const ns = await k8s.kubectl(["get", "ns", "-o", "name"]);
    expect(ns.code, ns.stderr).toBe(0);
    expect(ns.stdout.split("\n")).toContain("namespace/default");
  });

  it("authenticates client-cert users and enforces RBAC on their groups", async () => {
    const ns = await k8s.createNamespace("rbac");
    const dba = await k8s.createUser(`dba-${ns}`, ["dba"]);

    const whoami = await k8s.kubectl(["auth", "whoami", "-o", "json"], { user: dba });
    expect(whoami.code, whoami.stderr).toBe(0);
    const review = JSON.parse(whoami.stdout) as {
      status: { userInfo: { username: string; groups: string[] } };
    };
    expect(review.status.userInfo.username).toBe(dba.name);
    expect(review.status.userInfo.groups).toContain("dba");

    const denied = await k8s.kubectl(["get", "secrets", "-n", ns], { user: dba });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain("Forbidden");

    const deniedApi = await dba.kubeConfig
      .makeApiClient(CoreV1Api)
      .listNamespacedSecret({ namespace: ns })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(deniedApi).toBeInstanceOf(ApiException);
    expect((deniedApi as ApiException<unknown>).code).toBe(403);

    // A ClusterRole bound to group dba by a RoleBinding in this file's own namespace: other
    // files that also use a "dba" group are not affected, nor affect this one.
    const role = `secret-reader-${ns}`;
    const grant = await k8s.kubectl(["apply", "-f", "-"], {
      stdin: JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: [
          {
            apiVersion: "rbac.authorization.k8s.io/v1",
            kind: "ClusterRole",
            metadata: { name: role },
            rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get", "list"] }],
          },
          {
            apiVersion: "rbac.authorization.k8s.io/v1",
            kind: "RoleBinding",
            metadata: { name: "dba-reads-secrets", namespace: ns },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
            subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "dba" }],
          },
        ],
      }),
    });
    expect(grant.code, grant.stderr).toBe(0);

    // RBAC is served from an informer cache: the grant takes effect within moments, not instantly.
    await expect
      .poll(async () => (await k8s.kubectl(["get", "secrets", "-n", ns], { user: dba })).code, {
        timeout: 10_000,
      })
      .toBe(0);
    const allowed = await dba.kubeConfig.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: ns });
    expect(allowed.items).toEqual([]);

    // Another user outside the group is still denied.
    const other = await k8s.createUser(`other-${ns}`, ["developers"]);
    const stillDenied = await k8s.kubectl(["get", "secrets", "-n", ns], { user: other });
    expect(stillDenied.stderr).toContain("Forbidden");

    // And outside the namespace dba still has nothing.
    const elsewhere = await k8s.kubectl(["get", "secrets", "-n", "default"], { user: dba });
    expect(elsewhere.stderr).toContain("Forbidden");
    await k8s.kubeConfig.makeApiClient(RbacAuthorizationV1Api).deleteClusterRole({ name: role });
  });

  it("lets the TypeScript client list namespaces as admin", async () => {
    const ns = await k8s.createNamespace("ts-client");
    const list = await k8s.kubeConfig.makeApiClient(CoreV1Api).listNamespace();
    const names = list.items.map((n) => n.metadata?.name);
    expect(names).toContain("default");
    expect(names).toContain("kube-system");
    expect(names).toContain(ns);
  });
});
