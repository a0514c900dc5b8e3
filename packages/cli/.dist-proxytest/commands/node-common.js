import { loadToken } from '@ftvm/protocol';
import { NodeHost, bridgeNodeMetrics } from '@ftvm/node';
import { FtvmEvents, createRoleMetrics, startMetricsServer } from '@ftvm/metrics';
import { prepareGuest, readGuest } from '@ftvm/vmm';
import { hostPort, int, oneOf } from '../flags.js';
import { Logger } from '../logger.js';
/** Flags every node command takes (ftvm primary, ftvm secondary). */
export const nodeFlags = {
    listen: { type: 'string', required: true, parse: hostPort, help: 'host:port this node listens on for every link (proxy, replication)' },
    guest: { type: 'string', default: 'kv', help: 'shipped guest name or path to a .wasm module (both nodes run the same one)' },
    'node-id': { type: 'string', help: 'name of this node in logs and handshakes (default: the listen address)' },
    'token-file': { type: 'string', help: 'file holding the shared secret (else $FTVM_TOKEN; none: unauthenticated, with a warning)' },
    policy: { type: 'string', default: 'adaptive', parse: oneOf('adaptive', 'periodic', 'sync-io'), help: 'epoch policy' },
    'interval-ms': { type: 'string', parse: int(1, 60_000), help: 'epoch interval for --policy periodic (default 25), max interval for adaptive (default 100)' },
    'on-secondary-loss': { type: 'string', default: 'continue', parse: oneOf('continue', 'block'), help: 'primary without a secondary: go on unprotected, or hold output' },
    'detection-timeout-ms': { type: 'string', default: 1000, parse: int(10, 600_000), help: 'silence after which the peer is lost' },
    compression: { type: 'string', default: 'on', parse: oneOf('on', 'off'), help: 'XOR-delta/LZ4 page encoding on the wire' },
    'event-timeout-ms': { type: 'string', default: 2000, parse: int(1, 3_600_000), help: 'a guest event running longer is a fault' },
    'metrics-port': { type: 'string', parse: int(0, 65535), help: 'port for /metrics, /healthz, /readyz and the status page' },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
};
export async function runNode(role, f, extra) {
    const log = new Logger(role, f['log-level']);
    const listen = f.listen;
    const { token, source } = loadToken({ tokenFile: f['token-file'] });
    if (source === 'none')
        log.warn('no token configured (--token-file or FTVM_TOKEN): links are not authenticated');
    const { name, wasm } = readGuest(f.guest);
    const guest = prepareGuest(name, wasm);
    for (const w of guest.warnings)
        log.warn(w);
    const policy = f.policy;
    const interval = f['interval-ms'];
    const policyOptions = interval === undefined ? {} : policy === 'periodic' ? { intervalMs: interval } : policy === 'adaptive' ? { maxIntervalMs: interval } : {};
    const node = new NodeHost({
        nodeId: f['node-id'] ?? `${listen.host}:${listen.port}`,
        host: listen.host,
        port: listen.port,
        token,
        guest,
        role,
        peer: extra.peer,
        join: extra.join,
        policy,
        policyOptions,
        onSecondaryLoss: f['on-secondary-loss'],
        compression: f.compression === 'on',
        eventTimeoutMs: f['event-timeout-ms'],
        detectionTimeoutMs: f['detection-timeout-ms'],
    });
    node.on('log', (l, m, fields) => log.log(l, m, fields));
    let metrics = null;
    if (f['metrics-port'] !== undefined) {
        const bus = new FtvmEvents({ name: role });
        // Registered before start so the first role and protection events are counted.
        const roleMetrics = createRoleMetrics(role, bus);
        bridgeNodeMetrics(node, bus, policy);
        metrics = await startMetricsServer({ port: f['metrics-port'], host: listen.host, metrics: roleMetrics });
        log.info('metrics', { url: `${metrics.url}/metrics`, status: `${metrics.url}/` });
    }
    node.on('role', (r, term) => {
        log.info(`role: ${r}`, { term });
        process.stdout.write(`ftvm ${role}: role ${r} term ${term}\n`);
    });
    const port = await node.start();
    log.info(`listening`, { listen: `${listen.host}:${port}`, guest: name, policy });
    process.stdout.write(`ftvm ${role}: listening on ${listen.host}:${port}\n`);
    await new Promise((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
    });
    await node.close();
    await metrics?.close();
    return 0;
}
//# sourceMappingURL=node-common.js.map