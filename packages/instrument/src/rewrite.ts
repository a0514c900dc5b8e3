/**
 * The binaryen rewrite: after every store-like expression, inline `i32.store8` marks of
 * the 4 KiB page(s) it wrote into the bytemap at BYTEMAP_BASE.
 *
 * Invariants kept by every rewrite here:
 * - Evaluation order is the original one: ptr, then the other operands, then the access.
 * - Marks run AFTER the access, so a trapping access leaves no mark, and an access into
 *   the reserved region always leaves a mark on a page < RESERVED_PAGES.
 * - The replacement has the type of the expression it replaces, so no refinalize is needed.
 * - Temp locals are allocated per (role, type, nesting depth): an access nested inside the
 *   operands of another one never reuses the temp its parent still needs.
 */
import binaryen from 'binaryen';
import { BYTEMAP_BASE, PAGE_SHIFT } from '@ftvm/guest-abi';

type Ref = number;
type Raw = Record<string, (...args: number[]) => number>;
const b = binaryen;
const raw = binaryen as unknown as Raw;

export const MARK_RANGE_FUNCTION = '__ftvm_mark_range';

export interface RewriteStats {
  functions: number;
  stores: number;
  atomicRmw: number;
  atomicCmpxchg: number;
  simdLaneStores: number;
  bulkOps: number;
}

/** A module feature this rewriter cannot walk safely; the caller falls back to the shadow log. */
export class UnsupportedModule extends Error {}

/** Features the rewritten module is read and written with (AS output reads back as MVP). */
export const FEATURES =
  b.Features.MutableGlobals |
  b.Features.NontrappingFPToInt |
  b.Features.SIMD128 |
  b.Features.BulkMemory |
  b.Features.BulkMemoryOpt |
  b.Features.SignExt |
  b.Features.Atomics |
  b.Features.Multivalue |
  b.Features.ReferenceTypes |
  b.Features.TailCall |
  b.Features.ExtendedConst |
  b.Features.ExceptionHandling;

type Slot = { key: string; set: string } | { key: string; setAt: string };

function slots(kind: string, keys: string[], lists: string[] = []): Slot[] {
  return [
    ...keys.map((k) => ({ key: k, set: `_Binaryen${kind}Set${k[0]!.toUpperCase()}${k.slice(1)}` })),
    ...lists.map((k) => ({ key: k, setAt: `_Binaryen${kind}Set${listSetter[k]}At` })),
  ];
}
const listSetter: Record<string, string> = { children: 'Child', operands: 'Operand', catchBodies: 'CatchBody' };

