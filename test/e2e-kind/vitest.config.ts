// The kind suite has its own vitest config: the `integration` project excludes test/e2e-kind (it
// takes many minutes and a container engine). npx vitest run --config test/e2e-kind/vitest.config.ts
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "e2e-kind",
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/e2e-kind/**/*.test.ts"],
    testTimeout: 45 * 60_000,
  },
});
