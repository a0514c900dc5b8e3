import type { CommandSpec } from '../flags.js';
export declare const commands: CommandSpec[];
//# sourceMappingURL=index.d.ts.map