// Summarise a .cpuprofile: self time per function (top N), idle, GC, program.
import { readFileSync } from 'node:fs';
const [file, topN = 25, skipS = 0] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = p.timeDeltas; let total = 0; let t = 0;
for (let i = 0; i < p.samples.length; i++) {
  const n = byId.get(p.samples[i]); const d = dt[i] ?? 0; t += d; if (t < skipS * 1e6) continue; total += d;
  const cf = n.callFrame; const url = (cf.url || '').replace(/^.*\/(packages|node_modules)\//, '$1/');
  const key = `${cf.functionName || '(anon)'} ${url}${cf.url ? ':' + (cf.lineNumber + 1) : ''}`;
  self.set(key, (self.get(key) ?? 0) + d);
}
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, +topN);
console.log(`total ${(total / 1e6).toFixed(2)} s`);
for (const [k, v] of rows) console.log(`${(100 * v / total).toFixed(1).padStart(5)}%  ${(v / 1e3).toFixed(0).padStart(7)} ms  ${k}`);
