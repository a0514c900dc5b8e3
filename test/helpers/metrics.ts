import { parsePromText } from '../../packages/metrics/test/helpers/prom-text.js';

/** One sample of a role's /metrics (`base` as Cluster.metricsUrl gives it); throws when it is missing. */
export async function metricValue(base: string, name: string, labels?: Record<string, string>): Promise<number> {
  const v = parsePromText(await (await fetch(`${base}/metrics`)).text()).value(name, labels);
  if (v === undefined) throw new Error(`no ${name}${labels ? JSON.stringify(labels) : ''} in ${base}/metrics`);
  return v;
}