/** Child expressions of each expression kind this walker supports, with their raw C setters. */
const CHILDREN = new Map<number, Slot[]>([
  [b.BlockId, slots('Block', [], ['children'])],
  [b.IfId, slots('If', ['condition', 'ifTrue', 'ifFalse'])],
  [b.LoopId, slots('Loop', ['body'])],
  [b.BreakId, slots('Break', ['condition', 'value'])],
  [b.SwitchId, slots('Switch', ['condition', 'value'])],
  [b.CallId, slots('Call', [], ['operands'])],
  [b.CallIndirectId, slots('CallIndirect', ['target'], ['operands'])],
  [b.LocalGetId, []],
  [b.LocalSetId, slots('LocalSet', ['value'])],
  [b.GlobalGetId, []],
  [b.GlobalSetId, slots('GlobalSet', ['value'])],
  [b.LoadId, slots('Load', ['ptr'])],
  [b.StoreId, slots('Store', ['ptr', 'value'])],
  [b.ConstId, []],
  [b.UnaryId, slots('Unary', ['value'])],
  [b.BinaryId, slots('Binary', ['left', 'right'])],
  [b.SelectId, slots('Select', ['ifTrue', 'ifFalse', 'condition'])],
  [b.DropId, slots('Drop', ['value'])],
  [b.ReturnId, slots('Return', ['value'])],
  [b.MemorySizeId, []],
  [b.MemoryGrowId, slots('MemoryGrow', ['delta'])],
  [b.AtomicRMWId, slots('AtomicRMW', ['ptr', 'value'])],
  [b.AtomicCmpxchgId, slots('AtomicCmpxchg', ['ptr', 'expected', 'replacement'])],
  [b.AtomicWaitId, slots('AtomicWait', ['ptr', 'expected', 'timeout'])],
  [b.AtomicNotifyId, slots('AtomicNotify', ['ptr', 'notifyCount'])],
  [b.AtomicFenceId, []],
  [b.SIMDExtractId, slots('SIMDExtract', ['vec'])],
  [b.SIMDReplaceId, slots('SIMDReplace', ['vec', 'value'])],
  [b.SIMDShuffleId, slots('SIMDShuffle', ['left', 'right'])],
  [b.SIMDTernaryId, slots('SIMDTernary', ['a', 'b', 'c'])],
  [b.SIMDShiftId, slots('SIMDShift', ['vec', 'shift'])],
  [b.SIMDLoadId, slots('SIMDLoad', ['ptr'])],
  [b.SIMDLoadStoreLaneId, slots('SIMDLoadStoreLane', ['ptr', 'vec'])],
  [b.MemoryInitId, slots('MemoryInit', ['dest', 'offset', 'size'])],
  [b.DataDropId, []],
  [b.MemoryCopyId, slots('MemoryCopy', ['dest', 'source', 'size'])],
  [b.MemoryFillId, slots('MemoryFill', ['dest', 'value', 'size'])],
  [b.RefNullId, []],
  [b.RefIsNullId, slots('RefIsNull', ['value'])],
  [b.RefFuncId, []],
  [b.RefEqId, slots('RefEq', ['left', 'right'])],
  [b.TableGetId, slots('TableGet', ['index'])],
  [b.TableSetId, slots('TableSet', ['index', 'value'])],
  [b.TableSizeId, []],
  [b.TableGrowId, slots('TableGrow', ['value', 'delta'])],
  [b.TryId, slots('Try', ['body'], ['catchBodies'])],
  [b.ThrowId, slots('Throw', [], ['operands'])],
  [b.RethrowId, []],
  [b.TupleMakeId, slots('TupleMake', [], ['operands'])],
  [b.TupleExtractId, slots('TupleExtract', ['tuple'])],
]);

/** Expressions for which getExpressionInfo throws or which have no children. */
const LEAVES = new Set<number>([b.NopId, b.UnreachableId, b.PopId]);

const LANE_BYTES = new Map<number, number>([
  [b.Store8LaneVec128, 1],
  [b.Store16LaneVec128, 2],
  [b.Store32LaneVec128, 4],
  [b.Store64LaneVec128, 8],
]);

const idNames = new Map<number, string>(
  Object.entries(binaryen)
    .filter(([k, v]) => /^[A-Z]\w*Id$/.test(k) && typeof v === 'number')
    .map(([k, v]) => [v as number, k.slice(0, -2)]),
);

export function checkSetters(): string[] {
  const missing: string[] = [];
  for (const list of CHILDREN.values()) {
    for (const s of list) {
      const name = 'set' in s ? s.set : s.setAt;
      if (typeof raw[name] !== 'function') missing.push(name);
    }
  }
  return missing;
}

type Info = Record<string, unknown> & { id: number; type: number };

/**
 * Rewrites every defined function of `m` in place and adds the mark-range helper.
 * Throws UnsupportedModule on an expression kind it does not know (it never guesses).
 */
