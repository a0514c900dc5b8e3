/**
 * The net-link contract between the proxy and a node, as pure functions: a node's
 * message becomes one ProxyCore event, a ProxyCore action becomes one message to a
 * node. The node runtime follows the same table (see README "Net link").
 */
import type { CommitEvent, NodeHello, OutputEvent, ProxyAction, StateOffsets } from '@ftvm/core';
import { MAX_CONNS, type Message, type Opaque } from '@ftvm/protocol';
import { PROXY_ERR, ProxyError } from './errors.js';

/** What one node message means to the proxy core. */
export type NodeEvent =
  | { kind: 'hello'; hello: NodeHello }
  | { kind: 'status'; term: number; committedEpoch: number }
  | { kind: 'output'; ev: OutputEvent }
  | { kind: 'commit'; ev: CommitEvent }
  | { kind: 'promoteRequest'; term: number; committedEpoch: number }
  | { kind: 'promoted'; term: number; offsets: StateOffsets }
  | { kind: 'promoteRefused'; term: number; reason: string }
  /** The active primary asks for a planned switchover to the node at `to` (ready: false = dial it only). */
  | { kind: 'handover'; term: number; epoch: number; to: string; ready: boolean; heldMs: number }
  /** The active primary's guest faulted and was rolled back to `offsets` (Rollback message). */
  | { kind: 'rolledBack'; term: number; epoch: number; conn: number | undefined; code: string; offsets: StateOffsets }
  /** Understood, nothing for the core to do (`why` is for debug logs). */
  | { kind: 'ignore'; why: string };

const bad = (message: string): ProxyError => new ProxyError(PROXY_ERR.BAD_MESSAGE, message);

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function field(o: Record<string, Opaque>, key: string, where: string): number {
  const v = o[key];
  if (!isCount(v)) throw bad(`${where}.${key} must be a safe non-negative integer`);
  return v;
}

/** Reads `StateOffsets` out of an opaque value (a primary's `status.detail.live`). */
export function parseStateOffsets(v: Opaque | undefined, where: string): StateOffsets {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
    throw bad(`${where} must be a map {epoch, maxConnId, conns}`);
  }
  const o = v as Record<string, Opaque>;
  const epoch = field(o, 'epoch', where);
  const maxConnId = field(o, 'maxConnId', where);
  const list = o.conns;
  if (!Array.isArray(list)) throw bad(`${where}.conns must be an array`);
  if (list.length > MAX_CONNS) throw bad(`${where}.conns has ${list.length} entries (at most ${MAX_CONNS})`);
  const seen = new Set<number>();
  const conns = list.map((c, i) => {
    if (c === null || typeof c !== 'object' || Array.isArray(c) || c instanceof Uint8Array) throw bad(`${where}.conns[${i}] must be a map`);
    const e = c as Record<string, Opaque>;
    const conn = field(e, 'conn', `${where}.conns[${i}]`);
    if (seen.has(conn)) throw bad(`${where}.conns lists connection ${conn} twice`);
    seen.add(conn);
    if (typeof e.closed !== 'boolean') throw bad(`${where}.conns[${i}].closed must be a boolean`);
    return {
      conn,
      inConsumed: field(e, 'inConsumed', `${where}.conns[${i}]`),
      outProduced: field(e, 'outProduced', `${where}.conns[${i}]`),
      closed: e.closed,
    };
  });
  return { epoch, maxConnId, conns };
}

