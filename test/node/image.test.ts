// The Airlock image the node suite runs is built with no container engine (build-images.sh:
// debootstrap, umoci); the Dockerfile stays the source of truth for what is in it. This holds the
// built image to the Dockerfile as read here (dockerfile.ts, a second reader): the image config
// (user, workdir, env, ports, command, labels), the root filesystem (Debian suite, Node version,
// runtime packages, the proxy user), /opt/airlock file by file against the repository minus
// .dockerignore, production dependencies only, the bin links, and the Dockerfile's own smoke test
// run in the image by runc as the image's user.
//
//   bash test/node/run.sh test/node/image.test.ts
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DockerfileFacts, dockerIgnore, readDockerfile } from "./dockerfile.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const CACHE =
  process.env.AIRLOCK_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "airlock");
const OUT = join(CACHE, "node-images", "out");
const TAG = "node-e2e";

function problem(): string | undefined {
  if (process.platform !== "linux") return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return "not root (debootstrap and runc need root)";
  for (const [cmd, pkg] of [
    ["umoci", "umoci"],
    ["debootstrap", "debootstrap"],
    ["runc", "runc"],
  ] as const)
    if (spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0)
      return `${cmd} not found (apt-get install ${pkg})`;
  return undefined;
}

const skip = process.env.AIRLOCK_NODE_SKIP ? `AIRLOCK_NODE_SKIP=${process.env.AIRLOCK_NODE_SKIP}` : problem();
if (skip) process.stderr.write(`[image] suite skipped: the image cannot be built here: ${skip}\n`);

interface ImageConfig {
  config: {
    User?: string;
    WorkingDir?: string;
    Env?: string[];
    ExposedPorts?: Record<string, object>;
    Cmd?: string[];
    Entrypoint?: string[] | null;
    Labels?: Record<string, string>;
  };
}

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

