// What can be checked here of the image and the inner loop without a container engine:
// - every file the image's entry points load is copied into the image and not excluded by
//   .dockerignore, and every package they import is a production dependency (the build stage runs
//   `npm prune --omit=dev`);
// - the Dockerfile's Node version, user, iptables and entry points match the project;
// - skaffold.yaml builds the image the chart deploys and sets only values the chart's schema accepts.
// Building and running the image is test/e2e-kind (skipped where no engine runs).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CHART, ROOT, template } from "./helm.ts";

const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
const dockerignore = readFileSync(join(ROOT, ".dockerignore"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** The image's entry points: package.json bins plus the injector's (see the Dockerfile). */
const ENTRY_POINTS: Record<string, string> = { ...pkg.bin, "airlock-injector": "bin/airlock-injector.js" };

/** Repository paths the build stage copies into the image (COPY <dir>/ /out/<dir>/). */
function copiedDirs(): string[] {
  return [...dockerfile.matchAll(/^COPY (?!--from)(\S+)\/ \/out\/\S+$/gm)].map((m) => m[1] as string);
}

/** A minimal .dockerignore matcher for the patterns used there: **, dir/, !dir/, **\/*.ext, **\/name. */
function ignored(path: string): boolean {
  let out = false;
  for (const raw of dockerignore) {
    const negate = raw.startsWith("!");
    const p = negate ? raw.slice(1) : raw;
    const body = p
      .replace(/\/$/, "")
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replaceAll("**/", "<ANY-DIRS>")
      .replaceAll("**", "<ANY>")
      .replaceAll("*", "[^/]*")
      .replaceAll("<ANY-DIRS>", "(?:.*/)?")
      .replaceAll("<ANY>", ".*");
    const re = new RegExp(`^${body}(?:/.*)?$`);
    if (re.test(path)) out = !negate;
  }
  return out;
}

function importsOf(file: string): { relative: string[]; bare: string[] } {
  const text = readFileSync(file, "utf8");
  const specs = [
    ...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+["']([^"']+)["']/gms),
    ...text.matchAll(/^\s*import\s+["']([^"']+)["']/gm),
    ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
  ].map((m) => m[1] as string);
  const typeOnly = new Set(
    [...text.matchAll(/^\s*import\s+type\s[^;]*?\sfrom\s+["']([^"']+)["']/gms)].map((m) => m[1] as string),
  );
  const runtime = specs.filter((s) => !typeOnly.has(s) || specs.filter((x) => x === s).length > 1);
  return {
    relative: runtime.filter((s) => s.startsWith(".")),
    bare: runtime.filter((s) => !s.startsWith(".") && !s.startsWith("node:")),
  };
}

function packageName(spec: string): string {
  const parts = spec.split("/");
  return spec.startsWith("@") ? `${parts[0]}/${parts[1]}` : (parts[0] as string);
}

/** Every file reachable from the entry points through relative runtime imports. */
function reachable(): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const todo = Object.values(ENTRY_POINTS).map((p) => join(ROOT, p));
  while (todo.length) {
    const file = todo.pop() as string;
    if (files.has(file)) continue;
    files.add(file);
    const { relative: rel, bare } = importsOf(file);
    for (const spec of rel) todo.push(resolve(dirname(file), spec));
    for (const spec of bare)
      if (!builtinModules.includes(spec)) packages.set(packageName(spec), relative(ROOT, file));
  }
  return { files, packages };
}

