import { type CommandSpec } from '../flags.js';
export declare const primaryCommand: CommandSpec;
//# sourceMappingURL=primary.d.ts.map