describe.skipIf(skip !== undefined)(
  skip ? `the image and the Dockerfile — skipped: ${skip}` : "the image and the Dockerfile",
  () => {
    let df: DockerfileFacts;
    let work: string;
    let rootfs: string;
    let bundle: string;
    let config: ImageConfig;

    beforeAll(() => {
      df = readDockerfile(join(ROOT, "Dockerfile"));
      const t0 = performance.now();
      execFileSync("bash", [join(ROOT, "test/node/build-images.sh"), "--out", OUT], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      work = mkdtempSync(join(tmpdir(), "airlock-image-"));
      const layout = join(work, "layout");
      execFileSync("mkdir", ["-p", layout]);
      execFileSync("tar", ["-xf", join(OUT, "airlock.tar"), "-C", layout]);
      bundle = join(work, "bundle");
      execFileSync("umoci", ["unpack", "--image", `${layout}:${TAG}`, bundle], { stdio: "ignore" });
      rootfs = join(bundle, "rootfs");
      const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
        manifests: { digest: string }[];
      };
      const blob = (digest: string) => readFileSync(join(layout, "blobs", ...digest.split(":")), "utf8");
      const manifest = JSON.parse(blob(index.manifests[0]?.digest ?? "")) as { config: { digest: string } };
      config = JSON.parse(blob(manifest.config.digest)) as ImageConfig;
      process.stderr.write(
        `[image] built and unpacked in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    }, 60 * 60_000);

    afterAll(() => {
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it("the image config is the Dockerfile's: user, workdir, env, ports, command, labels", () => {
      const c = config.config;
      expect(c.User).toBe(df.user);
      expect(c.WorkingDir).toBe(df.workdir);
      for (const [k, v] of Object.entries(df.env)) expect(c.Env, k).toContain(`${k}=${v}`);
      expect(Object.keys(c.ExposedPorts ?? {}).sort()).toEqual(
        df.expose.map((p) => (p.includes("/") ? p : `${p}/tcp`)).sort(),
      );
      expect(c.Cmd).toEqual(df.cmd);
      expect(c.Entrypoint ?? []).toEqual(df.entrypoint);
      expect(c.Labels ?? {}).toEqual(df.labels);
    });

    it("the root filesystem: the Debian suite, the Node version, the runtime packages and the proxy user", () => {
      const osRelease = readFileSync(join(rootfs, "etc/os-release"), "utf8");
      expect(osRelease).toMatch(new RegExp(`^VERSION_CODENAME=${df.args.DEBIAN}$`, "m"));
      const node = spawnSync("chroot", [rootfs, "/usr/local/bin/node", "--version"], { encoding: "utf8" });
      expect(node.stdout.trim(), node.stderr).toBe(`v${df.args.NODE_VERSION}`);
      const status = readFileSync(join(rootfs, "var/lib/dpkg/status"), "utf8");
      for (const pkg of df.runtimePackages)
        expect(status, `package ${pkg}`).toMatch(
          new RegExp(`^Package: ${pkg.replace(/[.+]/g, "\\$&")}\\nStatus: install ok installed$`, "m"),
        );
      const passwd = readFileSync(join(rootfs, "etc/passwd"), "utf8");
      expect(passwd).toMatch(
        new RegExp(`^airlock:x:${df.proxyUid}:${df.proxyGid}::${df.proxyHome}:${df.proxyShell}$`, "m"),
      );
      expect(readFileSync(join(rootfs, "etc/group"), "utf8")).toMatch(
        new RegExp(`^airlock:x:${df.proxyGid}:$`, "m"),
      );
      expect(df.user).toBe(`${df.proxyUid}:${df.proxyGid}`);
    });

    it("/opt/airlock holds what the Dockerfile copies, file by file, and nothing .dockerignore keeps out", () => {
      const app = join(rootfs, "opt/airlock");
      const ignored = dockerIgnore(join(ROOT, ".dockerignore"));
      // The build context is the working tree: tracked files and untracked ones git does not ignore.
      const tracked = execFileSync(
        "git",
        ["-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ...df.copied],
        {
          encoding: "utf8",
        },
      )
        .split("\0")
        .filter(Boolean);
      const want = tracked.filter((f) => !ignored(f));
      expect(want.length).toBeGreaterThan(100);
      const missing = want.filter((f) => !existsSync(join(app, f)));
      expect(missing, "in the repository and the Dockerfile's context, missing from the image").toEqual([]);
      const differ = want.filter((f) => sha(join(ROOT, f)) !== sha(join(app, f)));
      expect(differ, "content differs from the repository").toEqual([]);
      const present = execFileSync("find", df.copied, { cwd: app, encoding: "utf8" })
        .split("\n")
        .filter((f) => f && statSync(join(app, f)).isFile());
      const extra = present.filter((f) => !want.includes(f));
      expect(extra, "in the image but not in the Dockerfile's build context").toEqual([]);
      expect(sha(join(app, "package.json"))).toBe(sha(join(ROOT, "package.json")));
      expect(existsSync(df.env.AIRLOCK_NATIVE_ADDON ? join(rootfs, df.env.AIRLOCK_NATIVE_ADDON) : "")).toBe(
        true,
      );
    });

    it("node_modules is production only: every dependency, no development tool", () => {
      const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
        dependencies: Record<string, string>;
        devDependencies: Record<string, string>;
      };
      const mods = join(rootfs, "opt/airlock/node_modules");
      for (const dep of Object.keys(pkg.dependencies))
        expect(existsSync(join(mods, dep, "package.json")), dep).toBe(true);
      // Development tools nothing in production depends on (npm prune --omit=dev removes them).
      for (const dev of ["vitest", "@biomejs/biome", "typescript", "autocannon"].filter(
        (d) => d in pkg.devDependencies,
      ))
        expect(existsSync(join(mods, dev)), dev).toBe(false);
    });

    it("every package.json bin and airlock-injector is on PATH, linked to /opt/airlock", () => {
      const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
        bin: Record<string, string>;
      };
      const bins = { ...pkg.bin, "airlock-injector": "bin/airlock-injector.js" };
      for (const [name, path] of Object.entries(bins)) {
        const link = join(rootfs, "usr/local/bin", name);
        expect(lstatSync(link).isSymbolicLink(), name).toBe(true);
        expect(readlinkSync(link)).toBe(`/opt/airlock/${path}`);
        expect(statSync(join(rootfs, "opt/airlock", path)).mode & 0o111, `${path} executable`).not.toBe(0);
      }
    });

    it("the compile cache the Dockerfile fills is read-only and serves every module to the proxy user", () => {
      expect(df.compileCache).toBe(df.env.NODE_COMPILE_CACHE);
      const dir = join(rootfs, df.compileCache ?? "/nonexistent");
      const entries = readdirSync(dir, { recursive: true, withFileTypes: true });
      expect(entries.filter((e) => e.isFile()).length).toBeGreaterThan(100);
      for (const e of [{ parentPath: dir, name: "" }, ...entries]) {
        const st = statSync(join(e.parentPath, e.name));
        expect({ path: join(e.parentPath, e.name), uid: st.uid, writable: st.mode & 0o222 }).toMatchObject({
          uid: 0,
          writable: 0,
        });
      }
      // Node reports each module's cache use; run as the image's user, on its read-only root.
      const out = runInImage("NODE_DEBUG_NATIVE=COMPILE_CACHE airlock-sidecar --help 2>&1 >/dev/null");
      expect(out.status, out.stderr).toBe(0);
      const stripped = out.stdout.match(/retrieving transpile cache for StrippedTypeScript/g) ?? [];
      expect(stripped.length).toBeGreaterThan(50);
      expect(out.stdout).not.toMatch(/no transpile cache|writing cache/);
    });

    it("the Dockerfile's smoke test passes in the image, run by runc as the image's user", () => {
      expect(df.smoke.length).toBeGreaterThanOrEqual(3);
      const spec = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8")) as {
        process: { user: { uid: number; gid: number } };
      };
      expect(spec.process.user).toMatchObject({ uid: df.proxyUid, gid: df.proxyGid });
      for (const cmd of [...df.smoke, df.cmd.join(" ")]) {
        const r = runInImage(`${cmd.includes(" ") ? cmd : `${cmd} --help`} >/dev/null`);
        expect(r.status, `${cmd}: ${r.stderr}`).toBe(0);
      }
    });

    /** Runs `script` with sh in the image by runc, as the image's user, on a read-only root (as in pods). */
    function runInImage(script: string) {
      const spec = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8")) as {
        process: { args: string[]; terminal: boolean };
        root: { readonly?: boolean };
      };
      spec.process.args = ["sh", "-c", script];
      spec.process.terminal = false;
      spec.root.readonly = true;
      writeFileSync(join(bundle, "config.json"), JSON.stringify(spec));
      return spawnSync("runc", ["run", "--bundle", bundle, `airlock-image-${process.pid}`], {
        encoding: "utf8",
        timeout: 60_000,
      });
    }
  },
);
