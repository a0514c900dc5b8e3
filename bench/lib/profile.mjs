// Reads a V8 .cpuprofile (node --cpu-prof): self time per function, the top N.
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** [{ fn, where, selfMs, pct }] sorted by self time; "(idle)", "(garbage collector)" etc. included. */
export function topFunctions(profile, n) {
  const byId = new Map(profile.nodes.map((nd) => [nd.id, nd]));
  const self = new Map();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
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
