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
import { FUEL_GLOBAL, FUEL_IMPORT } from './fuel.js';

type Ref = number;
type Raw = Record<string, (...args: number[]) => number>;
const b = binaryen;
const raw = binaryen as unknown as Raw;

export const MARK_RANGE_FUNCTION = '__ftvm_mark_range';

export interface RewriteStats {
  functions: number;
  /** Plain and atomic stores of every width, v128 stores included. */
  stores: number;
  /** Runs of >= 2 adjacent stores that share one set of marks (see coalesce). */
  storeGroups: number;
  atomicRmw: number;
  atomicCmpxchg: number;
  simdLaneStores: number;
  bulkOps: number;
  /** try blocks: a guest with one could catch the fuel's throw, so it cannot run on an inline vCPU. */
  tries: number;
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

/**
 * Unary and binary ops that can trap: a value operand using one cannot join a store group.
 * Two sets: binaryen numbers unary and binary ops independently (AddInt64 == TruncSFloat32ToInt32).
 */
const opSet = (names: string[]) => new Set<number>(names.map((k) => (binaryen as unknown as Record<string, number>)[k]!));
const TRAPPING_UNARY = opSet([
  'TruncSFloat32ToInt32', 'TruncSFloat32ToInt64', 'TruncUFloat32ToInt32', 'TruncUFloat32ToInt64',
  'TruncSFloat64ToInt32', 'TruncSFloat64ToInt64', 'TruncUFloat64ToInt32', 'TruncUFloat64ToInt64',
]);
const TRAPPING_BINARY = opSet(['DivSInt32', 'DivUInt32', 'RemSInt32', 'RemUInt32', 'DivSInt64', 'DivUInt64', 'RemSInt64', 'RemUInt64']);

interface Access { offset: number; bytes: number }

/** The pointer operand of a store run: a local or a global (AS's shadow-stack pointer). */
type Base = { local: number } | { global: string };
const sameBase = (a: Base, c: Base) => ('local' in a ? 'local' in c && a.local === c.local : 'global' in c && a.global === c.global);

interface GroupMember {
  expr: Ref;
  base: Base;
  offset: number;
  bytes: number;
  /** Loads from the base inside the value (they can trap). */
  loads: Access[];
  /** The value is not `simple`: allowed for the first store of a run only. */
  complex: boolean;
}

function baseOf(ptr: Ref): Base | undefined {
  const id = b.getExpressionId(ptr);
  if (id === b.LocalGetId) return { local: (b.getExpressionInfo(ptr) as unknown as { index: number }).index };
  if (id === b.GlobalGetId) return { global: (b.getExpressionInfo(ptr) as unknown as { name: string }).name };
  return undefined;
}

/**
 * A plain store `store offset=o (local.get x | global.get g) value` as a run member.
 * Later members need a `simple` value: it can neither trap (except by loads from the base,
 * which the run's probe covers), branch, call, write memory nor write the base. The first
 * member's value runs before any store of the run, so it may do anything except change
 * the base (`complex`).
 */
function groupCandidate(e: Ref, first: boolean): GroupMember | undefined {
  if (b.getExpressionId(e) !== b.StoreId) return undefined;
  const info = b.getExpressionInfo(e) as unknown as Info;
  if (info.isAtomic || info.type !== b.none) return undefined;
  const base = baseOf(info.ptr as Ref);
  if (!base) return undefined;
  const offset = (info.offset as number) >>> 0;
  const bytes = info.bytes as number;
  if (offset + bytes > 2 ** 32) return undefined;
  const loads: Access[] = [];
  if (simpleValue(info.value as Ref, base, loads)) return { expr: e, base, offset, bytes, loads, complex: false };
  if (!first || mayChangeBase(info.value as Ref, base)) return undefined;
  return { expr: e, base, offset, bytes, loads: [], complex: true };
}

function simpleValue(e: Ref, base: Base, loads: Access[]): boolean {
  const id = b.getExpressionId(e);
  switch (id) {
    case b.LocalGetId:
    case b.ConstId:
    case b.GlobalGetId:
      return true;
    case b.LocalSetId: {
      const i = b.getExpressionInfo(e) as unknown as { index: number; value: Ref };
      return !('local' in base && i.index === base.local) && simpleValue(i.value, base, loads);
    }
    case b.UnaryId: {
      const i = b.getExpressionInfo(e) as unknown as { op: number; value: Ref };
      return !TRAPPING_UNARY.has(i.op) && simpleValue(i.value, base, loads);
    }
    case b.BinaryId: {
      const i = b.getExpressionInfo(e) as unknown as { op: number; left: Ref; right: Ref };
      return !TRAPPING_BINARY.has(i.op) && simpleValue(i.left, base, loads) && simpleValue(i.right, base, loads);
    }
    case b.SelectId: {
      const i = b.getExpressionInfo(e) as unknown as { ifTrue: Ref; ifFalse: Ref; condition: Ref };
      return simpleValue(i.ifTrue, base, loads) && simpleValue(i.ifFalse, base, loads) && simpleValue(i.condition, base, loads);
    }
    case b.LoadId: {
      const i = b.getExpressionInfo(e) as unknown as Info;
      const lb = baseOf(i.ptr as Ref);
      if (i.isAtomic || !lb || !sameBase(lb, base)) return false;
      const offset = (i.offset as number) >>> 0;
      if (offset + (i.bytes as number) > 2 ** 32) return false;
      loads.push({ offset, bytes: i.bytes as number });
      return true;
    }
    default:
      return false;
  }
}

/** Conservative: true when evaluating `e` could change the base (a local.set of it; for a global, a global.set or any call). */
function mayChangeBase(e: Ref, base: Base): boolean {
  const id = b.getExpressionId(e);
  if (LEAVES.has(id)) return false;
  const slotsOf = CHILDREN.get(id);
  if (!slotsOf) return true;
  const info = b.getExpressionInfo(e) as unknown as Info;
  if ('local' in base) {
    if (id === b.LocalSetId && info.index === base.local) return true;
  } else if (id === b.GlobalSetId || id === b.CallId || id === b.CallIndirectId) return true;
  for (const slot of slotsOf) {
    const v = info[slot.key];
    const list = Array.isArray(v) ? (v as Ref[]) : v ? [v as Ref] : [];
    for (const c of list) if (mayChangeBase(c, base)) return true;
  }
  return false;
}

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
export function rewriteModule(m: binaryen.Module, precise: boolean, coalesce: boolean, fuel = true): RewriteStats {
  const stats: RewriteStats = { functions: 0, stores: 0, storeGroups: 0, atomicRmw: 0, atomicCmpxchg: 0, simdLaneStores: 0, bulkOps: 0, tries: 0 };
  let markRange = MARK_RANGE_FUNCTION;
  for (let n = 1; m.getFunction(markRange) !== 0; n++) markRange = `${MARK_RANGE_FUNCTION}_${n}`;

  const markAt = (pageExpr: Ref): Ref => m.i32.store8(BYTEMAP_BASE, 1, pageExpr, m.i32.const(1));
  const pageOf = (addr: Ref): Ref => m.i32.shr_u(addr, m.i32.const(PAGE_SHIFT));
  /** ea + k where ea = local p; k is an unsigned static offset, wrapped like the access computes it. */
  const addrPlus = (p: number, k: number): Ref => (k === 0 ? m.local.get(p, b.i32) : m.i32.add(m.local.get(p, b.i32), m.i32.const(k | 0)));

  // Fuel: global and import named apart from the guest's own (a clash refuses the module).
  if (fuel && (m.getGlobal(FUEL_GLOBAL) !== 0 || m.getExport(FUEL_GLOBAL) !== 0)) throw new UnsupportedModule(`the module already names "${FUEL_GLOBAL}"`);
  const refuel = '__ftvm_refuel';
  if (fuel && m.getFunction(refuel) !== 0) throw new UnsupportedModule(`the module already names "${refuel}"`);
  if (fuel) {
    m.addGlobal(FUEL_GLOBAL, b.i32, true, m.i32.const(0));
    m.addGlobalExport(FUEL_GLOBAL, FUEL_GLOBAL);
    m.addFunctionImport(refuel, FUEL_IMPORT.module, FUEL_IMPORT.name, b.none, b.i32);
  }
  /** fuel -= 1; if fuel < 0: fuel = refuel() (which may throw). */
  const burn = (): Ref =>
    m.block(null, [
      m.global.set(FUEL_GLOBAL, m.i32.sub(m.global.get(FUEL_GLOBAL, b.i32), m.i32.const(1))),
      m.if(m.i32.lt_s(m.global.get(FUEL_GLOBAL, b.i32), m.i32.const(0)), m.global.set(FUEL_GLOBAL, m.call(refuel, [], b.i32))),
    ], b.none);

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
      const size = info.size as Ref;
      const constSize = b.getExpressionId(size) === b.ConstId ? (b.getExpressionInfo(size) as unknown as { value: number }).value >>> 0 : -1;
      // Zero length writes nothing (the op may still trap on its bounds check).
      if (constSize === 0) return e;
      const d = temp('d', b.i32, depth);
      const s = temp('s', b.i32, depth);
      const secondSetter = `_Binaryen${kind}Set${second[0]!.toUpperCase()}${second.slice(1)}`;
      const pre = [m.local.set(d, info.dest as Ref), m.local.set(s, info[second] as Ref)];
      raw[`_Binaryen${kind}SetDest`]!(e, m.local.get(d, b.i32));
      raw[secondSetter]!(e, m.local.get(s, b.i32));
      if (constSize > 0 && constSize <= 4096) {
        // A constant length of at most one page spans at most two pages: inline marks, no call.
        const marks = [markAt(pageOf(m.local.get(d, b.i32)))];
        if (constSize > 1) marks.push(markAt(pageOf(addrPlus(d, constSize - 1))));
        return m.block(null, [...pre, e, ...marks], b.none);
      }
      const n = temp('n', b.i32, depth);
      pre.push(m.local.set(n, size));
      raw[`_Binaryen${kind}SetSize`]!(e, m.local.get(n, b.i32));
      const mark = m.call(markRange, [m.local.get(d, b.i32), m.local.get(n, b.i32)], b.none);
      return m.block(null, [...pre, e, mark], b.none);
    };

