import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_METRICS_PORTS } from '@ftvm/metrics';
import { commands } from '../src/commands/index.js';

const read = (rel: string) => readFileSync(new URL(`../../../${rel}`, import.meta.url), 'utf8');

/** Issue 21 item 10: the proxy's metrics are on one port wherever ftvm tells an operator where they are. */
describe('the metrics ports an operator is told', () => {
  it('ftvm up puts the proxy, node a and node b on the conventional ports', () => {
    const up = commands.find((c) => c.name === 'up')!;
    expect(up.flags['metrics-port']!.default).toBe(DEFAULT_METRICS_PORTS.proxy);
    expect(DEFAULT_METRICS_PORTS.primary).toBe(DEFAULT_METRICS_PORTS.proxy + 1);
    expect(DEFAULT_METRICS_PORTS.secondary).toBe(DEFAULT_METRICS_PORTS.proxy + 2);
  });

  it('the compose file publishes them on the same host ports', () => {
    const compose = read('deploy/compose.yaml');
    const published = (service: string): string | undefined => {
      const block = compose.slice(compose.indexOf(`\n  ${service}:`));
      return /ports: \[([^\]]*)\]/.exec(block)?.[1];
    };
    expect(published('proxy')).toContain(`"${DEFAULT_METRICS_PORTS.proxy}:9100"`);
    expect(published('node-a')).toContain(`"${DEFAULT_METRICS_PORTS.primary}:9100"`);
    expect(published('node-b')).toContain(`"${DEFAULT_METRICS_PORTS.secondary}:9100"`);
  });

  it('ftvm drill prints those ports', () => {
    const drill = read('packages/cli/src/commands/drill.ts');
    const ports = [...drill.matchAll(/localhost:(\d+)\/metrics/g)].map((m) => Number(m[1]));
    expect(ports.length).toBeGreaterThan(0);
    for (const p of ports) expect([DEFAULT_METRICS_PORTS.proxy, DEFAULT_METRICS_PORTS.primary, DEFAULT_METRICS_PORTS.secondary]).toContain(p);
    expect(drill).toMatch(new RegExp(`localhost:${DEFAULT_METRICS_PORTS.proxy}/metrics \\| grep "\\^ftvm_failovers_total"`));
  });

  it('every command that serves or links takes --token-file, and every serving role --metrics-port', () => {
    const byName = Object.fromEntries(commands.map((c) => [c.name, c]));
    for (const name of ['up', 'primary', 'secondary', 'proxy', 'run', 'restore', 'receive', 'snapshot', 'migrate']) expect(byName[name]!.flags['token-file'], name).toBeDefined();
    for (const name of ['up', 'primary', 'secondary', 'proxy', 'run', 'restore', 'receive']) expect(byName[name]!.flags['metrics-port'], name).toBeDefined();
  });
});
