import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../", import.meta.url));

it("kubectl airlock sessions runs the session replay command", async () => {
  const out = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ["bin/kubectl-airlock.js", "sessions", "--help"],
      { cwd: root },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    ),
  );
  expect(out).toMatch(/^Usage: airlock sessions list\|replay/);
});
