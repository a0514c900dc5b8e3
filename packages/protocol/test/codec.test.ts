import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { Codec, ENTRY_HEADER_BYTES, PageDecoder, PageEncoder, type PageSink } from '../src/index.js';

/** A page with kv-like content: mostly zero, a few short records. */
function kvPage(seed: number): Uint8Array {
  const p = new Uint8Array(PAGE_BYTES);
  for (let r = 0; r < 12; r++) {
    const at = (seed * 97 + r * 331) % (PAGE_BYTES - 40);
    const text = `key:${seed}:${r}=value-${(seed * r) % 1000}`;
    for (let i = 0; i < text.length; i++) p[at + i] = text.charCodeAt(i);
  }
  return p;
}

function randomPage(seed: number): Uint8Array {
  const p = new Uint8Array(PAGE_BYTES);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < PAGE_BYTES; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    p[i] = x & 0xff;
  }
  return p;
}

const concat = (pages: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(pages.length * PAGE_BYTES);
  pages.forEach((p, i) => out.set(p, i * PAGE_BYTES));
  return out;
};

/** The codec of each entry, read from the batch bytes. */
function codecsOf(payload: Uint8Array): number[] {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: number[] = [];
  let at = 4;
  for (let i = 0, n = dv.getUint32(0, true); i < n; i++) {
    out.push(payload[at + 4]!);
    at += ENTRY_HEADER_BYTES + dv.getUint32(at + 5, true);
  }
  return out;
}

/** A batch of one page, page 7, with codec LZ4 and the given block as its body. */
function lz4Batch(block: Uint8Array): Uint8Array {
  const b = new Uint8Array(4 + ENTRY_HEADER_BYTES + block.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 1, true);
  dv.setUint32(4, 7, true);
  b[8] = Codec.LZ4;
  dv.setUint32(9, block.length, true);
  b.set(block, 4 + ENTRY_HEADER_BYTES);
  return b;
}

const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'no error';
};

