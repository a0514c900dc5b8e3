import { prepareGuest, readGuest, RunServer } from '@ftvm/vmm';
import { int, oneOf } from '../flags.js';
import { GUEST_LOG_LEVELS, Logger } from '../logger.js';
export const runCommand = {
    name: 'run',
    summary: 'serve a guest unprotected on a TCP port (the baseline every benchmark compares against)',
    usage: 'ftvm run --guest <kv|http|dirtier|clockprobe|path.wasm> --port <tcp> [options]',
    flags: {
        guest: { type: 'string', default: 'kv', help: 'shipped guest name or path to a .wasm module' },
        port: { type: 'string', default: 6380, parse: int(0, 65535), help: 'TCP port clients connect to (0: any free port)' },
        host: { type: 'string', default: '127.0.0.1', help: 'address to listen on' },
        'event-timeout-ms': { type: 'string', default: 2000, parse: int(1, 3_600_000), help: 'an event running longer is stopped and rolled back' },
        'checkpoint-interval-ms': { type: 'string', default: 200, parse: int(1, 60_000), help: 'interval of local rollback checkpoints' },
        'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
    },
    async run(f) {
        const log = new Logger('run', f['log-level']);
        const { name, wasm } = readGuest(f.guest);
        const guest = prepareGuest(name, wasm);
        for (const w of guest.warnings)
            log.warn(w);
        log.info('guest prepared', { guest: name, dirtyLog: guest.dirtyMode, digest: guest.digest.slice(0, 12) });
        const server = new RunServer(guest, {
            host: f.host,
            port: f.port,
            eventTimeoutMs: f['event-timeout-ms'],
            checkpointIntervalMs: f['checkpoint-interval-ms'],
        });
        server.on('log', (l, m) => log.log(GUEST_LOG_LEVELS[l] ?? 'info', `guest: ${m}`));
        server.on('fault', (err, recovered) => log.error(recovered ? 'guest fault: rolled back to the last checkpoint' : 'guest fault: guest stopped', { code: err.code, conn: err.conn, message: err.message }));
        const port = await server.start();
        log.info(`serving ${name} unprotected`, { listen: `${f.host}:${port}` });
        // Machine-readable line for scripts and tests.
        process.stdout.write(`ftvm run: listening on ${f.host}:${port}\n`);
        await new Promise((resolve) => {
            const stop = () => resolve();
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
        });
        log.info('shutting down');
        await server.close();
        return 0;
    },
};
//# sourceMappingURL=run.js.map