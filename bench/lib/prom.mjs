// Prometheus text exposition: scrape, diff two scrapes, estimate histogram quantiles.

/** Bytes of one scrape we read (a role's registry is a few tens of KiB). */
const MAX_SCRAPE_BYTES = 4 << 20;

/** Parses `name{labels} value` lines into a Map keyed by the series text before the value. */
export function parseProm(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp < 0) continue;
    const v = Number(line.slice(sp + 1));
    if (!Number.isNaN(v)) m.set(line.slice(0, sp), v);
  }
  return m;
}

/** Scrapes /metrics with a time bound; null when the role does not answer (e.g. it was killed). */
export async function scrape(port, timeoutMs = 3000) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    if (text.length > MAX_SCRAPE_BYTES) throw new Error(`scrape of port ${port} is ${text.length} bytes`);
    return parseProm(text);
  } catch {
    return null;
  }
}

/** Counter increase between two scrapes (0 when missing). */
export function delta(before, after, series) {
  const a = after?.get(series);
  const b = before?.get(series) ?? 0;
  return a === undefined ? 0 : a - b;
}

/** Sum of the increases of every series whose key starts with `prefix` (e.g. every label of a counter). */
export function deltaPrefix(before, after, prefix) {
  let s = 0;
  for (const [k, v] of after ?? []) if (k.startsWith(prefix)) s += v - (before?.get(k) ?? 0);
  return s;
}

/** Bucket increases of a histogram between two scrapes: [{ le, count }] sorted by le (cumulative). */
export function histDelta(before, after, name) {
  const out = [];
  for (const [k, v] of after ?? []) {
    if (!k.startsWith(`${name}_bucket{`)) continue;
    const le = k.match(/le="([^"]+)"/)?.[1];
    if (le === undefined) continue;
    out.push({ le: le === '+Inf' ? Infinity : Number(le), count: v - (before?.get(k) ?? 0) });
  }
  return out.sort((x, y) => x.le - y.le);
}

/**
 * Quantile q of a cumulative-bucket histogram, interpolated linearly inside the bucket
 * (as PromQL's histogram_quantile; the first bucket starts at 0). Its error is bounded by
 * the bucket width: the caller reports the bucket bounds next to it. Null with no samples.
 */
export function histQuantile(buckets, q) {
  const total = buckets.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe; // beyond the last finite bucket: its bound is all we know
      const inBucket = b.count - prevCount;
      return inBucket <= 0 ? b.le : prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket;
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** The [lower, upper] bucket bounds that hold quantile q (how coarse the estimate is). */
export function histBucketOf(buckets, q) {
  const total = buckets.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  let prevLe = 0;
  for (const b of buckets) {
    if (b.count >= q * total) return [prevLe, b.le];
    prevLe = b.le;
  }
  return [prevLe, Infinity];
}

/** Share of samples at or below `le` (exact when `le` is a bucket bound). */
export function histShareAtMost(buckets, le) {
  const total = buckets.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  const b = buckets.find((x) => x.le >= le - 1e-12);
  return b ? b.count / total : 1;
}
