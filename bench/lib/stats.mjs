// Small statistics over repeated runs: median and spread (min..max), ignoring missing values.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function spread(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return null;
  return [Math.min(...v), Math.max(...v)];
}

export const mean = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
};

/**
 * One client run of several commands as one figure: throughput = all requests over the time
 * they took together (the harmonic mean of the per-command rates, weighted by requests);
 * latency percentiles = the mean of the per-command percentiles (the per-command values are
 * in the detail table).
 */
export function summarizeTests(tests) {
  const req = tests.reduce((s, t) => s + (t.requests || 0), 0);
  const time = tests.reduce((s, t) => s + (t.requests || 0) / t.rps, 0);
  return {
    rps: time > 0 ? req / time : mean(tests.map((t) => t.rps)),
    p50Ms: mean(tests.map((t) => t.p50Ms)),
    p99Ms: mean(tests.map((t) => t.p99Ms)),
    p999Ms: mean(tests.map((t) => t.p999Ms)),
  };
}
