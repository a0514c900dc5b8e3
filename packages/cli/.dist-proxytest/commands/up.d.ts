import { type CommandSpec } from '../flags.js';
export declare const upCommand: CommandSpec;
//# sourceMappingURL=up.d.ts.map