import { readFileSync } from 'node:fs';
import { inspectModule } from '@ftvm/instrument';
import { CliError } from '../errors.js';
export const inspectCommand = {
    name: 'inspect',
    summary: 'show a module\'s ABI version, imports, exports and instrumentation stats',
    usage: 'ftvm inspect <file.wasm> [--json]',
    positionals: ['<file.wasm>'],
    flags: {
        json: { type: 'boolean', default: false, help: 'print JSON instead of text' },
    },
    async run(f, pos) {
        const file = pos[0];
        if (!file)
            throw new CliError('FTVM_ERR_CLI_MISSING', "'ftvm inspect' needs a .wasm file argument");
        let bytes;
        try {
            bytes = new Uint8Array(readFileSync(file));
        }
        catch (e) {
            throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `cannot read '${file}': ${e.message}`);
        }
        const report = inspectModule(bytes);
        const { text: _text, ...data } = report;
        process.stdout.write(f.json ? `${JSON.stringify(data, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n` : `${report.text}\n`);
        return report.abi.ok ? 0 : 1;
    },
};
//# sourceMappingURL=inspect.js.map