describe('page codecs', () => {
  it('sends an all-zero page as ZERO with no body bytes', () => {
    const enc = new PageEncoder();
    const b = enc.encodeBatch([7], new Uint8Array(PAGE_BYTES));
    expect(codecsOf(b.payload)).toEqual([Codec.ZERO]);
    expect(b.wireBytes).toBe(4 + ENTRY_HEADER_BYTES);
    const dec = new PageDecoder();
    dec.ensure(8 * PAGE_BYTES);
    dec.image.fill(0xaa);
    dec.apply(b.payload, 1);
    expect(dec.image.subarray(7 * PAGE_BYTES, 8 * PAGE_BYTES).every((x) => x === 0)).toBe(true);
    expect(dec.image[6 * PAGE_BYTES]).toBe(0xaa);
  });

  it('sends an incompressible page RAW and a compressible one LZ4', () => {
    const enc = new PageEncoder({ keepPrevious: false });
    const b = enc.encodeBatch([0, 1], concat([randomPage(1), kvPage(1)]));
    expect(codecsOf(b.payload)).toEqual([Codec.RAW, Codec.LZ4]);
    expect(b.byCodec.RAW.pages).toBe(1);
    expect(b.byCodec.LZ4.pages).toBe(1);
    expect(b.byCodec.LZ4.bytes).toBeLessThan(PAGE_BYTES / 4);
    const dec = new PageDecoder();
    dec.apply(b.payload);
    expect(dec.image.subarray(0, 2 * PAGE_BYTES)).toEqual(concat([randomPage(1), kvPage(1)]));
  });

  it('sends only RAW and ZERO with compression off', () => {
    const enc = new PageEncoder({ compression: false });
    const b = enc.encodeBatch([0, 1, 2], concat([kvPage(1), new Uint8Array(PAGE_BYTES), kvPage(1)]));
    expect(codecsOf(b.payload)).toEqual([Codec.RAW, Codec.ZERO, Codec.RAW]);
    expect(enc.cacheBytes).toBe(0);
  });

  it('XOR-deltas a page against the copy last sent (a few changed words: XOR_SPARSE)', () => {
    const enc = new PageEncoder();
    const dec = new PageDecoder();
    const v1 = randomPage(5);
    dec.apply(enc.encodeBatch([3], v1).payload);
    const v2 = new Uint8Array(v1);
    v2[100] ^= 0xff;
    v2[2000] = 42;
    const b = enc.encodeBatch([3], v2);
    expect(codecsOf(b.payload)).toEqual([Codec.XOR_SPARSE]);
    expect(b.wireBytes).toBeLessThan(100);
    dec.apply(b.payload);
    expect(dec.image.subarray(3 * PAGE_BYTES, 4 * PAGE_BYTES)).toEqual(v2);
  });

  it('never XOR-deltas a page it has not sent, nor after forget()', () => {
    const enc = new PageEncoder();
    const v1 = randomPage(9);
    enc.encodeBatch([1], v1);
    const v2 = new Uint8Array(v1);
    v2[0] ^= 1;
    expect(codecsOf(enc.encodeBatch([2], v2).payload)).toEqual([Codec.RAW]);
    enc.forget();
    expect(codecsOf(enc.encodeBatch([1], v2).payload)).toEqual([Codec.RAW]);
    enc.forgetPages([1]);
    expect(codecsOf(enc.encodeBatch([1], v1).payload)).toEqual([Codec.RAW]);
    expect(codecsOf(enc.encodeBatch([1], v2).payload)).toEqual([Codec.XOR_SPARSE]);
  });

  it('applies XOR deltas onto a sink base and writes through put', () => {
    const enc = new PageEncoder();
    const committed = new Map<number, Uint8Array>();
    const staged = new Map<number, Uint8Array>();
    const sink: PageSink = { base: (p) => committed.get(p), put: (p, page) => staged.set(p, new Uint8Array(page)) };
    const dec = new PageDecoder();
    const v1 = kvPage(3);
    dec.decodeInto(enc.encodeBatch([4], v1).payload, sink);
    committed.set(4, staged.get(4)!);
    const v2 = new Uint8Array(v1);
    v2[10] = 99;
    const r = dec.decodeInto(enc.encodeBatch([4], v2).payload, sink, 1);
    expect(Array.from(r.pages)).toEqual([4]);
    expect(staged.get(4)).toEqual(v2);
  });

  it('applies an XOR delta onto an unaligned base copy', () => {
    const enc = new PageEncoder();
    const v1 = randomPage(11);
    enc.encodeBatch([0], v1);
    const v2 = new Uint8Array(v1);
    v2[4095] ^= 0x80;
    const holder = new Uint8Array(PAGE_BYTES + 1);
    holder.set(v1, 1);
    let out: Uint8Array | undefined;
    new PageDecoder().decodeInto(enc.encodeBatch([0], v2).payload, { base: () => holder.subarray(1), put: (_, p) => { out = new Uint8Array(p); } });
    expect(out).toEqual(v2);
  });

  it('round-trips random batches through every codec (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ page: fc.integer({ min: 0, max: 63 }), kind: fc.integer({ min: 0, max: 3 }), seed: fc.integer({ min: 1, max: 1e6 }) }), { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        (steps, compression) => {
          const enc = new PageEncoder({ compression });
          const dec = new PageDecoder();
          const truth = new Uint8Array(64 * PAGE_BYTES);
          for (const s of steps) {
            let page: Uint8Array;
            if (s.kind === 0) page = new Uint8Array(PAGE_BYTES);
            else if (s.kind === 1) page = randomPage(s.seed);
            else if (s.kind === 2) page = kvPage(s.seed);
            else {
              page = truth.slice(s.page * PAGE_BYTES, (s.page + 1) * PAGE_BYTES);
              page[s.seed % PAGE_BYTES] ^= 0x5a;
            }
            truth.set(page, s.page * PAGE_BYTES);
            dec.apply(enc.encodeBatch([s.page], page).payload, 1);
          }
          dec.ensure(truth.length);
          expect(Buffer.compare(dec.image.subarray(0, truth.length), truth)).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reports wire and raw bytes per batch', () => {
    const b = new PageEncoder().encodeBatch([0, 1, 2], concat([kvPage(1), kvPage(2), new Uint8Array(PAGE_BYTES)]));
    expect(b.rawBytes).toBe(3 * PAGE_BYTES);
    expect(b.wireBytes).toBe(b.payload.length);
    const sum = Object.values(b.byCodec).reduce((a, s) => a + s.bytes, 0);
    expect(sum + 4 + 3 * ENTRY_HEADER_BYTES).toBe(b.wireBytes);
  });

  it('refuses bad encoder input with coded errors', () => {
    const enc = new PageEncoder();
    expect(codeOf(() => enc.encodeBatch([0, 1], new Uint8Array(PAGE_BYTES)))).toBe('FTVM_ERR_INVALID_OPTION');
    expect(codeOf(() => enc.encodeBatch([2 ** 20], new Uint8Array(PAGE_BYTES)))).toBe('FTVM_ERR_INVALID_OPTION');
    expect(codeOf(() => new PageEncoder({ compression: 'yes' as unknown as boolean }))).toBe('FTVM_ERR_INVALID_OPTION');
  });
});

