/**
 * Strict field-by-field validation of headers, used on decode (untrusted bytes) and on
 * encode (a caller's bug becomes a coded error here, not a confused peer).
 * Validation returns a fresh object holding exactly the schema's fields.
 */
import { malformed } from './errors.js';
import { unpackConns } from './packed.js';
import {
  DIGEST_BYTES, LINKS, MAX_CONNS, MAX_GLOBALS, MAX_OPAQUE_DEPTH, MAX_SCRUB_PAGES, NONCE_BYTES,
  PAGE_HASH_BYTES, PROOF_BYTES, ROLES,
  type Message, type MessageType,
} from './messages.js';

type Check = (v: unknown, path: string) => unknown;
interface FieldSpec { check: Check; optional?: boolean }

const fail = (path: string, want: string, v: unknown): never => {
  throw malformed(`${path} must be ${want}, got ${describe(v)}`);
};

/**
 * Field paths ("ckpt_begin.devices.conns[3].conn") are only for error messages, and building
 * one string per field of every message was most of the cost of validating a checkpoint
 * header or a commit (one entry per connection). So a message is validated first without
 * them (every path is ''), and only a message that fails is validated again with them.
 */
let withPaths = false;
const at = (p: string, i: number): string => (withPaths ? `${p}[${i}]` : '');
const dot = (p: string, k: string): string => (withPaths ? `${p}.${k}` : '');

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (typeof v === 'string') return `string(${v.length})`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeof v;
}

const uint: Check = (v, p) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(p, 'a safe non-negative integer', v));
const bool: Check = (v, p) => (typeof v === 'boolean' ? v : fail(p, 'a boolean', v));
const str = (max: number): Check => (v, p) => (typeof v === 'string' && v.length <= max ? v : fail(p, `a string of at most ${max} chars`, v));
const errCode: Check = (v, p) => (typeof v === 'string' && /^FTVM_ERR_[A-Z0-9_]{1,56}$/.test(v) ? v : fail(p, 'an FTVM_ERR_* code', v));
const oneOf = (values: readonly string[]): Check => (v, p) => (typeof v === 'string' && values.includes(v) ? v : fail(p, `one of ${values.join('|')}`, v));
const bytes = (len: number): Check => (v, p) =>
  v instanceof Uint8Array && v.length === len ? new Uint8Array(v) : fail(p, `${len} bytes`, v);
const bytesMax = (max: number): Check => (v, p) =>
  v instanceof Uint8Array && v.length <= max ? new Uint8Array(v) : fail(p, `at most ${max} bytes`, v);

const I64_MIN = -(1n << 63n);
const U64_MAX = (1n << 64n) - 1n;
const globals: Check = (v, p) => {
  if (!Array.isArray(v) || v.length > MAX_GLOBALS) return fail(p, `an array of at most ${MAX_GLOBALS} values`, v);
  return v.map((g, i) => {
    if (typeof g === 'number') return g;
    if (typeof g === 'bigint' && g >= I64_MIN && g <= U64_MAX) return g;
    return fail(at(p, i), 'a number or a 64-bit bigint', g);
  });
};

/** A packed connection table (packed.ts) on the wire; ConnOffsets[] once validated. */
const conns: Check = (v, p) => unpackConns(v, p || 'conns');

const resendConns: Check = (v, p) => {
  if (!Array.isArray(v) || v.length > MAX_CONNS) return fail(p, `an array of at most ${MAX_CONNS} entries`, v);
  return v.map((c, i) => object(RESEND_FIELDS, c, at(p, i)));
};

/** Plain msgpack data only: no Date/Map/Set/RegExp/Error a msgpack extension could produce. */
const opaque: Check = (v, p) => opaqueAt(v, p, 0);
function opaqueAt(v: unknown, p: string, depth: number): unknown {
  if (depth > MAX_OPAQUE_DEPTH) return fail(p, `nested at most ${MAX_OPAQUE_DEPTH} levels`, v);
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string') return v;
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map((x, i) => opaqueAt(x, at(p, i), depth + 1));
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return fail(p, 'plain data', v);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (k === '__proto__') return fail(p, 'plain data without __proto__ keys', v);
      // Like JSON: an undefined property is an absent one (msgpack has no undefined).
      if (x === undefined) continue;
      out[k] = opaqueAt(x, dot(p, k), depth + 1);
    }
    return out;
  }
  return fail(p, 'plain data', v);
}

const req = (check: Check): FieldSpec => ({ check });
const opt = (check: Check): FieldSpec => ({ check, optional: true });

const RESEND_FIELDS: Record<string, FieldSpec> = { conn: req(uint), offset: req(uint) };

const term = req(uint);
const epoch = req(uint);
const NODE_ID = str(128);

/** A checkpoint's opening and closing fields: ckpt_begin and ckpt_end, and both in a one-frame ckpt. */
const CKPT_BEGIN = {
  term, epoch, memBytes: req(uint), pageCount: req(uint), globals: req(globals), devices: req(opaque), clock: opt(opaque), full: req(bool),
};
const CKPT_END = { term, epoch, pageCount: req(uint), digest: req(bytes(DIGEST_BYTES)), wireBytes: req(uint), rawBytes: req(uint) };

