import { type NodeRole } from '@ftvm/node';
import { type FlagTable } from '../flags.js';
/** Flags every node command takes (ftvm primary, ftvm secondary). */
export declare const nodeFlags: FlagTable;
export declare function runNode(role: NodeRole, f: Record<string, unknown>, extra: {
    peer?: string;
    join?: string;
}): Promise<number>;
//# sourceMappingURL=node-common.d.ts.map