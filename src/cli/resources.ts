/** CPU time and peak memory of this process (all threads), for summaries and benchmarks. */
export interface Resources {
  wallSeconds: number;
  cpuSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  maxRssBytes: number;
}

const t0 = performance.now();

export function resourceUsage(): Resources {
  const r = process.resourceUsage();
  return {
    wallSeconds: (performance.now() - t0) / 1000,
    cpuSeconds: (r.userCPUTime + r.systemCPUTime) / 1e6,
    userSeconds: r.userCPUTime / 1e6,
    systemSeconds: r.systemCPUTime / 1e6,
    maxRssBytes: r.maxRSS * 1024,
  };
}
