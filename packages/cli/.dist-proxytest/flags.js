import { parseArgs } from 'node:util';
import { CliError } from './errors.js';
export const int = (min, max = Number.MAX_SAFE_INTEGER) => (raw, name) => {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be an integer from ${min} to ${max}, got '${raw}'`);
    return n;
};
export const oneOf = (...values) => (raw, name) => {
    if (!values.includes(raw))
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be one of ${values.join(', ')}, got '${raw}'`);
    return raw;
};
export const hostPort = (raw, name) => {
    const m = /^(.*):(\d+)$/.exec(raw);
    const port = m ? Number(m[2]) : NaN;
    if (!m || !m[1] || port < 0 || port > 65535)
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be host:port (e.g. 127.0.0.1:7000), got '${raw}'`);
    return { host: m[1].replace(/^\[|\]$/g, ''), port };
};
/** Parses argv for one command; unknown flags and bad values are coded errors. */
export function parseFlags(spec, argv) {
    const options = { help: { type: 'boolean', short: 'h' } };
    for (const [name, f] of Object.entries(spec.flags))
        options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
    let parsed;
    try {
        parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
    }
    catch (e) {
        const err = e;
        if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
            throw new CliError('FTVM_ERR_CLI_UNKNOWN_FLAG', `${err.message.split('.')[0]} for 'ftvm ${spec.name}' (see ftvm ${spec.name} --help)`);
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `${err.message.split('\n')[0]} (see ftvm ${spec.name} --help)`);
    }
    const flags = { help: parsed.values.help === true };
    if (flags.help)
        return { flags, positionals: parsed.positionals };
    for (const [name, f] of Object.entries(spec.flags)) {
        const raw = parsed.values[name];
        if (raw === undefined) {
            if (f.required)
                throw new CliError('FTVM_ERR_CLI_MISSING', `'ftvm ${spec.name}' needs --${name}: ${f.help}`);
            flags[name] = f.default;
        }
        else if (f.type === 'string' && f.parse) {
            flags[name] = Array.isArray(raw) ? raw.map((r) => f.parse(String(r), name)) : f.parse(String(raw), name);
        }
        else {
            flags[name] = raw;
        }
    }
    const max = spec.positionals?.length ?? 0;
    if (parsed.positionals.length > max)
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `'ftvm ${spec.name}' takes ${max ? spec.positionals.join(' ') : 'no arguments'}, got '${parsed.positionals.join(' ')}'`);
    return { flags, positionals: parsed.positionals };
}
export function helpText(spec) {
    const rows = Object.entries(spec.flags).map(([name, f]) => {
        const left = `  --${name}${f.type === 'string' ? ' <value>' : ''}`;
        const def = f.default !== undefined && f.default !== false ? ` (default: ${String(f.default)})` : f.required ? ' (required)' : '';
        return `${left.padEnd(34)} ${f.help}${def}`;
    });
    return [`ftvm ${spec.name}: ${spec.summary}`, '', `usage: ${spec.usage}`, '', 'options:', ...rows, `${'  -h, --help'.padEnd(34)} show this help`, ''].join('\n');
}
export const wsUrl = (raw, name) => {
    let u;
    try {
        u = new URL(raw);
    }
    catch {
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be a ws:// URL (e.g. ws://127.0.0.1:7002), got '${raw}'`);
    }
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
        throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be a ws:// or wss:// URL, got '${raw}'`);
    return raw;
};
//# sourceMappingURL=flags.js.map