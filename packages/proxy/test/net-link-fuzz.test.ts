/**
 * Fuzzes the proxy's client side of the net link: fake nodes answer the handshake
 * correctly, then send mutated and random frames. The proxy must close each link that
 * carries a bad frame with the code the wire layer promises (any 4xxx when the frame
 * was valid but unusable), reconnect, and keep serving clients from the good primary.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_CODES, FRAME_TAG_BYTES, LINK_MESSAGES, ServerHandshake, closeCodeFor, decodeFrame, encodeFrame, frameTag, maxFrameBytes, resolveLimits } from '@ftvm/protocol';
import { mutateFrame, rng, sampleFrames } from '../../protocol/test/fuzz-helpers.js';
import { ProxyRuntime } from '../src/index.js';
import { Client, FakeNode, sleep, until, type Replica } from './fake-node.js';

const token = new TextEncoder().encode('fuzz-secret');
const limits = resolveLimits();

/** What the proxy must do with one frame from a node. */
function expectation(frame: Uint8Array): { close: number[] | 'any4xxx' | 'maybe' } {
  if (frame.length > maxFrameBytes(limits)) return { close: [1009] };
  try {
    const { msg } = decodeFrame(frame, limits);
    if (!LINK_MESSAGES.net.has(msg.t)) return { close: [CLOSE_CODES.FTVM_ERR_UNEXPECTED_MESSAGE] };
    if (msg.t === 'reject') return { close: [closeCodeFor(msg.code)] };
    // Valid on the link: the proxy may use it, refuse it, or close for a reason of its own.
    return { close: 'maybe' };
  } catch (e) {
    return { close: [closeCodeFor((e as { code: string }).code)] };
  }
}

interface FuzzStats {
  sent: number;
  links: number;
  closes: Record<number, number>;
  failures: string[];
}

/** A node that handshakes properly, then sends `n` fuzzed frames over as many links as it takes. */
async function fuzzNode(n: number, seed: number): Promise<{ url: string; stats: FuzzStats; done: Promise<void>; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: maxFrameBytes(limits) + FRAME_TAG_BYTES });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const r = rng(seed);
  const frames = sampleFrames();
  const stats: FuzzStats = { sent: 0, links: 0, closes: {}, failures: [] };
  let finish!: () => void;
  const done = new Promise<void>((res) => (finish = res));
  wss.on('connection', (ws: WebSocket) => {
    ws.on('error', () => {});
    if (stats.sent >= n) {
      ws.close(4000, 'fuzzing over');
      return;
    }
    const hs = new ServerHandshake({ token, identity: () => ({ nodeId: `fuzz${seed}`, role: 'secondary', term: 0, epoch: 0 }) });
    let authed = false;
    /** Codes the close may carry; undefined while every frame so far was valid. */
    let want: number[] | undefined;
    let sawValid = false;
    let closed = false;
    let seq = 0;
    const pump = async (): Promise<void> => {
      while (!closed && stats.sent < n) {
        const frame = r() < 0.1 ? frames[Math.floor(r() * frames.length)]! : mutateFrame(r, frames[Math.floor(r() * frames.length)]!, limits);
        const exp = expectation(frame);
        stats.sent++;
        // With a valid frame MAC (the link's session key): the proxy's decoder, not its MAC check, judges the frame.
        ws.send(Buffer.concat([frame, frameTag(hs.keys!.send, seq++, frame)]), { binary: true });
        if (exp.close === 'maybe') {
          sawValid = true;
          await sleep(0);
          continue;
        }
        want = exp.close as number[];
        return; // the proxy must close this link now
      }
      if (!closed && stats.sent >= n) finish();
    };
    const timer = setTimeout(() => {
      if (!closed && want !== undefined) stats.failures.push(`link not closed within 5 s after a frame wanting ${want.join('|')}`);
      ws.terminate();
    }, 5000);
    ws.on('message', (data: Buffer) => {
      if (authed) return; // heartbeats and the like from the proxy
      try {
        const step = hs.receive(decodeFrame(data, limits).msg);
        ws.send(encodeFrame(step.reply, undefined, limits));
        authed = true;
        stats.links++;
        void pump();
      } catch (e) {
        stats.failures.push(`proxy handshake failed: ${(e as Error).message}`);
      }
    });
    ws.on('close', (code) => {
      closed = true;
      clearTimeout(timer);
      stats.closes[code] = (stats.closes[code] ?? 0) + 1;
      if (!authed) return;
      const ok = want === undefined || want.includes(code) || (sawValid && code >= 4000 && code <= 4999);
      if (!ok) stats.failures.push(`closed with ${code}, want ${want!.join('|')}${sawValid ? ' or any 4xxx' : ''}`);
      if (stats.sent >= n) finish();
    });
    ws.send(encodeFrame(hs.start(), undefined, limits));
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`,
    stats,
    done,
    close: () =>
      new Promise<void>((res) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => res());
      }),
  };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('net link fuzzing', () => {
  it('survives 10,000 fuzzed frames from nodes, closing each bad link with its code, and keeps serving clients', { timeout: 180_000 }, async () => {
    const PER_NODE = 1250;
    const fuzzers = await Promise.all([11, 12, 13, 14, 15, 16, 17, 18].map((seed) => fuzzNode(PER_NODE, seed)));
    for (const f of fuzzers) cleanups.push(() => f.close());
    const replica: Replica = { committed: undefined };
    const a = await FakeNode.start({ token, role: 'primary', replica });
    cleanups.push(() => a.kill());
    const errors: string[] = [];
    const proxy = new ProxyRuntime({
      port: 0,
      nodes: [a.url, ...fuzzers.map((f) => f.url)],
      token,
      reconnectMinMs: 1,
      reconnectMaxMs: 4,
      log: { error: (m) => errors.push(m), warn() {}, info() {}, debug() {} },
    });
    const port = await proxy.start();
    cleanups.push(() => proxy.close());
    await until(() => proxy.active === 'a', 'a active');

    // A client talks throughout the fuzzing; every request must be answered, in order.
    const c = await Client.connect(port);
    cleanups.push(async () => void c.socket.destroy());
    let asked = '';
    const talk = setInterval(() => {
      const line = `req${asked.length}\n`;
      asked += line;
      c.send(line);
    }, 20);
    cleanups.push(async () => clearInterval(talk));

    await Promise.all(fuzzers.map((f) => f.done));
    clearInterval(talk);
    await until(() => c.data === asked, 'every request answered', 10_000);

    const sent = fuzzers.reduce((s, f) => s + f.stats.sent, 0);
    const links = fuzzers.reduce((s, f) => s + f.stats.links, 0);
    const failures = fuzzers.flatMap((f) => f.stats.failures);
    expect(failures.slice(0, 10)).toEqual([]);
    expect(sent).toBeGreaterThanOrEqual(10_000);
    // Most mutated frames are bad: each closed its link and the proxy came back.
    expect(links).toBeGreaterThan(1000);
    expect(proxy.stats().badLinks).toBeGreaterThan(0);
    expect(a.closes).toEqual([]);
    expect(proxy.active).toBe('a');
    expect(errors).toEqual([]);
    const fresh = await Client.connect(port);
    cleanups.push(async () => void fresh.socket.destroy());
    fresh.send('after\n');
    await until(() => fresh.data === 'after\n', 'a new client served');
  });
});
