/**
 * Client side of an authenticated link, attaching the caller's listeners synchronously
 * when the Link is created.
 *
 * Why not @ftvm/protocol's connect(): it resolves a promise with the Link, and ws emits
 * every frame of one TCP chunk synchronously. A node sends `status` right after its
 * `welcome`, usually in the same chunk, so that status is emitted on the Link before a
 * listener added after `await connect()` exists, and is lost. Until connect() takes an
 * `attach` callback (reported to the protocol owner), the proxy uses this one, built
 * from the protocol's own handshake machine, framing and Link.
 */
import { WebSocket, type RawData } from 'ws';
import { isFtvmError, type FtvmError } from '@ftvm/guest-abi';
import {
  ClientHandshake, Link, PeerRefusedError, ProtocolError, closeCodeFor, closeReason, decodeFrame, encodeFrame, errorFromClose, maxFrameBytes, resolveLimits,
  type ConnectOptions,
} from '@ftvm/protocol';

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

const coded = (e: unknown): FtvmError => (isFtvmError(e) ? e : new ProtocolError('FTVM_ERR_FRAME_MALFORMED', String(e)));

/** Connects and authenticates; `attach` runs before any message of the new Link can be emitted. */
export function connectLink(url: string, opts: ConnectOptions, attach: (link: Link) => void): Promise<Link> {
  const limits = resolveLimits(opts.limits);
  const timeoutMs = opts.timeoutMs ?? 5000;
  const { role, link: kind, nodeId, term, epoch, guestDigest } = opts;
  const hs = new ClientHandshake({ token: opts.token, hello: { role, link: kind, nodeId, term, epoch, guestDigest } });
  return new Promise<Link>((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: maxFrameBytes(limits), perMessageDeflate: false, handshakeTimeout: timeoutMs });
    let done = false;
    const finish = (err: FtvmError | undefined, link?: Link): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.off('message', onMessage);
      if (err === undefined) {
        resolve(link!);
        return;
      }
      if (ws.readyState === WebSocket.OPEN && !(err instanceof PeerRefusedError)) {
        try {
          ws.send(encodeFrame({ t: 'reject', code: err.code, message: err.message.slice(0, 1024) }, undefined, limits));
        } catch {
          // The close code below carries the reason anyway.
        }
        ws.close(closeCodeFor(err.code), closeReason(err));
      } else if (ws.readyState === WebSocket.OPEN) {
        ws.close(4000, 'refused');
      } else {
        ws.terminate();
      }
      reject(err);
    };
    const timer = setTimeout(() => finish(new ProtocolError('FTVM_ERR_HANDSHAKE_TIMEOUT', `no welcome from ${url} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (data: RawData, isBinary: boolean): void => {
      if (done) return;
      try {
        if (!isBinary) throw new ProtocolError('FTVM_ERR_FRAME_MALFORMED', 'text messages are not part of the protocol');
        const { msg } = decodeFrame(toBytes(data), limits);
        if (msg.t === 'reject') throw new PeerRefusedError(msg.code, `peer refused the link: ${msg.message}`);
        const step = hs.receive(msg);
        if (step.reply) ws.send(encodeFrame(step.reply, undefined, limits));
        if (step.done) {
          const link = new Link(ws, kind, step.done, opts);
          attach(link);
          finish(undefined, link);
        }
      } catch (e) {
        finish(coded(e));
      }
    };
    ws.on('message', onMessage);
    ws.on('error', (e) => finish(new ProtocolError('FTVM_ERR_CONNECT_FAILED', `cannot connect to ${url}: ${e.message}`)));
    ws.on('close', (code, reason) => {
      finish(errorFromClose(code, reason.toString('utf8')) ?? new ProtocolError('FTVM_ERR_CONNECT_FAILED', `${url} closed during the handshake (${code})`));
    });
  });
}
