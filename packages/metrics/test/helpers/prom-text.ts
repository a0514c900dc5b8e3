/**
 * A small parser of the Prometheus text exposition format (0.0.4), for tests that scrape a
 * real /metrics endpoint. Returns every sample; `value()` finds one by name and labels.
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromScrape {
  samples: PromSample[];
  /** `# TYPE` of each family. */
  types: Map<string, string>;
  /** The value of the one sample with this name whose labels include `labels`; undefined if none. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Sum over all samples of `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
}

function parseValue(s: string): number {
  // Case-insensitive like Prometheus' own parser (prom-client writes 'Nan').
  const l = s.toLowerCase();
  if (l === '+inf' || l === 'inf') return Infinity;
  if (l === '-inf') return -Infinity;
  if (l === 'nan') return NaN;
  const v = Number(s);
  if (Number.isNaN(v)) throw new Error(`bad sample value '${s}'`);
  return v;
}

function parseLabels(body: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    while (body[i] === ',' || body[i] === ' ') i++;
    if (i >= body.length) break;
    const eq = body.indexOf('=', i);
    if (eq < 0 || body[eq + 1] !== '"') throw new Error(`bad labels '${body}'`);
    const key = body.slice(i, eq).trim();
    let j = eq + 2;
    let val = '';
    while (j < body.length && body[j] !== '"') {
      if (body[j] === '\\') {
        const n = body[j + 1];
        val += n === 'n' ? '\n' : n;
        j += 2;
      } else {
        val += body[j++];
      }
    }
    if (body[j] !== '"') throw new Error(`unterminated label value in '${body}'`);
    labels[key] = val;
    i = j + 1;
  }
  return labels;
}

export function parsePromText(text: string): PromScrape {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (m) types.set(m[1]!, m[2]!);
      continue;
    }
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && brace < space) {
      const close = line.lastIndexOf('}');
      name = line.slice(0, brace);
      labels = parseLabels(line.slice(brace + 1, close));
      rest = line.slice(close + 1).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    samples.push({ name, labels, value: parseValue(rest.split(' ')[0]!) });
  }
  const matches = (s: PromSample, name: string, labels: Record<string, string>): boolean =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    samples,
    types,
    value(name, labels = {}) {
      const found = samples.filter((s) => matches(s, name, labels));
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
      return found[0]?.value;
    },
    sum(name, labels = {}) {
      return samples.filter((s) => matches(s, name, labels)).reduce((a, s) => a + s.value, 0);
    },
  };
}
