import { afterEach } from 'vitest';
import {
  FtvmEvents, createRoleMetrics, startMetricsServer, type MetricsServer, type Role, type RoleMetrics, type RoleMetricsOptions,
} from '../../src/index.js';
import { parsePromText, type PromScrape } from './prom-text.js';

export interface TestRole {
  bus: FtvmEvents;
  metrics: RoleMetrics;
  server: MetricsServer;
  scrape(): Promise<PromScrape>;
  get(path: string, init?: RequestInit): Promise<Response>;
}

const open: TestRole[] = [];

afterEach(async () => {
  while (open.length > 0) {
    const r = open.pop()!;
    r.metrics.close();
    await r.server.close();
  }
});

/** A role's metrics behind a real HTTP server on a free loopback port; closed after each test. */
export async function startTestRole(role: Role, opts: RoleMetricsOptions = {}): Promise<TestRole> {
  const bus = new FtvmEvents({ name: role, strict: true });
  const metrics = createRoleMetrics(role, bus, { ...opts, status: { autoStart: false, ...opts.status } });
  const server = await startMetricsServer({ port: 0, metrics });
  const r: TestRole = {
    bus,
    metrics,
    server,
    get: (path, init) => fetch(server.url + path, init),
    scrape: async () => {
      const res = await fetch(server.url + '/metrics');
      if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
      return parsePromText(await res.text());
    },
  };
  open.push(r);
  return r;
}
