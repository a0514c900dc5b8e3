// Reads a V8 .cpuprofile (node --cpu-prof): self time per function, the top N.
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * [{ fn, where, selfMs, pct }] sorted by self time; "(idle)", "(garbage collector)" etc. included.
 * `window` = [fromUs, toUs] on the monotonic clock (process.hrtime / 1000, which is V8's profile
 * clock on Linux) keeps only the samples taken during the measured run, not start-up.
 */
export function topFunctions(profile, n, window = null) {
  const byId = new Map(profile.nodes.map((nd) => [nd.id, nd]));
  const self = new Map();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let total = 0;
  let t = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    t += deltas[i] ?? 0;
    if (window && (t < window[0] || t > window[1])) continue;
    const nd = byId.get(samples[i]);
    if (!nd) continue;
    // A sample's time is the delta to the next one (µs).
    const us = Math.max(0, deltas[i + 1] ?? 0);
    const cf = nd.callFrame;
    let where = cf.url ? cf.url.replace(/^file:\/\//, '') : '';
    if (where.startsWith(ROOT)) where = relative(ROOT, where);
    const key = `${cf.functionName || '(anonymous)'}\t${where}${where ? `:${cf.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => {
      const [fn, where] = k.split('\t');
      return { fn, where, selfMs: us / 1000, pct: total > 0 ? (100 * us) / total : 0 };
    });
}
