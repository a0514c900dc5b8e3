import { type CommandSpec } from '../flags.js';
export declare const runCommand: CommandSpec;
//# sourceMappingURL=run.d.ts.map