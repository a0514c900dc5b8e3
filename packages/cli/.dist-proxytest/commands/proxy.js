import { loadToken } from '@ftvm/protocol';
import { ProxyRuntime } from '@ftvm/proxy';
import { CliError } from '../errors.js';
import { int, oneOf } from '../flags.js';
import { Logger } from '../logger.js';
/** `ws://host:port,ws://host:port` -> URLs (at least one, no repeats). */
const wsUrls = (raw, name) => {
    const urls = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const bad = urls.find((u) => !/^wss?:\/\/[^/\s]+(\/\S*)?$/.test(u));
    if (urls.length === 0 || bad !== undefined)
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be comma-separated ws:// URLs (e.g. ws://127.0.0.1:7001,ws://127.0.0.1:7002), got '${bad ?? raw}'`);
    if (new Set(urls).size !== urls.length)
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} lists a node twice: '${raw}'`);
    return urls;
};
export const proxyCommand = {
    name: 'proxy',
    summary: 'run the output-commit proxy: clients connect here, replies leave only once committed',
    usage: 'ftvm proxy --port <tcp> --nodes ws://a:p,ws://b:p [options]',
    flags: {
        port: { type: 'string', default: 6380, parse: int(0, 65535), help: 'TCP port clients connect to (0: any free port)' },
        host: { type: 'string', default: '127.0.0.1', help: 'address clients connect to' },
        nodes: { type: 'string', required: true, parse: wsUrls, help: 'the nodes, comma-separated ws:// URLs; named a, b, ... in this order' },
        'failover-timeout-ms': { type: 'string', default: 1000, parse: int(1, 600_000), help: 'silence of the active primary after which it is lost' },
        'promote-timeout-ms': { type: 'string', default: 10_000, parse: int(1, 3_600_000), help: 'a promoted node must answer within this' },
        'token-file': { type: 'string', help: 'file holding the shared secret (else $FTVM_TOKEN; none: unauthenticated, with a warning)' },
        'metrics-port': { type: 'string', parse: int(0, 65535), help: 'port for /metrics, /healthz, /readyz and the status page' },
        'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
    },
    async run(f) {
        const log = new Logger('proxy', f['log-level']);
        const { token, source } = loadToken({ tokenFile: f['token-file'] });
        if (source === 'none')
            log.warn('no token configured (--token-file or FTVM_TOKEN): links are not authenticated');
        const host = f.host;
        const proxy = new ProxyRuntime({
            port: f.port,
            host,
            nodes: f.nodes,
            token,
            failoverTimeoutMs: f['failover-timeout-ms'],
            promoteTimeoutMs: f['promote-timeout-ms'],
            metricsPort: f['metrics-port'],
            log,
        });
        const port = await proxy.start();
        if (proxy.metricsPort !== undefined)
            log.info('metrics', { url: `http://${host}:${proxy.metricsPort}/metrics` });
        // Machine-readable line for scripts and tests.
        process.stdout.write(`ftvm proxy: listening on ${host}:${port}\n`);
        await new Promise((resolve) => {
            process.once('SIGINT', () => resolve());
            process.once('SIGTERM', () => resolve());
        });
        log.info('shutting down');
        await proxy.close();
        return 0;
    },
};
//# sourceMappingURL=proxy.js.map