export function rewriteModule(m: binaryen.Module, precise: boolean): RewriteStats {
  const stats: RewriteStats = { functions: 0, stores: 0, atomicRmw: 0, atomicCmpxchg: 0, simdLaneStores: 0, bulkOps: 0 };
  let markRange = MARK_RANGE_FUNCTION;
  for (let n = 1; m.getFunction(markRange) !== 0; n++) markRange = `${MARK_RANGE_FUNCTION}_${n}`;

  const markAt = (pageExpr: Ref): Ref => m.i32.store8(BYTEMAP_BASE, 1, pageExpr, m.i32.const(1));
  const pageOf = (addr: Ref): Ref => m.i32.shr_u(addr, m.i32.const(PAGE_SHIFT));
  /** ea + k where ea = local p; k is an unsigned static offset, wrapped like the access computes it. */
  const addrPlus = (p: number, k: number): Ref => (k === 0 ? m.local.get(p, b.i32) : m.i32.add(m.local.get(p, b.i32), m.i32.const(k | 0)));

  const numFunctions = m.getNumFunctions();
  for (let fi = 0; fi < numFunctions; fi++) {
    const f = m.getFunctionByIndex(fi);
    const finfo = b.getFunctionInfo(f);
    if (finfo.module || !finfo.body) continue; // imported
    stats.functions++;
    const temps = new Map<string, number>();
    const temp = (role: string, type: number, depth: number): number => {
      const key = `${role}:${type}:${depth}`;
      let idx = temps.get(key);
      if (idx === undefined) {
        idx = raw._BinaryenFunctionAddVar!(f, type);
        temps.set(key, idx);
      }
      return idx;
    };

    /** Marks for an access of `bytes` bytes at (ptr local or const) + offset. */
    const marksFor = (ptr: { local: number } | { konst: number }, offset: number, bytes: number): Ref[] => {
      const last = precise && bytes > 1 ? offset + bytes - 1 : offset;
      if ('konst' in ptr) {
        // Both pages are known statically; the access traps unless ea + bytes <= memory size < 2^32.
        const p0 = Math.floor((ptr.konst + offset) / 4096) >>> 0;
        const p1 = Math.floor((ptr.konst + last) / 4096) >>> 0;
        return p0 === p1 ? [markAt(m.i32.const(p0 | 0))] : [markAt(m.i32.const(p0 | 0)), markAt(m.i32.const(p1 | 0))];
      }
      const out = [markAt(pageOf(addrPlus(ptr.local, offset)))];
      if (last !== offset) out.push(markAt(pageOf(addrPlus(ptr.local, last >>> 0))));
      return out;
    };

    /** Saves `ptrExpr` in a temp (unless constant) and returns how marks reach it. */
    const savePtr = (ptrExpr: Ref, depth: number, pre: Ref[]): { use: Ref; at: { local: number } | { konst: number } } => {
      if (b.getExpressionId(ptrExpr) === b.ConstId) {
        const v = (b.getExpressionInfo(ptrExpr) as unknown as { value: number }).value >>> 0;
        return { use: ptrExpr, at: { konst: v } };
      }
      const p = temp('p', b.i32, depth);
      pre.push(m.local.set(p, ptrExpr));
      return { use: m.local.get(p, b.i32), at: { local: p } };
    };

    const instrumentAccess = (e: Ref, info: Info, depth: number, ptrSetter: string, bytes: number, offset: number): Ref => {
      const pre: Ref[] = [];
      const saved = savePtr(info.ptr as Ref, depth, pre);
      raw[ptrSetter]!(e, saved.use);
      const marks = marksFor(saved.at, offset, bytes);
      if (info.type === b.none) return m.block(null, [...pre, e, ...marks], b.none);
      const r = temp('r', info.type, depth);
      return m.block(null, [...pre, m.local.set(r, e), ...marks, m.local.get(r, info.type)], info.type);
    };

    const instrumentBulk = (e: Ref, info: Info, depth: number, kind: 'MemoryFill' | 'MemoryCopy' | 'MemoryInit', second: string): Ref => {
      const d = temp('d', b.i32, depth);
      const s = temp('s', b.i32, depth);
      const n = temp('n', b.i32, depth);
      const pre = [m.local.set(d, info.dest as Ref), m.local.set(s, info[second] as Ref), m.local.set(n, info.size as Ref)];
      raw[`_Binaryen${kind}SetDest`]!(e, m.local.get(d, b.i32));
      raw[`_Binaryen${kind}Set${second[0]!.toUpperCase()}${second.slice(1)}`]!(e, m.local.get(s, b.i32));
      raw[`_Binaryen${kind}SetSize`]!(e, m.local.get(n, b.i32));
      const mark = m.call(markRange, [m.local.get(d, b.i32), m.local.get(n, b.i32)], b.none);
      return m.block(null, [...pre, e, mark], b.none);
    };

    const visit = (e: Ref, depth: number): Ref => {
      if (e === 0) return e;
      const id = b.getExpressionId(e);
      if (LEAVES.has(id)) return e;
      const childSlots = CHILDREN.get(id);
      if (!childSlots) throw new UnsupportedModule(`function "${finfo.name}" uses ${idNames.get(id) ?? `expression #${id}`}, which the dirty-log rewriter does not support`);
      let info = b.getExpressionInfo(e) as unknown as Info;
      const isLaneStore = id === b.SIMDLoadStoreLaneId && info.isStore === true;
      const isAccess = id === b.StoreId || id === b.AtomicRMWId || id === b.AtomicCmpxchgId || isLaneStore;
      const isBulk = id === b.MemoryFillId || id === b.MemoryCopyId || id === b.MemoryInitId;
      const childDepth = isAccess || isBulk ? depth + 1 : depth;
      let changed = false;
      for (const slot of childSlots) {
        if ('set' in slot) {
          const c = info[slot.key] as Ref;
          if (!c) continue;
          const nc = visit(c, childDepth);
          if (nc !== c) {
            raw[slot.set]!(e, nc);
            changed = true;
          }
        } else {
          const list = info[slot.key] as Ref[];
          for (let i = 0; i < list.length; i++) {
            const c = list[i]!;
            const nc = visit(c, childDepth);
            if (nc !== c) {
              raw[slot.setAt]!(e, i, nc);
              changed = true;
            }
          }
        }
      }
      if (!isAccess && !isBulk) return e;
      // An access whose operands never complete never executes: leave it (and its type) alone.
      if (info.type === b.unreachable) return e;
      if (changed) info = b.getExpressionInfo(e) as unknown as Info;
      const offset = (info.offset as number) >>> 0;
      switch (id) {
        case b.StoreId:
          stats.stores++;
          return instrumentAccess(e, info, depth, '_BinaryenStoreSetPtr', info.bytes as number, offset);
        case b.AtomicRMWId:
          stats.atomicRmw++;
          return instrumentAccess(e, info, depth, '_BinaryenAtomicRMWSetPtr', info.bytes as number, offset);
        case b.AtomicCmpxchgId:
          stats.atomicCmpxchg++;
          return instrumentAccess(e, info, depth, '_BinaryenAtomicCmpxchgSetPtr', info.bytes as number, offset);
        case b.SIMDLoadStoreLaneId: {
          stats.simdLaneStores++;
          const bytes = LANE_BYTES.get(info.op as number);
          if (bytes === undefined) throw new UnsupportedModule(`unknown SIMD lane store op ${String(info.op)}`);
          return instrumentAccess(e, info, depth, '_BinaryenSIMDLoadStoreLaneSetPtr', bytes, offset);
        }
        case b.MemoryFillId:
          stats.bulkOps++;
          return instrumentBulk(e, info, depth, 'MemoryFill', 'value');
        case b.MemoryCopyId:
          stats.bulkOps++;
          return instrumentBulk(e, info, depth, 'MemoryCopy', 'source');
        default:
          stats.bulkOps++;
          return instrumentBulk(e, info, depth, 'MemoryInit', 'offset');
      }
    };

    const body = finfo.body;
    const nb = visit(body, 0);
    if (nb !== body) raw._BinaryenFunctionSetBody!(f, nb);
  }

  // __ftvm_mark_range(dest, len): bytemap[dest>>12 .. (dest+len-1)>>12] = 1; len 0 marks nothing.
  // Called only after the bulk op succeeded, so dest + len <= memory size and dest + len - 1 cannot wrap.
  const D = 0;
  const N = 1;
  const first = () => m.i32.shr_u(m.local.get(D, b.i32), m.i32.const(PAGE_SHIFT));
  const lastPage = m.i32.shr_u(m.i32.sub(m.i32.add(m.local.get(D, b.i32), m.local.get(N, b.i32)), m.i32.const(1)), m.i32.const(PAGE_SHIFT));
  m.addFunction(
    markRange,
    b.createType([b.i32, b.i32]),
    b.none,
    [],
    m.if(
      m.local.get(N, b.i32),
      m.memory.fill(
        BYTEMAP_BASE === 0 ? first() : m.i32.add(first(), m.i32.const(BYTEMAP_BASE)),
        m.i32.const(1),
        m.i32.add(m.i32.sub(lastPage, first()), m.i32.const(1)),
      ),
    ),
  );
  return stats;
}
