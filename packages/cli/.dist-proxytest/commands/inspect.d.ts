import type { CommandSpec } from '../flags.js';
export declare const inspectCommand: CommandSpec;
//# sourceMappingURL=inspect.d.ts.map