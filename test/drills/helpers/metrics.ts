/** Samples of one Prometheus text exposition: `name{labels}` -> value. */
export type Samples = Map<string, number>;

/** Parses the Prometheus text format (comments skipped; labels kept verbatim in the key). */
export function parseMetrics(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp < 0) continue;
    const v = Number(line.slice(sp + 1));
    if (!Number.isNaN(v)) out.set(line.slice(0, sp), v);
  }
  return out;
}

/** GET /metrics with a timeout (ms); null when the endpoint does not answer. */
export async function scrape(url: string, timeoutMs = 2000): Promise<Samples | null> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return null;
    return parseMetrics(await res.text());
  } catch {
    return null;
  }
}

/** Mean of a histogram between two scrapes (seconds), NaN when nothing was observed. */
export function histogramMean(before: Samples, after: Samples, name: string): number {
  const sum = (after.get(`${name}_sum`) ?? 0) - (before.get(`${name}_sum`) ?? 0);
  const count = (after.get(`${name}_count`) ?? 0) - (before.get(`${name}_count`) ?? 0);
  return count > 0 ? sum / count : NaN;
}