/** One entry per message type; `satisfies` keeps it in step with the union. */
export const SCHEMAS = {
  challenge: { version: req(uint), nonce: req(bytes(NONCE_BYTES)) },
  hello: {
    version: req(uint), role: req(oneOf(ROLES)), link: req(oneOf(LINKS)), nodeId: req(NODE_ID), term, epoch: opt(uint),
    guestDigest: opt(bytes(DIGEST_BYTES)), nonce: req(bytes(NONCE_BYTES)), proof: req(bytes(PROOF_BYTES)),
  },
  welcome: { nodeId: req(NODE_ID), role: req(oneOf(ROLES)), term, epoch, proof: req(bytes(PROOF_BYTES)) },
  reject: { code: req(errCode), message: req(str(1024)) },
  ckpt_begin: { ...CKPT_BEGIN, disk: opt(opaque) },
  ckpt_pages: { term, epoch, seq: req(uint), count: req(uint) },
  ckpt_blocks: { term, epoch, seq: req(uint), count: req(uint) },
  ckpt_end: CKPT_END,
  ckpt: { ...CKPT_BEGIN, ...CKPT_END },
  ack: { term, epoch, digest: req(bytes(DIGEST_BYTES)), proxied: opt(bool) },
  nack: { term, epoch, code: req(errCode), message: req(str(1024)) },
  heartbeat: { term, epoch, sentAtMs: req(uint) },
  scrub_req: { term, epoch, fromPage: req(uint), count: req(uint) },
  scrub_res: { term, epoch, fromPage: req(uint), count: req(uint), hashes: req(bytesMax(MAX_SCRUB_PAGES * PAGE_HASH_BYTES)) },
  resync_req: { term, fromPage: req(uint), count: req(uint) },
  block_req: { term, fromBlock: req(uint), count: req(uint) },
  block_map: { term, epoch, totalBlocks: req(uint), count: req(uint) },
  open: { term, conn: req(uint), remote: opt(str(256)) },
  input: { term, conn: req(uint), offset: req(uint) },
  output: { term, conn: req(uint), epoch, offset: req(uint) },
  close: { term, conn: req(uint), epoch: opt(uint), offset: opt(uint) },
  commit: { term, epoch, acked: req(bool), maxConnId: req(uint), conns: req(conns) },
  confirm: { term, epoch },
  resend: { term, conns: req(resendConns) },
  promote: { term, fromEpoch: opt(uint), reason: opt(str(256)) },
  promote_deny: { term, reason: req(str(256)) },
  fence: { term },
  handover: { term, epoch, to: req(str(256)), ready: req(bool), heldMs: req(uint) },
  offsets: { term, epoch, maxConnId: req(uint), conns: req(conns) },
  rollback: { term, epoch, conn: opt(uint), code: req(errCode), maxConnId: req(uint), conns: req(conns) },
  status: { role: req(oneOf(ROLES)), term, epoch, state: req(str(64)), detail: opt(opaque) },
} satisfies Record<MessageType, Record<string, FieldSpec>>;

function object(fields: Record<string, FieldSpec>, v: unknown, path: string, skip?: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) return fail(path, 'a map', v);
  const src = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(src)) {
    if (key === skip) continue;
    if (!Object.hasOwn(fields, key)) throw malformed(`${path} has unknown field "${key}"`);
  }
  for (const [key, spec] of Object.entries(fields)) {
    const value = src[key];
    if (value === undefined) {
      if (!spec.optional) throw malformed(`${dot(path, key)} is missing`);
      continue;
    }
    out[key] = spec.check(value, dot(path, key));
  }
  return out;
}

/** Cross-field rules the per-field checks cannot express. */
function crossCheck(m: Message): void {
  if (m.t === 'scrub_req' && (m.count < 1 || m.count > MAX_SCRUB_PAGES)) {
    throw malformed(`scrub_req.count must be 1..${MAX_SCRUB_PAGES}, got ${m.count}`);
  }
  if (m.t === 'scrub_res' && (m.count > MAX_SCRUB_PAGES || m.hashes.length !== m.count * PAGE_HASH_BYTES)) {
    throw malformed(`scrub_res.hashes must be count*${PAGE_HASH_BYTES} bytes (count ${m.count} <= ${MAX_SCRUB_PAGES}), got ${m.hashes.length}`);
  }
  // A disk is at most 4 GiB of 4 KiB blocks.
  if (m.t === 'block_map' && (m.totalBlocks > 1 << 20 || m.count > m.totalBlocks)) {
    throw malformed(`block_map: totalBlocks must be <= ${1 << 20} and count <= totalBlocks, got ${m.totalBlocks} and ${m.count}`);
  }
}

/** Validates an untrusted header (or an outgoing message) and returns a clean copy. */
export function validateMessage(v: unknown): Message {
  try {
    return validateOnce(v);
  } catch (e) {
    // Again with field paths, for the message (see withPaths).
    withPaths = true;
    try {
      validateOnce(v);
    } finally {
      withPaths = false;
    }
    throw e;
  }
}

function validateOnce(v: unknown): Message {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail('header', 'a map', v);
  const t = (v as { t?: unknown }).t;
  if (typeof t !== 'string' || !Object.hasOwn(SCHEMAS, t)) {
    throw malformed(`unknown message type ${typeof t === 'string' ? JSON.stringify(t.slice(0, 32)) : describe(t)}`);
  }
  const fields = (SCHEMAS as Record<string, Record<string, FieldSpec>>)[t]!;
  const out = object(fields, v, t, 't') as Record<string, unknown>;
  const msg = { t, ...out } as Message;
  crossCheck(msg);
  return msg;
}
