import { configDefaults, defineConfig } from "vitest/config";

// Two projects: `unit` runs pure modules in isolation; `integration` talks to real components
// (kube-apiserver + etcd, PostgreSQL, OpenSSH, iptables) that test/ harnesses start on loopback.
export default defineConfig({
  test: {
    reporters: ["default"],
    projects: [
      {
        test: {
          name: "unit",
          include: ["{api,cli,init,injector,sidecar}/**/*.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          // The node suite runs pods on a real node, alone and last (test/node/vitest.config.ts).
          exclude: [...configDefaults.exclude, "test/node/**"],
          globalSetup: ["test/envtest/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 180_000,
          // One control plane is shared; files use their own namespaces, so they may run in parallel
          // but the machine has 2 cores: keep it modest.
          maxWorkers: 2,
        },
      },
    ],
  },
});