describe('LZ4 on the wire', () => {
  // The page and the block the reference C liblz4 (LZ4_compress_default, through the `lz4`
  // addon ftvm used before lz4-napi) made of it: the wire format stays the LZ4 block format.
  const page = new Uint8Array(PAGE_BYTES);
  const put = (at: number, text: string): void => { for (let i = 0; i < text.length; i++) page[at + i] = text.charCodeAt(i); };
  put(100, '*3\r\n$3\r\nSET\r\n$8\r\nuser:123\r\n$5\r\nhello\r\n');
  put(2000, 'ftvm ftvm ftvm ftvm ftvm ftvm');
  new DataView(page.buffer).setUint32(4092, 0xdeadbeef, true);
  const fromLiblz4 = Buffer.from(
    '1f00010050f0092a330d0a24330d0a5345540d0a24380d0a757365723a31321700af350d0a68656c6c6f0d0a8900500f0200ffffffffffffd65f6674766d2005' +
      '00050f0007ffffffffffffd60f0200ff195000efbeadde',
    'hex',
  );

  it('decodes a block from the C reference encoder', () => {
    const dec = new PageDecoder();
    dec.apply(lz4Batch(fromLiblz4));
    expect(dec.image.subarray(7 * PAGE_BYTES, 8 * PAGE_BYTES)).toEqual(page);
  });

  it('encodes that page to a block of about the reference size', () => {
    const b = new PageEncoder({ sparse: false }).encodeBatch([7], page);
    expect(codecsOf(b.payload)).toEqual([Codec.LZ4]);
    expect(b.byCodec.LZ4.bytes).toBeGreaterThan(fromLiblz4.length - 8);
    expect(b.byCodec.LZ4.bytes).toBeLessThan(fromLiblz4.length + 8);
  });
});

