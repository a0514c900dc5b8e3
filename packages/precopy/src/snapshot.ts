import { runPrecopy, type PrecopyOptions, type PrecopyResult, type PrecopySource } from './engine.js';
import { SnapshotWriter, type SnapshotInfo } from './snapshot-file.js';

export interface SnapshotOptions extends PrecopyOptions {
  /** The guest's original module (stored in the file so it restores on its own). */
  moduleWasm: Uint8Array;
  guest: string;
  moduleDigest: string;
  /** The cluster token: the file carries an HMAC under it, which restore checks. */
  macKey: Uint8Array;
}

export interface SnapshotResult extends PrecopyResult {
  path: string;
  /** File size, bytes. */
  fileBytes: number;
}

/**
 * Takes a snapshot of a running guest into `path`: live (pre-copy rounds into the file,
 * then a short hold; `throttle: 'auto'` is the Improved Live Save throttle) or
 * stop-the-world (`live: false`: the guest is held while every page is written, Xen's
 * `save`). The guest runs on afterwards either way; the file appears under `path` only
 * once complete and fsynced.
 */
export async function takeSnapshot(source: PrecopySource, path: string, opts: SnapshotOptions): Promise<SnapshotResult> {
  const info: SnapshotInfo = { guest: opts.guest, moduleDigest: opts.moduleDigest, mode: opts.live === false ? 'stop-the-world' : 'live', createdAtMs: Date.now() };
  const writer = await SnapshotWriter.create(path, info, opts.moduleWasm, opts.macKey);
  const r = await runPrecopy(source, writer, opts);
  if (!r.ok) return { ...r, path, fileBytes: 0 };
  // The image is captured: release the guest, then make the file durable.
  source.resume();
  try {
    await writer.finish();
  } catch (e) {
    await writer.abort();
    const code = (e as { code?: string }).code === 'FTVM_ERR_SNAPSHOT_EXISTS' ? 'FTVM_ERR_SNAPSHOT_EXISTS' : 'FTVM_ERR_SNAPSHOT_WRITE';
    return { ...r, ok: false, reason: `writing ${path} failed: ${(e as Error).message}`, error: { code, message: (e as Error).message }, path, fileBytes: 0 };
  }
  return { ...r, path, fileBytes: writer.bytes };
}