describe("the image (Dockerfile, .dockerignore)", () => {
  const { files, packages } = reachable();

  it("copies every file the entry points load, and .dockerignore keeps them", () => {
    expect(files.size).toBeGreaterThan(50);
    const dirs = copiedDirs();
    const missing = [...files]
      .map((f) => relative(ROOT, f))
      .filter((f) => !existsSync(join(ROOT, f)) || !dirs.some((d) => f.startsWith(`${d}/`)) || ignored(f));
    expect(missing).toEqual([]);
  });

  // vitest's module interop is more lenient than Node's (e.g. named imports from CommonJS
  // packages): the image runs plain Node, so start each entry point with it.
  for (const [name, path] of Object.entries(ENTRY_POINTS))
    it(`${name} starts under plain Node (${name} --help)`, () => {
      const r = spawnSync(process.execPath, [join(ROOT, path), "--help"], {
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(r.status, `${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/usage/i);
    });

  it("leaves tests and local builds out of the build context", () => {
    for (const f of [
      "sidecar/src/policy/compile.test.ts",
      "injector/testdata/basic.yaml",
      "node_modules/pino/package.json",
      "sidecar/native/build/Release/airlock_native.node",
      "test/chart/chart.test.ts",
      "test/fixtures/oidc-provider.ts",
      "charts/airlock/Chart.yaml",
    ])
      expect(ignored(f), f).toBe(true);
    expect(ignored("sidecar/native/src/airlock_native.c")).toBe(false);
    expect(ignored("package-lock.json")).toBe(false);
  });

  it("needs only production dependencies at run time (the build stage prunes dev dependencies)", () => {
    const notProd = [...packages]
      .filter(([name]) => !(name in pkg.dependencies))
      .map(([n, f]) => `${n} (${f})`);
    expect(notProd).toEqual([]);
  });

  it("runs Node from scripts/node-version.txt, as UID 1717, with iptables and every entry point", () => {
    const node = readFileSync(join(ROOT, "scripts", "node-version.txt"), "utf8").trim();
    expect(dockerfile).toContain(`ARG NODE_VERSION=${node}`);
    expect(dockerfile).toMatch(/^FROM node:\$\{NODE_VERSION\}-\$\{DEBIAN\}-slim AS build$/m);
    expect(dockerfile).toMatch(/^USER 1717:1717$/m);
    expect(dockerfile).toMatch(/apt-get install -y --no-install-recommends iptables/);
    expect(dockerfile).toContain("npm run --silent build:native");
    expect(dockerfile).toContain("npm prune --omit=dev");
    // Every package.json bin is linked onto PATH, plus airlock-injector until package.json has it.
    expect(dockerfile).toContain(
      'const bins = { ...require("./package.json").bin, "airlock-injector": "bin/airlock-injector.js" }',
    );
    expect(dockerfile).toContain(
      ["fs.symlinkSync(`/opt/airlock/$", "{path}`, `/usr/local/bin/$", "{name}`)"].join(""),
    );
    for (const path of Object.values(ENTRY_POINTS)) expect(existsSync(join(ROOT, path)), path).toBe(true);
    for (const name of ["airlock-init", "airlock-injector", "airlock-sidecar"])
      expect(dockerfile, `smoke test of ${name}`).toContain(`${name} --help >/dev/null`);
  });
});

describe("skaffold.yaml", () => {
  const config = parse(readFileSync(join(ROOT, "skaffold.yaml"), "utf8")) as {
    apiVersion: string;
    build: { artifacts: { image: string; docker: { dockerfile: string } }[] };
    deploy: {
      helm: {
        releases: {
          chartPath: string;
          namespace: string;
          setValueTemplates: Record<string, string>;
          setValues: Record<string, unknown>;
        }[];
      };
    };
    profiles: { name: string; manifests?: { rawYaml: string[] } }[];
  };
  const values = parse(readFileSync(join(CHART, "values.yaml"), "utf8")) as { image: { repository: string } };

  it("builds the Dockerfile's image under the chart's image.repository", () => {
    expect(config.apiVersion).toMatch(/^skaffold\/v4beta\d+$/);
    const [artifact] = config.build.artifacts;
    expect(artifact?.image).toBe(values.image.repository);
    expect(artifact?.docker.dockerfile).toBe("Dockerfile");
  });

  it("installs charts/airlock with values the chart's schema accepts", async () => {
    const [release] = config.deploy.helm.releases;
    if (!release) throw new Error("no helm release in skaffold.yaml");
    expect(resolve(ROOT, release.chartPath)).toBe(CHART);
    const image = values.image.repository.replace(/[^A-Za-z0-9]/g, "_");
    expect(release.setValueTemplates["image.repository"]).toBe(`{{.IMAGE_REPO_${image}}}`);
    expect(release.setValueTemplates["image.tag"]).toBe(`{{.IMAGE_TAG_${image}}}`);
    // What skaffold would pass, with a sample tag.
    const set: Record<string, unknown> = {
      ...release.setValues,
      "image.repository": values.image.repository,
      "image.tag": "dev-1a2b3c",
    };
    const nested: Record<string, unknown> = {};
    for (const [path, v] of Object.entries(set)) {
      const keys = path.split(".");
      let at = nested;
      for (const k of keys.slice(0, -1)) {
        at[k] ??= {};
        at = at[k] as Record<string, unknown>;
      }
      at[keys.at(-1) as string] = v;
    }
    const r = await template({ namespace: release.namespace, values: nested });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`--image=${values.image.repository}:dev-1a2b3c`);
  });

  it("the demo profile's manifests exist", () => {
    const demo = config.profiles.find((p) => p.name === "demo");
    for (const glob of demo?.manifests?.rawYaml ?? [])
      expect(existsSync(join(ROOT, dirname(glob))), glob).toBe(true);
  });
});
