import { PAGE_BYTES } from '@ftvm/guest-abi';
import { ImageDigest, PageEncoder } from '@ftvm/protocol';

/**
 * The sending half every sink shares: encodes batches with the protocol's page codecs
 * (ZERO / XOR-delta+LZ4 / LZ4 / RAW) and keeps the image digest of everything sent, so
 * the destination can prove it holds exactly that image.
 */
export class PageStream {
  readonly encoder: PageEncoder;
  readonly digest = new ImageDigest();
  /** keepPrevious false: no XOR cache (a disk's blocks, sent once each). */
  constructor(compression = true, keepPrevious = true) {
    this.encoder = new PageEncoder({ compression, keepPrevious });
  }
  encode(pages: Uint32Array, data: Uint8Array): { payload: Uint8Array; wireBytes: number; nonZeroPages: number; nonZeroBytes: number } {
    const b = this.encoder.encodeBatch(pages, data);
    for (let i = 0; i < pages.length; i++) this.digest.update(pages[i]!, data, i * PAGE_BYTES);
    const nonZeroPages = pages.length - b.byCodec.ZERO.pages;
    // Entry headers count: they are on the wire too.
    const nonZeroBytes = b.wireBytes - 4 - b.byCodec.ZERO.pages * 9;
    return { payload: b.payload, wireBytes: b.wireBytes, nonZeroPages, nonZeroBytes };
  }
}
