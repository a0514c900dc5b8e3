import { type CommandSpec } from '../flags.js';
export declare const secondaryCommand: CommandSpec;
//# sourceMappingURL=secondary.d.ts.map