/** Throws FTVM_ERR_PROXY_BAD_MESSAGE for a message a node must not send the proxy. */
export function translateNodeMessage(msg: Message, payload: Uint8Array): NodeEvent {
  switch (msg.t) {
    case 'status':
      if (msg.role === 'primary') {
        const d = msg.detail;
        const live = d !== null && typeof d === 'object' && !Array.isArray(d) && !(d instanceof Uint8Array) ? d.live : undefined;
        return { kind: 'hello', hello: { role: 'primary', term: msg.term, live: parseStateOffsets(live, 'status.detail.live') } };
      }
      return { kind: 'hello', hello: { role: 'secondary', term: msg.term, committedEpoch: msg.epoch, ...imageTermOf(msg.detail) } };
    case 'heartbeat':
      return { kind: 'status', term: msg.term, committedEpoch: msg.epoch };
    case 'output':
      return { kind: 'output', ev: { term: msg.term, epoch: msg.epoch, conn: msg.conn, offset: msg.offset, bytes: payload } };
    case 'commit': {
      const offsets = { epoch: msg.epoch, maxConnId: msg.maxConnId, conns: msg.conns };
      checkUnique(offsets, 'commit.conns');
      return { kind: 'commit', ev: { term: msg.term, epoch: msg.epoch, acked: msg.acked, offsets } };
    }
    case 'promote':
      return { kind: 'promoteRequest', term: msg.term, committedEpoch: msg.fromEpoch ?? 0 };
    case 'offsets': {
      const offsets = { epoch: msg.epoch, maxConnId: msg.maxConnId, conns: msg.conns };
      checkUnique(offsets, 'offsets.conns');
      return { kind: 'promoted', term: msg.term, offsets };
    }
    case 'rollback': {
      const offsets = { epoch: msg.epoch, maxConnId: msg.maxConnId, conns: msg.conns };
      checkUnique(offsets, 'rollback.conns');
      return { kind: 'rolledBack', term: msg.term, epoch: msg.epoch, conn: msg.conn, code: msg.code, offsets };
    }
    case 'close':
      // The guest's close reaches the proxy through the committed offsets (closed: true).
      return { kind: 'ignore', why: `close of connection ${msg.conn} (applied at its commit)` };
    case 'fence':
      return { kind: 'ignore', why: `fence to term ${msg.term} from a node (the proxy creates terms)` };
    case 'promote_deny':
      return { kind: 'promoteRefused', term: msg.term, reason: msg.reason };
    case 'handover':
      if (!/^wss?:\/\/[^/\s]+(\/\S*)?$/.test(msg.to)) throw bad(`handover.to must be a ws:// URL, got '${msg.to.slice(0, 64)}'`);
      return { kind: 'handover', term: msg.term, epoch: msg.epoch, to: msg.to, ready: msg.ready, heldMs: msg.heldMs };
    default:
      throw bad(`a node must not send ${msg.t} to the proxy`);
  }
}

/**
 * A secondary may name the term of the primary that built its image in
 * `status.detail.imageTerm`; without it the core uses the status term.
 */
function imageTermOf(detail: Opaque | undefined): { imageTerm?: number } {
  if (detail === null || typeof detail !== 'object' || Array.isArray(detail) || detail instanceof Uint8Array) return {};
  const t = detail.imageTerm;
  if (t === undefined) return {};
  if (!isCount(t)) throw bad('status.detail.imageTerm must be a safe non-negative integer');
  return { imageTerm: t };
}

function checkUnique(o: StateOffsets, where: string): void {
  const seen = new Set<number>();
  for (const c of o.conns) {
    if (seen.has(c.conn)) throw bad(`${where} lists connection ${c.conn} twice`);
    seen.add(c.conn);
  }
}

/** The net-link message an action sends, or undefined for an action that sends nothing. */
export function messageForAction(a: ProxyAction): { node: string; msg: Message; payload?: Uint8Array } | undefined {
  switch (a.type) {
    case 'forwardOpen':
      return { node: a.node, msg: { t: 'open', term: a.term, conn: a.conn } };
    case 'forwardInput':
      return { node: a.node, msg: { t: 'input', term: a.term, conn: a.conn, offset: a.offset }, payload: a.bytes };
    case 'forwardClose':
      return { node: a.node, msg: { t: 'close', term: a.term, conn: a.conn, offset: a.offset } };
    case 'sendPromote':
      return { node: a.node, msg: { t: 'promote', term: a.term } };
    case 'denyPromote':
    case 'denyHandover':
      return { node: a.node, msg: { t: 'promote_deny', term: a.term, reason: a.reason.slice(0, 256) } };
    case 'sendFence':
      return { node: a.node, msg: { t: 'fence', term: a.term } };
    case 'confirmCommit':
      return { node: a.node, msg: { t: 'confirm', term: a.term, epoch: a.epoch } };
    case 'activeChanged':
      if (a.node === undefined || a.resendOutputFrom.length === 0) return undefined;
      return { node: a.node, msg: { t: 'resend', term: a.term, conns: a.resendOutputFrom.map((r) => ({ conn: r.conn, offset: r.offset })) } };
    default:
      return undefined;
  }
}
