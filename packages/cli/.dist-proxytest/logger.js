const ORDER = { error: 0, warn: 1, info: 2, debug: 3 };
export class Logger {
    role;
    level;
    json;
    constructor(role, level = 'info', json = process.env.FTVM_LOG_FORMAT === 'json') {
        this.role = role;
        this.level = level;
        this.json = json;
    }
    setLevel(l) {
        this.level = l;
    }
    log(level, msg, fields = {}) {
        if (ORDER[level] > ORDER[this.level])
            return;
        if (this.json) {
            process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, role: this.role, msg, ...fields }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
            return;
        }
        const extra = Object.entries(fields)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))}`)
            .join(' ');
        process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} [${this.role}] ${msg}${extra ? ' ' + extra : ''}\n`);
    }
    error(m, f) {
        this.log('error', m, f);
    }
    warn(m, f) {
        this.log('warn', m, f);
    }
    info(m, f) {
        this.log('info', m, f);
    }
    debug(m, f) {
        this.log('debug', m, f);
    }
}
export const GUEST_LOG_LEVELS = ['error', 'warn', 'info', 'debug'];
//# sourceMappingURL=logger.js.map