    /**
     * Adjacent stores `store offset=o_i (base) v_i` in one block, base a local or a global,
     * whose bytes span at most one page boundary (max end - min offset <= 4096) share two
     * marks placed after the last one: page(base + min offset) and page(base + max end - 1),
     * each the page of a byte some store of the run wrote, so the marks stay exact. Values
     * after the first cannot trap, branch, call or change the base (groupCandidate). Loads
     * from the base inside them and the later stores could still trap after an earlier
     * store wrote unmarked bytes, so a probe load of the run's highest byte runs right
     * before the first store: a run that would trap part-way traps before writing anything.
     * Returns the number of children consumed (0: no run starts at i).
     */
    const tryGroup = (e: Ref, children: Ref[], i: number, depth: number): number => {
      const first = groupCandidate(children[i]!, true);
      if (!first) return 0;
      const members: GroupMember[] = [first];
      let minOff = first.offset;
      let maxEnd = first.offset + first.bytes;
      let maxStart = first.offset;
      for (let j = i + 1; j < children.length; j++) {
        const c = groupCandidate(children[j]!, false);
        if (!c || !sameBase(c.base, first.base)) break;
        const lo = Math.min(minOff, c.offset);
        const hi = Math.max(maxEnd, c.offset + c.bytes);
        if (hi - lo > 4096) break;
        members.push(c);
        minOff = lo;
        maxEnd = hi;
        maxStart = Math.max(maxStart, c.offset);
      }
      if (members.length < 2) return 0;
      const baseExpr = (): Ref => ('local' in first.base ? m.local.get(first.base.local, b.i32) : m.global.get(first.base.global, b.i32));
      // Highest byte any access after the first store touches.
      let probeEnd = 0;
      for (const mem of members.slice(1)) {
        probeEnd = Math.max(probeEnd, mem.offset + mem.bytes);
        for (const l of mem.loads) probeEnd = Math.max(probeEnd, l.offset + l.bytes);
      }
      const probe = probeEnd > first.offset + first.bytes ? m.drop(m.i32.load8_u(probeEnd - 1, 1, baseExpr())) : 0;
      const out: Ref[] = [];
      if (first.complex) {
        // The first value may hold stores of its own (instrumented here) and must run before the probe.
        const sinfo = b.getExpressionInfo(first.expr) as unknown as Info;
        let v = visit(sinfo.value as Ref, depth + 1);
        if (probe) {
          const vt = b.getExpressionType(v);
          const t = temp('v', vt, depth);
          v = m.block(null, [m.local.set(t, v), probe, m.local.get(t, vt)], vt);
        }
        raw._BinaryenStoreSetValue!(first.expr, v);
      } else if (probe) out.push(probe);
      out.push(...members.map((mem) => mem.expr));
      const at = (k: number): Ref => (k === 0 ? baseExpr() : m.i32.add(baseExpr(), m.i32.const(k | 0)));
      out.push(markAt(pageOf(at(minOff))));
      const last = precise ? maxEnd - 1 : maxStart;
      if (last !== minOff) out.push(markAt(pageOf(at(last))));
      raw._BinaryenBlockSetChildAt!(e, i, m.block(null, out, b.none));
      for (let j = 1; j < members.length; j++) raw._BinaryenBlockSetChildAt!(e, i + j, m.nop());
      stats.stores += members.length;
      stats.storeGroups++;
      return members.length;
    };

