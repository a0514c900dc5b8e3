// Tiny SVG charts (no library, no network): an x/y chart (lines or points, linear or log
// axes) and a grouped bar chart. Output is a self-contained SVG string.

const W = 760;
const H = 440;
const M = { l: 78, r: 190, t: 40, b: 56 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function fmtNum(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 1) return `${+v.toPrecision(3)}`;
  return `${+v.toPrecision(2)}`;
}

function scale(lo, hi, log, a, b) {
  if (log) {
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    return (v) => a + ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0 || 1)) * (b - a);
  }
  return (v) => a + ((v - lo) / (hi - lo || 1)) * (b - a);
}

function ticks(lo, hi, log) {
  if (log) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      const v = 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
    return out;
  }
  const step = 10 ** Math.floor(Math.log10((hi - lo) / 4 || 1));
  const n = (hi - lo) / step;
  const s = n > 10 ? step * (n > 25 ? 5 : 2) : step;
  const out = [];
  for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-9; v += s) out.push(v);
  return out;
}

function range(vals, log, zero) {
  let lo = Math.min(...vals);
  let hi = Math.max(...vals);
  if (log) {
    lo = 10 ** Math.floor(Math.log10(lo));
    hi = 10 ** Math.ceil(Math.log10(hi));
    if (lo === hi) hi = lo * 10;
  } else {
    if (zero) lo = Math.min(0, lo);
    if (lo === hi) hi = lo + 1;
    hi += (hi - lo) * 0.08;
  }
  return [lo, hi];
}

function frame(title, xLabel, yLabel, body) {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${M.l}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${M.l + (W - M.l - M.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(16 ${M.t + (H - M.t - M.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function legend(names) {
  return names.map((n, i) => {
    const y = M.t + 8 + i * 18;
    const x = W - M.r + 14;
    return `<rect x="${x}" y="${y - 9}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${x + 18}" y="${y + 1}">${esc(n)}</text>`;
  });
}

/**
 * series: [{ name, points: [{ x, y, label? }] }]; `lines` joins each series' points in x order.
 * Points with a non-positive value on a log axis are left out (and say so in the caller's table).
 */
export function xyChart({ title, xLabel, yLabel, series, xLog = false, yLog = false, lines = true }) {
  const ok = (p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!xLog || p.x > 0) && (!yLog || p.y > 0);
  const all = series.flatMap((s) => s.points.filter(ok));
  if (all.length === 0) return frame(title, xLabel, yLabel, [`<text x="${M.l + 20}" y="${M.t + 40}">no data</text>`]);
  const [x0, x1] = range(all.map((p) => p.x), xLog, true);
  const [y0, y1] = range(all.map((p) => p.y), yLog, true);
  const sx = scale(x0, x1, xLog, M.l, W - M.r);
  const sy = scale(y0, y1, yLog, H - M.b, M.t);
  const body = [];
  for (const t of ticks(x0, x1, xLog)) {
    body.push(`<line x1="${sx(t)}" y1="${M.t}" x2="${sx(t)}" y2="${H - M.b}" stroke="#eee"/>`);
    body.push(`<text x="${sx(t)}" y="${H - M.b + 16}" text-anchor="middle">${fmtNum(t)}</text>`);
  }
  for (const t of ticks(y0, y1, yLog)) {
    body.push(`<line x1="${M.l}" y1="${sy(t)}" x2="${W - M.r}" y2="${sy(t)}" stroke="#eee"/>`);
    body.push(`<text x="${M.l - 6}" y="${sy(t) + 4}" text-anchor="end">${fmtNum(t)}</text>`);
  }
  body.push(`<rect x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" fill="none" stroke="#444"/>`);
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = s.points.filter(ok).sort((a, b) => a.x - b.x);
    if (lines && pts.length > 1) body.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      body.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="4" fill="${c}"><title>${esc(`${s.name}${p.label ? ` ${p.label}` : ''}: ${fmtNum(p.x)}, ${fmtNum(p.y)}`)}</title></circle>`);
      if (p.label) body.push(`<text x="${(sx(p.x) + 6).toFixed(1)}" y="${(sy(p.y) - 6).toFixed(1)}" font-size="10" fill="${c}">${esc(p.label)}</text>`);
    }
  });
  body.push(...legend(series.map((s) => s.name)));
  return frame(title, xLabel, yLabel, body);
}

/** categories: x groups; series: [{ name, values: number[] (one per category) }]. */
export function barChart({ title, yLabel, categories, series, yLog = false }) {
  const vals = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v) && (!yLog || v > 0));
  if (vals.length === 0) return frame(title, '', yLabel, [`<text x="${M.l + 20}" y="${M.t + 40}">no data</text>`]);
  const [y0, y1] = yLog ? range(vals, true, false) : range([0, ...vals], false, true);
  const sy = scale(y0, y1, yLog, H - M.b, M.t);
  const body = [];
  for (const t of ticks(y0, y1, yLog)) {
    body.push(`<line x1="${M.l}" y1="${sy(t)}" x2="${W - M.r}" y2="${sy(t)}" stroke="#eee"/>`);
    body.push(`<text x="${M.l - 6}" y="${sy(t) + 4}" text-anchor="end">${fmtNum(t)}</text>`);
  }
  const gw = (W - M.l - M.r) / categories.length;
  const bw = (gw * 0.8) / series.length;
  categories.forEach((cat, ci) => {
    const gx = M.l + ci * gw + gw * 0.1;
    series.forEach((s, si) => {
      const v = s.values[ci];
      if (!Number.isFinite(v) || (yLog && v <= 0)) return;
      const y = sy(v);
      body.push(`<rect x="${(gx + si * bw).toFixed(1)}" y="${y.toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${(H - M.b - y).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${cat} ${s.name}: ${fmtNum(v)}`)}</title></rect>`);
    });
    body.push(`<text transform="translate(${(gx + gw * 0.4).toFixed(1)} ${H - M.b + 12}) rotate(20)" font-size="10">${esc(cat)}</text>`);
  });
  body.push(`<rect x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" fill="none" stroke="#444"/>`);
  body.push(...legend(series.map((s) => s.name)));
  return frame(title, '', yLabel, body);
}
