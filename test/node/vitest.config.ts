// The node suite has its own config: it brings up a real node (containerd, kubelet, scheduler,
// controller-manager, kube-proxy) and runs pods, so it runs alone, after the other projects
// (.ci/run; or `bash test/node/run.sh`). The `integration` project excludes test/node.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "node",
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/node/**/*.test.ts"],
    // One node per machine: files run one after another in one worker.
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 180_000,
    hookTimeout: 60 * 60_000,
  },
});
