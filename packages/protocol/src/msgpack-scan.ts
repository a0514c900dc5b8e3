/**
 * A structural pre-check of an untrusted msgpack header, before msgpackr sees it:
 * exactly one value spanning the whole header, nesting at most `maxDepth` levels, no
 * extension types (ftvm never sends any: they would decode into Dates, Errors, ...).
 * It is iterative and O(bytes): a claimed count of 2^32 items fails at the end of the
 * data, after reading at most the header. msgpackr is then only given well-formed
 * input, whose errors would otherwise be slow (~0.1 ms each) and recursion-bound.
 */
import { malformed } from './errors.js';

export function scanMsgpack(b: Uint8Array, maxDepth: number): void {
  const end = b.length;
  let at = 0;
  // Items still to read at each open level; the root level holds exactly one value.
  const stack: number[] = [1];
  const need = (n: number): void => {
    if (n > end - at) throw malformed(`header msgpack is cut short at byte ${at}`);
  };
  const u8 = (): number => b[at++]!;
  const u16 = (): number => { const v = (b[at]! << 8) | b[at + 1]!; at += 2; return v; };
  const u32 = (): number => { const v = ((b[at]! << 24) >>> 0) + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!); at += 4; return v; };
  const open = (items: number): void => {
    if (items === 0) return;
    if (stack.length >= maxDepth) throw malformed(`header msgpack nests deeper than ${maxDepth} levels`);
    stack.push(items);
  };
  while (stack.length > 0) {
    const top = stack.length - 1;
    if (stack[top] === 0) {
      stack.pop();
      continue;
    }
    stack[top]--;
    need(1);
    const t = u8();
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) continue;
    if (t >= 0x80 && t <= 0x8f) { open(2 * (t & 0x0f)); continue; }
    if (t >= 0x90 && t <= 0x9f) { open(t & 0x0f); continue; }
    let skip: number;
    switch (t) {
      case 0xc4: case 0xd9: need(1); skip = u8(); break;
      case 0xc5: case 0xda: need(2); skip = u16(); break;
      case 0xc6: case 0xdb: need(4); skip = u32(); break;
      case 0xca: skip = 4; break;
      case 0xcb: skip = 8; break;
      case 0xcc: case 0xd0: skip = 1; break;
      case 0xcd: case 0xd1: skip = 2; break;
      case 0xce: case 0xd2: skip = 4; break;
      case 0xcf: case 0xd3: skip = 8; break;
      case 0xdc: need(2); open(u16()); continue;
      case 0xdd: need(4); open(u32()); continue;
      case 0xde: need(2); open(2 * u16()); continue;
      case 0xdf: need(4); open(2 * u32()); continue;
      default:
        if (t >= 0xa0 && t <= 0xbf) { skip = t & 0x1f; break; }
        // 0xc1 (never used) and the extension types 0xc7-0xc9, 0xd4-0xd8.
        throw malformed(`header msgpack uses type byte 0x${t.toString(16)}, which ftvm never sends`);
    }
    need(skip);
    at += skip;
  }
  if (at !== end) throw malformed(`header msgpack has ${end - at} bytes after its value`);
}