describe('PageDecoder with a shared image', () => {
  it('decodes into a SharedArrayBuffer that grows (by copying) and keeps every page', () => {
    const enc = new PageEncoder();
    const dec = new PageDecoder({ shared: true });
    const pages = [kvPage(1), randomPage(2), new Uint8Array(PAGE_BYTES)];
    dec.apply(enc.encodeBatch(Uint32Array.of(0, 1, 2), concat(pages)).payload);
    expect(dec.image.buffer).toBeInstanceOf(SharedArrayBuffer);
    // A page far out makes the image grow: the earlier pages move with it.
    const far = randomPage(9);
    dec.apply(enc.encodeBatch(Uint32Array.of(4000), far).payload);
    expect(dec.image.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(dec.image.subarray(0, 3 * PAGE_BYTES)).toEqual(concat(pages));
    expect(dec.image.subarray(4000 * PAGE_BYTES, 4001 * PAGE_BYTES)).toEqual(far);
    expect(codeOf(() => new PageDecoder({ shared: 1 as unknown as boolean }))).toBe('FTVM_ERR_INVALID_OPTION');
  });
});

describe('PageDecoder on bad input', () => {
  const good = new PageEncoder().encodeBatch([1, 2, 3], concat([kvPage(1), randomPage(2), new Uint8Array(PAGE_BYTES)])).payload;

  const patch = (f: (dv: DataView, b: Uint8Array) => void): Uint8Array => {
    const b = new Uint8Array(good);
    f(new DataView(b.buffer), b);
    return b;
  };

  it.each([
    ['an empty batch', new Uint8Array(0)],
    ['a count larger than the bytes', patch((dv) => dv.setUint32(0, 4, true))],
    ['a huge count', patch((dv) => dv.setUint32(0, 0xffffffff, true))],
    ['an unknown codec', patch((_, b) => { b[8] = 9; })],
    ['an LZ4 length of a full page', patch((dv) => dv.setUint32(9, PAGE_BYTES, true))],
    ['a body length past the end', patch((dv) => dv.setUint32(9, 4000, true))],
    ['a page beyond 4 GiB', patch((dv) => dv.setUint32(4, 2 ** 20, true))],
    ['trailing bytes', (() => { const b = new Uint8Array(good.length + 1); b.set(good); return b; })()],
    ['a cut batch', good.subarray(0, good.length - 1)],
    ['a corrupt LZ4 body', patch((_, b) => { b[13] = 0xff; b[14] = 0xff; b[15] = 0xff; })],
  ])('refuses %s as malformed', (_, bytes) => {
    expect(codeOf(() => new PageDecoder().apply(bytes))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  /** An LZ4 block of n bytes of 'a': one literal, one match at offset 1, then five literals. */
  const run = (n: number): Uint8Array => {
    const ext: number[] = [];
    for (let rest = n - 6 - 4 - 15; ; rest -= 255) {
      ext.push(Math.min(rest, 255));
      if (rest < 255) break;
    }
    return Uint8Array.from([0x1f, 0x61, 0x01, 0x00, ...ext, 0x50, 0x61, 0x61, 0x61, 0x61, 0x61]);
  };

  it('refuses an LZ4 body that decodes past a page, or short of one', () => {
    const dec = new PageDecoder();
    dec.apply(lz4Batch(run(PAGE_BYTES)));
    expect(dec.image.subarray(7 * PAGE_BYTES, 8 * PAGE_BYTES).every((x) => x === 0x61)).toBe(true);
    expect(codeOf(() => new PageDecoder().apply(lz4Batch(run(4200))))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => new PageDecoder().apply(lz4Batch(run(100))))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('refuses a batch whose count differs from the header', () => {
    expect(codeOf(() => new PageDecoder().apply(good, 2))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('refuses to grow its image past maxImageBytes', () => {
    const b = new PageEncoder().encodeBatch([100], kvPage(1)).payload;
    expect(codeOf(() => new PageDecoder({ maxImageBytes: 16 * PAGE_BYTES }).apply(b))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('writes nothing when the batch structure is bad', () => {
    const dec = new PageDecoder();
    dec.ensure(4 * PAGE_BYTES);
    expect(codeOf(() => dec.apply(good.subarray(0, good.length - 1)))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(dec.image.every((x) => x === 0)).toBe(true);
  });
});

describe('SPARSE codecs', () => {
  /** A zero page with a few words set, as an untouched heap page after one store. */
  const sparsePage = (seed: number): Uint8Array => {
    const p = new Uint8Array(PAGE_BYTES);
    const w = new Int32Array(p.buffer);
    w[seed % 1024] = 0x12345678 + seed;
    w[(seed * 7 + 3) % 1024] = -1;
    w[1023] = seed + 1;
    return p;
  };
  /** A one-page batch with the given codec and body. */
  const batchOf = (codec: number, body: Uint8Array): Uint8Array => {
    const b = new Uint8Array(4 + ENTRY_HEADER_BYTES + body.length);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, 1, true);
    dv.setUint32(4, 2, true);
    b[8] = codec;
    dv.setUint32(9, body.length, true);
    b.set(body, 4 + ENTRY_HEADER_BYTES);
    return b;
  };

  it('sends a mostly-zero page as SPARSE and restores it exactly', () => {
    const enc = new PageEncoder();
    const pages = concat([sparsePage(1), sparsePage(2), kvPage(3)]);
    const b = enc.encodeBatch([4, 5, 6], pages);
    expect(codecsOf(b.payload)).toEqual([Codec.SPARSE, Codec.SPARSE, Codec.LZ4]);
    // Three runs of one word: 3 x (header + word) = 24 bytes.
    expect(b.byCodec.SPARSE.bytes).toBe(2 * 24);
    const dec = new PageDecoder();
    dec.ensure(8 * PAGE_BYTES);
    dec.image.fill(0xaa);
    dec.apply(b.payload, 3);
    expect(dec.image.subarray(4 * PAGE_BYTES, 7 * PAGE_BYTES)).toEqual(pages);
  });

  it('sends an unchanged page as an empty XOR_SPARSE, a few changed words as XOR_SPARSE', () => {
    const enc = new PageEncoder();
    const dec = new PageDecoder();
    const v1 = kvPage(4);
    dec.apply(enc.encodeBatch([3], v1).payload);
    const same = enc.encodeBatch([3], v1);
    expect(codecsOf(same.payload)).toEqual([Codec.XOR_SPARSE]);
    expect(same.wireBytes).toBe(4 + ENTRY_HEADER_BYTES);
    dec.apply(same.payload);
    expect(dec.image.subarray(3 * PAGE_BYTES, 4 * PAGE_BYTES)).toEqual(v1);
    const v2 = new Uint8Array(v1);
    v2[4000] ^= 0x5a;
    dec.apply(enc.encodeBatch([3], v2).payload);
    expect(dec.image.subarray(3 * PAGE_BYTES, 4 * PAGE_BYTES)).toEqual(v2);
  });

  it('encodes with the stride scan only up to 256 bytes: a dense page still goes LZ4 or RAW', () => {
    const enc = new PageEncoder({ keepPrevious: false });
    const b = enc.encodeBatch([0, 1], concat([randomPage(2), kvPage(2)]));
    expect(codecsOf(b.payload)).toEqual([Codec.RAW, Codec.LZ4]);
  });

  it('round-trips pages with random runs of words anywhere, the last page of a buffer included', () => {
    let seed = 11;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    const count = 64;
    const data = new Uint8Array(count * PAGE_BYTES);
    const w = new Int32Array(data.buffer);
    for (let p = 0; p < count; p++) {
      for (let r = rand(6); r > 0; r--) {
        const at = rand(1024);
        for (let k = 0, len = 1 + rand(9); k < len && at + k < 1024; k++) w[p * 1024 + at + k] = rand(3) === 0 ? -1 : 1 + rand(1000);
      }
      if (p % 7 === 0) w[p * 1024 + 1023] = 5; // a run ending at the page end
      if (p % 5 === 0) w[p * 1024] = 9; // and one starting at its first word
    }
    const pages = Array.from({ length: count }, (_, i) => i);
    const b = new PageEncoder({ keepPrevious: false }).encodeBatch(pages, data);
    expect(b.byCodec.SPARSE.pages + b.byCodec.ZERO.pages).toBe(count);
    const dec = new PageDecoder();
    dec.apply(b.payload, count);
    expect(dec.image.subarray(0, data.length)).toEqual(data);
  });

  it('refuses malformed SPARSE bodies with FTVM_ERR_FRAME_MALFORMED', () => {
    const dec = new PageDecoder();
    const words = (...w: number[]) => new Uint8Array(new Int32Array(w).buffer);
    // A run past the page end, runs out of order, a zero-length run, a count past the body, an odd length, an empty SPARSE.
    for (const body of [words(1020 | (8 << 16), 1, 2, 3, 4, 5, 6, 7, 8), words(10 | (1 << 16), 1, 5 | (1 << 16), 2), words(3, 1), words(0 | (3 << 16), 1), new Uint8Array(6), new Uint8Array(0)]) {
      expect(codeOf(() => dec.apply(batchOf(Codec.SPARSE, body), 1))).toBe('FTVM_ERR_FRAME_MALFORMED');
    }
    expect(codeOf(() => dec.apply(batchOf(Codec.XOR_SPARSE, new Uint8Array(PAGE_BYTES)), 1))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => dec.apply(batchOf(Codec.SPARSE, words(1 | (1 << 16), 9)), 1))).toBe('no error');
    expect(new Int32Array(dec.image.buffer, 2 * PAGE_BYTES, 4)[1]).toBe(9);
  });
});
