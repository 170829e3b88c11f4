// Reads what the Dockerfile decides about the Airlock image, for image.test.ts to hold the image
// the node suite builds without a container engine (build-images.sh) to it. Deliberately a
// second reader, in another language than the build script's: a recipe that misreads the
// Dockerfile then shows up as a difference instead of agreeing with itself.
import { readFileSync } from "node:fs";

export interface Instruction {
  keyword: string;
  args: string;
}

export interface DockerfileFacts {
  args: Record<string, string>;
  /** Runtime stage (after the last FROM): apt packages, proxy user, config. */
  runtimePackages: string[];
  proxyUid: number;
  proxyGid: number;
  proxyShell: string;
  proxyHome: string;
  env: Record<string, string>;
  user: string;
  workdir: string;
  expose: string[];
  cmd: string[];
  entrypoint: string[];
  labels: Record<string, string>;
  /** Repository directories the build stage copies into the image (`COPY d/ /out/d/`). */
  copied: string[];
  /** The build stage's smoke test: commands the runtime stage runs with `--help`. */
  smoke: string[];
  /** The directory the runtime stage's compile-cache step fills (`warm-compile-cache.mjs DIR`). */
  compileCache: string | undefined;
}

/** Logical instructions: comments dropped, backslash continuations joined. */
export function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw) && pending === "") continue;
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    if (!whole) continue;
    const m = /^([A-Z]+)\s+(.*)$/s.exec(whole);
    if (m) out.push({ keyword: m[1] ?? "", args: m[2] ?? "" });
  }
  return out;
}

/** `k=v k2="v 2"` pairs (ENV, LABEL, ARG). */
export function pairs(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([A-Za-z0-9_.-]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g;
  for (const m of args.matchAll(re))
    out[m[1] ?? ""] = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : (m[3] ?? "");
  return out;
}

function one(re: RegExp, text: string, what: string): string {
  const m = re.exec(text);
  if (!m?.[1]) throw new Error(`Dockerfile: cannot find ${what}`);
  return m[1];
}

export function readDockerfile(path: string): DockerfileFacts {
  const all = instructions(readFileSync(path, "utf8"));
  const args: Record<string, string> = {};
  for (const i of all) if (i.keyword === "ARG") Object.assign(args, pairs(i.args));
  const lastFrom = all.map((i) => i.keyword).lastIndexOf("FROM");
  const build = all.slice(0, lastFrom);
  const runtime = all.slice(lastFrom + 1);
  const runs = runtime.filter((i) => i.keyword === "RUN").map((i) => i.args);
  const runText = runs.join("\n");
  const last = (k: string) => runtime.filter((i) => i.keyword === k).pop()?.args ?? "";
  const env: Record<string, string> = {};
  const labels: Record<string, string> = {};
  for (const i of runtime) {
    if (i.keyword === "ENV") Object.assign(env, pairs(i.args));
    if (i.keyword === "LABEL") Object.assign(labels, pairs(i.args));
  }
  const json = (s: string): string[] => (s ? (JSON.parse(s) as string[]) : []);
  return {
    args,
    runtimePackages: one(
      /apt-get install -y --no-install-recommends ([a-z0-9 .+-]+?)\s*(?:&&|$)/m,
      runText,
      "runtime packages",
    )
      .split(/\s+/)
      .filter(Boolean),
    proxyUid: Number(one(/useradd --uid (\d+)/, runText, "useradd --uid")),
    proxyGid: Number(one(/groupadd --gid (\d+)/, runText, "groupadd --gid")),
    proxyShell: one(/useradd .*?--shell (\S+)/, runText, "useradd --shell"),
    proxyHome: one(/useradd .*?--home-dir (\S+)/, runText, "useradd --home-dir"),
    env,
    user: last("USER"),
    workdir: last("WORKDIR"),
    expose: last("EXPOSE").split(/\s+/).filter(Boolean),
    cmd: json(last("CMD")),
    entrypoint: json(last("ENTRYPOINT")),
    labels,
    copied: build
      .filter((i) => i.keyword === "COPY")
      .map((i) => /^([a-z][a-z/]*?)\/? \/out\/\1\/?$/.exec(i.args)?.[1])
      .filter((d): d is string => d !== undefined),
    smoke: [...runText.matchAll(/&& (airlock[a-z-]*) --help/g)].map((m) => m[1] ?? ""),
    compileCache: /warm-compile-cache\.mjs (\S+)/.exec(runText)?.[1],
  };
}

/** `.dockerignore` as Docker reads it: patterns in order, `!` re-includes; the last match wins. */
export function dockerIgnore(path: string): (file: string) => boolean {
  const rules = readFileSync(path, "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/\/$/, "");
      return { negate, re: globToRegExp(pattern) };
    });
  return (file) => {
    let ignored = false;
    for (const r of rules) if (r.re.test(file)) ignored = !r.negate;
    return ignored;
  };
}

/** Docker's pattern syntax: `**` any number of directories, `*` within a segment; a match of a directory covers what is under it. */
function globToRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? "";
    if (c === "*" && pattern[i + 1] === "*") {
      i++;
      if (pattern[i + 1] === "/") {
        re += "(?:.*/)?";
        i++;
      } else re += ".*";
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}(?:/.*)?$`);
}