    const visit = (e: Ref, depth: number): Ref => {
      if (e === 0) return e;
      const id = b.getExpressionId(e);
      if (LEAVES.has(id)) return e;
      if (id === b.BlockId && coalesce) {
        const children = (b.getExpressionInfo(e) as unknown as { children: Ref[] }).children;
        for (let i = 0; i < children.length; ) {
          const used = tryGroup(e, children, i, depth);
          if (used > 0) {
            i += used;
            continue;
          }
          const c = children[i]!;
          const nc = visit(c, depth);
          if (nc !== c) raw._BinaryenBlockSetChildAt!(e, i, nc);
          i++;
        }
        return e;
      }
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
      if (id === b.TryId) stats.tries++;
      if (id === b.LoopId && fuel) {
        // Each iteration burns fuel: the loop's body becomes (burn; body) with the body's type.
        const lb = (b.getExpressionInfo(e) as unknown as { body: Ref }).body;
        raw._BinaryenLoopSetBody!(e, m.block(null, [burn(), lb], b.getExpressionType(lb)));
        return e;
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
    // Function entries burn fuel too: recursion without loops is bounded like a loop.
    if (fuel) raw._BinaryenFunctionSetBody!(f, m.block(null, [burn(), nb], b.getExpressionType(nb)));
    else if (nb !== body) raw._BinaryenFunctionSetBody!(f, nb);
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
