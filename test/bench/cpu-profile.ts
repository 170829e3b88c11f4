// V8 CPU profiles (`--cpu-prof`) of a bench's sidecar, summed per function over the measured
// windows only: self and total µs by "name file:line", and, for one function, the call paths
// (4 frames up) its samples came from. Shared by pg-profile.ts and http-profile.ts.

export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSums {
  self: Map<string, number>;
  total: Map<string, number>;
  callers: Map<string, number>;
  /** µs sampled busy (not idle) inside the windows. */
  busy: number;
}

/** Sums `p` over the samples inside `windows` (µs, the profile's clock); `callersOf`: a function name. */
export function aggregateProfile(
  p: CpuProfile,
  windows: [number, number][],
  callersOf?: string,
): ProfileSums {
  const parent = new Map<number, number>();
  const byId = new Map<number, CpuProfile["nodes"][number]>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const key = (id: number) => {
    const f = (byId.get(id) as CpuProfile["nodes"][number]).callFrame;
    const file = f.url.replace(/^file:\/\/.*?\/(sidecar|test|node_modules|api)\//, "$1/");
    return `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const callers = new Map<string, number>();
  let busy = 0;
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    const id = p.samples[i] as number;
    const dt = p.timeDeltas[i + 1] ?? 0;
    if (!windows.some(([a, b]) => t >= a && t < b)) continue;
    const k = key(id);
    if (k.startsWith("(idle)")) continue;
    busy += dt;
    self.set(k, (self.get(k) ?? 0) + dt);
    if (callersOf && k.startsWith(`${callersOf} `)) {
      const path: string[] = [];
      for (let cur = parent.get(id); cur !== undefined && path.length < 4; cur = parent.get(cur))
        path.push(key(cur));
      const pk = path.join(" < ");
      callers.set(pk, (callers.get(pk) ?? 0) + dt);
    }
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const ck = key(cur);
      if (seen.has(ck)) continue;
      seen.add(ck);
      total.set(ck, (total.get(ck) ?? 0) + dt);
    }
  }
  return { self, total, callers, busy };
}
