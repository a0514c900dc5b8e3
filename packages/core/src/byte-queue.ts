/**
 * An offset-addressed run of byte chunks of one stream: [start, end). Appends must
 * continue the stream; the front can be cut at any offset (splitting a chunk).
 * Each chunk keeps a tag (the epoch that produced it, for output).
 */
export interface TaggedChunk {
  offset: number;
  bytes: Uint8Array;
  tag: number;
}

export class ByteQueue {
  private chunks: TaggedChunk[] = [];
  /** First byte offset still held. */
  start: number;
  /** One past the last byte held (the next append's offset). */
  end: number;

  constructor(start = 0) {
    this.start = start;
    this.end = start;
  }

  get size(): number {
    return this.end - this.start;
  }

  get chunkCount(): number {
    return this.chunks.length;
  }

  /** Appends bytes at `end`. An empty chunk is ignored. */
  push(bytes: Uint8Array, tag = 0): void {
    if (bytes.length === 0) return;
    this.chunks.push({ offset: this.end, bytes, tag });
    this.end += bytes.length;
  }

  /** Removes and returns the chunks covering [start, upTo), splitting the last one. */
  takeUpTo(upTo: number): TaggedChunk[] {
    const out: TaggedChunk[] = [];
    const limit = Math.min(upTo, this.end);
    while (this.chunks.length > 0 && this.start < limit) {
      const c = this.chunks[0]!;
      const cEnd = c.offset + c.bytes.length;
      if (cEnd <= limit) {
        out.push(c);
        this.chunks.shift();
        this.start = cEnd;
      } else {
        const cut = limit - c.offset;
        out.push({ offset: c.offset, bytes: c.bytes.subarray(0, cut), tag: c.tag });
        this.chunks[0] = { offset: limit, bytes: c.bytes.subarray(cut), tag: c.tag };
        this.start = limit;
      }
    }
    if (this.start < limit) this.start = limit;
    return out;
  }

  /** Removes and returns the leading chunks whose tag is <= maxTag. */
  takeTaggedUpTo(maxTag: number): TaggedChunk[] {
    const out: TaggedChunk[] = [];
    while (this.chunks.length > 0 && this.chunks[0]!.tag <= maxTag) {
      const c = this.chunks.shift()!;
      out.push(c);
      this.start = c.offset + c.bytes.length;
    }
    return out;
  }

  /** Drops every byte at or past `from` (keeps [start, from)). */
  truncate(from: number): void {
    if (from >= this.end) return;
    const at = Math.max(from, this.start);
    while (this.chunks.length > 0) {
      const c = this.chunks[this.chunks.length - 1]!;
      if (c.offset >= at) {
        this.chunks.pop();
        continue;
      }
      const cEnd = c.offset + c.bytes.length;
      if (cEnd > at) this.chunks[this.chunks.length - 1] = { offset: c.offset, bytes: c.bytes.subarray(0, at - c.offset), tag: c.tag };
      break;
    }
    this.end = at;
  }

  /** The chunks covering [from, end), without removing them (cut at `from`). */
  peekFrom(from: number): TaggedChunk[] {
    const out: TaggedChunk[] = [];
    for (const c of this.chunks) {
      const cEnd = c.offset + c.bytes.length;
      if (cEnd <= from) continue;
      if (c.offset >= from) out.push(c);
      else out.push({ offset: from, bytes: c.bytes.subarray(from - c.offset), tag: c.tag });
    }
    return out;
  }

  /** Empties the queue and restarts it at `offset`. */
  reset(offset: number): void {
    this.chunks = [];
    this.start = offset;
    this.end = offset;
  }
}
