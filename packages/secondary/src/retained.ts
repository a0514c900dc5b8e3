import type { OutputChunk } from '@ftvm/protocol';

/** Output the guest produced, kept until the proxy confirms it received it (the chunk a checkpoint's output table carries). */
export type RetainedChunk = OutputChunk;

/**
 * Output retained per connection, in offset order, until `confirm(epoch)`: the proxy has
 * all output of epochs <= epoch. It travels in every checkpoint, so a promoted node can
 * resend committed output the proxy never received (the old primary died with it in
 * flight). Bounded by what the proxy has not confirmed.
 */
export class RetainedOutput {
  private chunks: RetainedChunk[] = [];
  bytes = 0;
  /** Chunks were added in epoch order (they are, from a guest): ofEpoch reads only the tail. */
  private ordered = true;

  add(chunks: RetainedChunk[]): void {
    for (const c of chunks) {
      const last = this.chunks[this.chunks.length - 1];
      if (last && c.epoch < last.epoch) this.ordered = false;
      this.chunks.push(c);
      this.bytes += c.data.length;
    }
  }

  confirm(epoch: number): void {
    if (!this.chunks.length || this.chunks[0]!.epoch > epoch) return;
    const keep = this.chunks.filter((c) => c.epoch > epoch);
    this.bytes = keep.reduce((n, c) => n + c.data.length, 0);
    this.chunks = keep;
  }

  /** Chunks of `epoch` (to ship in its checkpoint). */
  ofEpoch(epoch: number): RetainedChunk[] {
    if (!this.ordered) return this.chunks.filter((c) => c.epoch === epoch);
    // O(chunks of epochs >= epoch), not O(everything retained): called once per checkpoint.
    let i = this.chunks.length;
    while (i > 0 && this.chunks[i - 1]!.epoch >= epoch) i--;
    const out: RetainedChunk[] = [];
    for (; i < this.chunks.length && this.chunks[i]!.epoch === epoch; i++) out.push(this.chunks[i]!);
    return out;
  }

  /** Retained output of `conn` from `offset` on, as chunks (the first one trimmed). */
  from(conn: number, offset: number): RetainedChunk[] {
    const out: RetainedChunk[] = [];
    for (const c of this.chunks) {
      if (c.conn !== conn || c.offset + c.data.length <= offset) continue;
      const skip = Math.max(0, offset - c.offset);
      out.push(skip ? { ...c, offset: c.offset + skip, data: c.data.subarray(skip) } : c);
    }
    return out;
  }

  /** Drops output of epochs after `epoch` (a rolled-back run: void). */
  dropAfter(epoch: number): void {
    const keep = this.chunks.filter((c) => c.epoch <= epoch);
    if (keep.length === this.chunks.length) return;
    this.chunks = keep;
    this.bytes = keep.reduce((n, c) => n + c.data.length, 0);
  }

  /** Drops retained output past the committed offsets (it was never committed). */
  truncate(outProduced: Map<number, number>): void {
    this.chunks = this.chunks
      .map((c) => {
        const end = outProduced.get(c.conn) ?? 0;
        if (c.offset >= end) return null;
        return c.offset + c.data.length > end ? { ...c, data: c.data.subarray(0, end - c.offset) } : c;
      })
      .filter((c): c is RetainedChunk => c !== null);
    this.bytes = this.chunks.reduce((n, c) => n + c.data.length, 0);
  }

  clear(): void {
    this.chunks = [];
    this.ordered = true;
    this.bytes = 0;
  }
}
