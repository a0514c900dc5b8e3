import type { StatusPeer } from '@ftvm/metrics';
import { ProxyRuntime } from '@ftvm/proxy';
import { CliError } from '../errors.js';
import { int, oneOf, type CommandSpec } from '../flags.js';
import { Logger, type Level } from '../logger.js';
import { credentialFlags, credentials } from '../credentials.js';

/** `ws://host:port,ws://host:port` -> URLs (at least one, no repeats). */
const wsUrls = (raw: string, name: string): string[] => {
  const urls = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const bad = urls.find((u) => !/^wss?:\/\/[^/\s]+(\/\S*)?$/.test(u));
  if (urls.length === 0 || bad !== undefined)
    throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be comma-separated ws:// or wss:// URLs (e.g. ws://127.0.0.1:7001,ws://127.0.0.1:7002), got '${bad ?? raw}'`);
  if (new Set(urls).size !== urls.length) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} lists a node twice: '${raw}'`);
  return urls;
};

/** `a=http://127.0.0.1:9101,b=http://127.0.0.1:9102` -> status peers (the metrics server validates them further). */
const statusPeers = (raw: string): StatusPeer[] => {
  const peers = raw.split(',').map((s) => s.trim()).filter((s) => s !== '').map((item) => {
    const m = /^([^=\s]{1,32})=(https?:\/\/[^/\s]+)\/?$/.exec(item);
    if (!m) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--status-peers must be name=http://host:port,... (e.g. a=http://127.0.0.1:9101), got '${item}'`);
    return { name: m[1]!, url: m[2]! };
  });
  if (peers.length === 0) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--status-peers names no peer: '${raw}'`);
  return peers;
};

export const proxyCommand: CommandSpec = {
  name: 'proxy',
  summary: 'run the output-commit proxy: clients connect here, replies leave only once committed',
  usage: 'ftvm proxy --port <tcp> --nodes ws://a:p,ws://b:p [options]',
  flags: {
    port: { type: 'string', default: 6380, parse: int(0, 65535), help: 'TCP port clients connect to (0: any free port)' },
    host: { type: 'string', default: '127.0.0.1', help: 'address clients connect to' },
    nodes: { type: 'string', required: true, parse: wsUrls, help: 'the nodes, comma-separated ws:// URLs; named a, b, ... in this order' },
    'failover-timeout-ms': { type: 'string', default: 1000, parse: int(1, 600_000), help: 'silence of the active primary after which it is lost' },
    'promote-timeout-ms': { type: 'string', default: 10_000, parse: int(1, 3_600_000), help: 'a promoted node must answer within this' },
    ...credentialFlags,
    'metrics-port': { type: 'string', parse: int(0, 65535), help: 'port for /metrics, /healthz, /readyz and the status page' },
    'metrics-host': { type: 'string', default: '127.0.0.1', help: 'address the metrics server listens on' },
    'status-peers': {
      type: 'string',
      parse: statusPeers,
      help: "the nodes' metrics servers to chart on this status page, name=http://host:port,... (needs --metrics-port)",
    },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
  },
  async run(f) {
    const log = new Logger('proxy', f['log-level'] as Level);
    const host = f.host as string;
    if (f['status-peers'] !== undefined && f['metrics-port'] === undefined) {
      throw new CliError('FTVM_ERR_CLI_BAD_VALUE', '--status-peers needs --metrics-port (the peers are charted on its status page)');
    }
    const creds = credentials(f, log);
    const proxy = new ProxyRuntime({
      port: f.port as number,
      host,
      nodes: f.nodes as string[],
      ...creds,
      failoverTimeoutMs: f['failover-timeout-ms'] as number,
      promoteTimeoutMs: f['promote-timeout-ms'] as number,
      metricsPort: f['metrics-port'] as number | undefined,
      metricsHost: f['metrics-host'] as string,
      statusPeers: f['status-peers'] as StatusPeer[] | undefined,
      log,
    });
    const port = await proxy.start();
    if (proxy.metricsPort !== undefined) log.info('metrics', { url: `http://${f['metrics-host'] as string}:${proxy.metricsPort}/metrics` });
    // Machine-readable line for scripts and tests.
    process.stdout.write(`ftvm proxy: listening on ${host}:${port}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    log.info('shutting down');
    await proxy.close();
    return 0;
  },
};
