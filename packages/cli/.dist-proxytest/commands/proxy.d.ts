import { type CommandSpec } from '../flags.js';
export declare const proxyCommand: CommandSpec;
//# sourceMappingURL=proxy.d.ts.map