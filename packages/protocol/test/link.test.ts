import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import {
  BATCH_MARK, PROTOCOL_VERSION, ProtocolError, connect, encodeBatch, encodeFrame, isBatch, listen, loadToken,
  type ConnectOptions, type Hello, type Link, type Listener, type ListenOptions, type Message, type TlsOptions,
} from '../src/index.js';
import { haveTool } from '../../../test/helpers/tools.js';
import { makeTestCerts, type TestCerts } from './certs.js';

const token = new TextEncoder().encode('link-test-token');
const listeners: Listener[] = [];
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});

async function server(extra: Partial<ListenOptions> = {}): Promise<{ l: Listener; links: { link: Link; hello: Hello }[] }> {
  const links: { link: Link; hello: Hello }[] = [];
  const l = await listen({
    host: '127.0.0.1', port: 0, token,
    identity: () => ({ nodeId: 'srv', role: 'primary', term: 5, epoch: 12 }),
    onLink: (link, hello) => links.push({ link, hello }),
    ...extra,
  });
  listeners.push(l);
  return { l, links };
}

const client = (over: Partial<ConnectOptions> = {}): Omit<ConnectOptions, 'link'> & Partial<ConnectOptions> => ({
  token, role: 'proxy', nodeId: 'px', term: 5, ...over,
});

const nextMessage = (link: Link): Promise<{ msg: Message; payload: Uint8Array }> =>
  new Promise((resolve) => link.once('message', (msg, payload) => resolve({ msg, payload })));
const nextClose = (link: Link): Promise<{ code: number; reason: string }> =>
  new Promise((resolve) => link.once('close', (code, reason) => resolve({ code, reason })));

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'no error';
}

/** A raw WebSocket that reads the challenge and then sends `bytes`; resolves with the close code. */
function rawClose(url: string, send?: Uint8Array | string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('error', () => {});
    ws.once('message', () => {
      if (send !== undefined) ws.send(send);
    });
    ws.on('close', (code) => resolve(code));
  });
}

/** A net link to a fresh server: the client's side, the server's, and the codes the server's side reports. */
async function established(): Promise<{ c: Link; s: Link; errors: string[] }> {
  const { l, links } = await server();
  const c = await connect(l.url, { ...client(), link: 'net' });
  await new Promise((r) => setTimeout(r, 10));
  const s = links[0]!.link;
  const errors: string[] = [];
  s.on('error', (e) => errors.push(e.code));
  return { c, s, errors };
}

describe('links', () => {
  it('carries messages and payloads both ways after the handshake', async () => {
    const { l, links } = await server();
    const c = await connect(l.url, { ...client(), link: 'net' });
    expect(c.peer).toMatchObject({ t: 'welcome', nodeId: 'srv', role: 'primary', term: 5, epoch: 12 });
    await new Promise((r) => setTimeout(r, 10));
    const s = links[0]!.link;
    expect(links[0]!.hello).toMatchObject({ role: 'proxy', link: 'net', nodeId: 'px' });
    const got = nextMessage(s);
    c.send({ t: 'input', term: 5, conn: 1, offset: 0 }, new TextEncoder().encode('PING'));
    const m = await got;
    expect(m.msg).toEqual({ t: 'input', term: 5, conn: 1, offset: 0 });
    expect(new TextDecoder().decode(m.payload)).toBe('PING');
    const back = nextMessage(c);
    s.send({ t: 'output', term: 5, conn: 1, epoch: 12, offset: 0 }, new TextEncoder().encode('PONG'));
    expect(new TextDecoder().decode((await back).payload)).toBe('PONG');
    c.close();
  });

  it('serves every link kind on one listener and dispatches on the hello', async () => {
    const { l, links } = await server();
    await connect(l.url, { ...client({ role: 'primary' }), link: 'replication' });
    await connect(l.url, { ...client({ role: 'proxy' }), link: 'net' });
    await connect(l.url, { ...client({ role: 'cli' }), link: 'control' });
    await new Promise((r) => setTimeout(r, 10));
    expect(links.map((x) => `${x.hello.role}/${x.link.kind}`).sort()).toEqual(['cli/control', 'primary/replication', 'proxy/net']);
    expect(l.links.size).toBe(3);
  });

  it('refuses a client with the wrong token and keeps serving', async () => {
    const { l, links } = await server();
    expect(await rejection(connect(l.url, { ...client({ token: new TextEncoder().encode('nope') }), link: 'net' }))).toBe('FTVM_ERR_AUTH_FAILED');
    expect(links).toHaveLength(0);
    await connect(l.url, { ...client(), link: 'net' });
  });

  it('refuses a wrong protocol version with its close code', async () => {
    const { l } = await server();
    expect(await rejection(connect(l.url, { ...client({ version: PROTOCOL_VERSION + 1 }), link: 'net' }))).toBe('FTVM_ERR_PROTO_VERSION');
  });

  it('refuses a stale term through the accept hook', async () => {
    const { l } = await server({
      accept: (h) => {
        if (h.term < 5) throw new ProtocolError('FTVM_ERR_STALE_TERM', `term ${h.term} is older than 5`);
      },
    });
    expect(await rejection(connect(l.url, { ...client({ term: 4 }), link: 'net' }))).toBe('FTVM_ERR_STALE_TERM');
  });

  it('closes a connection that never says hello with 4007', async () => {
    const { l } = await server({ handshakeTimeoutMs: 100 });
    expect(await rawClose(l.url)).toBe(4007);
  });

  it('accepts only small messages before the handshake, full-size ones after it', async () => {
    const { l, links } = await server();
    expect(await rawClose(l.url, new Uint8Array(20 * 1024))).toBe(1009);
    const c = await connect(l.url, { ...client(), link: 'net' });
    await new Promise((r) => setTimeout(r, 10));
    const got = nextMessage(links[0]!.link);
    c.send({ t: 'input', term: 5, conn: 1, offset: 0 }, new Uint8Array(1 << 20));
    expect((await got).payload.length).toBe(1 << 20);
  });

  it('refuses connections beyond maxPendingHandshakes with 4010', async () => {
    const { l } = await server({ maxPendingHandshakes: 1, handshakeTimeoutMs: 300 });
    const first = new WebSocket(l.url);
    first.on('error', () => {});
    await new Promise((r) => first.once('message', r));
    expect(await rawClose(l.url)).toBe(4010);
    first.terminate();
  });

  it('fails connect with HANDSHAKE_TIMEOUT when the server never answers', async () => {
    const { WebSocketServer } = await import('ws');
    const silent = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => silent.once('listening', r));
    const port = (silent.address() as { port: number }).port;
    expect(await rejection(connect(`ws://127.0.0.1:${port}`, { ...client(), link: 'net', timeoutMs: 100 }))).toBe('FTVM_ERR_HANDSHAKE_TIMEOUT');
    await new Promise((r) => silent.close(r));
  });

  it('closes with a coded close on garbage before the hello', async () => {
    const { l } = await server();
    expect(await rawClose(l.url, new Uint8Array([1, 2]))).toBe(4003);
    expect(await rawClose(l.url, 'hello as text')).toBe(4004);
    expect(await rawClose(l.url, encodeFrame({ t: 'fence', term: 1 }))).toBe(4006);
  });

  it('closes an established link on a bad frame and reports the code to both sides', async () => {
    const { c, errors } = await established();
    const url = listeners[listeners.length - 1]!.url;
    const closed = nextClose(c);
    // A message of the replication link on a net link.
    c.sendFrameBytes(encodeFrame({ t: 'ack', term: 5, epoch: 1, digest: new Uint8Array(32) }));
    const { code, reason } = await closed;
    expect(code).toBe(4006);
    expect(reason).toMatch(/^FTVM_ERR_UNEXPECTED_MESSAGE/);
    expect(errors).toEqual(['FTVM_ERR_UNEXPECTED_MESSAGE']);
    // The sender learns why from the close frame.
    const peerErrors: string[] = [];
    const c2 = await connect(url, { ...client(), link: 'net' });
    c2.on('error', (e) => peerErrors.push(e.code));
    const closed2 = nextClose(c2);
    c2.sendFrameBytes(new Uint8Array([9, 9]));
    expect((await closed2).code).toBe(4003);
    expect(peerErrors).toEqual(['FTVM_ERR_FRAME_TRUNCATED']);
  });

  it('closes a fenced link with 4008 when a message from an older term arrives', async () => {
    const { l, links } = await server();
    const c = await connect(l.url, { ...client(), link: 'net' });
    await new Promise((r) => setTimeout(r, 10));
    const s = links[0]!.link;
    s.setMinTerm(6);
    const closed = nextClose(c);
    c.send({ t: 'confirm', term: 5, epoch: 3 });
    expect((await closed).code).toBe(4008);
  });

  it('refuses oversized frames: 4002 within the transport ceiling, 1009 beyond it', async () => {
    const limits = { maxHeaderBytes: 1024, maxPayloadBytes: 4096 };
    const { l } = await server({ limits });
    const c1 = await connect(l.url, { ...client(), link: 'net', limits });
    const closed1 = nextClose(c1);
    const frame = encodeFrame({ t: 'input', term: 5, conn: 1, offset: 0 }, new Uint8Array(4097));
    c1.sendFrameBytes(frame);
    expect((await closed1).code).toBe(4002);
    const c2 = await connect(l.url, { ...client(), link: 'net', limits });
    const closed2 = nextClose(c2);
    c2.sendFrameBytes(new Uint8Array(4 + 1024 + 4096 + 1));
    expect((await closed2).code).toBe(1009);
  });

  it('refuses to queue beyond maxSendBufferedBytes and resolves drained() once flushed', async () => {
    const { l } = await server();
    const c = await connect(l.url, { ...client(), link: 'net', maxSendBufferedBytes: 1 << 20 });
    const chunk = new Uint8Array(256 * 1024);
    let code = 'no error';
    try {
      for (let i = 0; i < 64; i++) c.send({ t: 'input', term: 5, conn: 1, offset: i * chunk.length }, chunk);
    } catch (e) {
      code = (e as { code: string }).code;
    }
    expect(code).toBe('FTVM_ERR_SEND_BUFFER_FULL');
    await c.drained(0);
    expect(c.bufferedAmount).toBe(0);
  });

  it('refuses to send a message the link does not carry, or on a closed link', async () => {
    const { l } = await server();
    const c = await connect(l.url, { ...client(), link: 'control' });
    expect(() => c.send({ t: 'input', term: 5, conn: 1, offset: 0 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_UNEXPECTED_MESSAGE' }));
    c.close();
    expect(() => c.send({ t: 'fence', term: 1 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_LINK_CLOSED' }));
  });

  it('fails connect with CONNECT_FAILED when nothing listens', async () => {
    const { l } = await server();
    const url = l.url;
    await l.close();
    listeners.length = 0;
    expect(await rejection(connect(url, { ...client(), link: 'net', timeoutMs: 2000 }))).toBe('FTVM_ERR_CONNECT_FAILED');
  });
});

/** Counts the WebSocket messages `link` hands to ws, and which of them are batches. */
function wireSpy(link: Link): { messages: Uint8Array[] } {
  const ws = (link as unknown as { ws: WebSocket }).ws;
  const messages: Uint8Array[] = [];
  const orig = ws.send.bind(ws);
  (ws as unknown as { send: (d: Uint8Array, o: unknown, cb?: () => void) => void }).send = (d, o, cb) => {
    messages.push(new Uint8Array(d));
    orig(d, o as never, cb);
  };
  return { messages };
}

describe('batching per event-loop turn', () => {
  it('sends the small messages of one turn as one batch under one MAC, in order', async () => {
    const { c, s } = await established();
    const spy = wireSpy(c);
    const got: Array<{ offset: number; bytes: number[] }> = [];
    s.on('message', (msg, payload) => got.push({ offset: (msg as { offset: number }).offset, bytes: [...payload] }));
    for (let i = 0; i < 50; i++) c.send({ t: 'input', term: 5, conn: 1, offset: i }, new Uint8Array([i]));
    // Nothing left yet: the batch leaves at the end of the turn.
    expect(spy.messages).toHaveLength(0);
    expect(c.bufferedAmount).toBeGreaterThan(50);
    await new Promise((r) => setTimeout(r, 50));
    expect(spy.messages).toHaveLength(1);
    expect(isBatch(spy.messages[0]!)).toBe(true);
    expect(got.map((g) => g.offset)).toEqual([...Array(50).keys()]);
    expect(got.map((g) => g.bytes[0])).toEqual([...Array(50).keys()]);
    // A lone message of a later turn travels as a plain frame.
    c.send({ t: 'input', term: 5, conn: 1, offset: 50 }, new Uint8Array([50]));
    await new Promise((r) => setTimeout(r, 50));
    expect(spy.messages).toHaveLength(2);
    expect(isBatch(spy.messages[1]!)).toBe(false);
    expect(got).toHaveLength(51);
  });

  it('keeps order around a large frame, which leaves alone, and bounds a batch by size', async () => {
    const { c, s } = await established();
    const spy = wireSpy(c);
    const got: number[] = [];
    s.on('message', (msg) => got.push((msg as { offset: number }).offset));
    c.send({ t: 'input', term: 5, conn: 1, offset: 0 }, new Uint8Array(10));
    c.send({ t: 'input', term: 5, conn: 1, offset: 10 }, new Uint8Array(100 * 1024));
    for (let i = 0; i < 40; i++) c.send({ t: 'input', term: 5, conn: 1, offset: 102410 + i * 4096 }, new Uint8Array(4096));
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([0, 10, ...Array.from({ length: 40 }, (_, i) => 102410 + i * 4096)]);
    // The small frame before the large one, the large one alone, then batches of at most 64 KiB + MAC.
    expect(spy.messages.length).toBeGreaterThanOrEqual(4);
    expect(isBatch(spy.messages[1]!)).toBe(false);
    for (const m of spy.messages) if (isBatch(m)) expect(m.length).toBeLessThanOrEqual(64 * 1024 + 16);
  });

  it('sends what a turn queued before closing, and a batch never exceeds a small frame ceiling', async () => {
    const limits = { maxHeaderBytes: 1024, maxPayloadBytes: 4096 };
    const { l, links } = await server({ limits });
    const c = await connect(l.url, { ...client(), link: 'net', limits });
    await new Promise((r) => setTimeout(r, 10));
    const s = links[0]!.link;
    const got: number[] = [];
    s.on('message', (msg) => got.push((msg as { offset: number }).offset));
    const closed = nextClose(s);
    for (let i = 0; i < 20; i++) c.send({ t: 'input', term: 5, conn: 1, offset: i * 1000 }, new Uint8Array(1000));
    c.close();
    expect((await closed).code).toBe(4000);
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i * 1000));
  });

  it('closes with a coded error on a malformed batch, before delivering any of it', async () => {
    const cases: Array<[Uint8Array, number, string]> = [
      // The mark and nothing after it.
      [new Uint8Array(new Uint32Array([BATCH_MARK]).buffer), 4003, 'FTVM_ERR_FRAME_TRUNCATED'],
      // A frame length running past the end.
      [(() => { const b = encodeBatch([encodeFrame({ t: 'confirm', term: 5, epoch: 1 })]); new DataView(b.buffer).setUint32(4, 1000, true); return b; })(), 4003, 'FTVM_ERR_FRAME_TRUNCATED'],
      // A frame length below the smallest frame.
      [(() => { const b = encodeBatch([encodeFrame({ t: 'confirm', term: 5, epoch: 1 })]); new DataView(b.buffer).setUint32(4, 2, true); return b; })(), 4004, 'FTVM_ERR_FRAME_MALFORMED'],
      // A good frame, then one the link does not carry.
      [encodeBatch([encodeFrame({ t: 'confirm', term: 5, epoch: 1 }), encodeFrame({ t: 'ack', term: 5, epoch: 1, digest: new Uint8Array(32) })]), 4006, 'FTVM_ERR_UNEXPECTED_MESSAGE'],
    ];
    for (const [bytes, code, err] of cases) {
      const { c, s, errors } = await established();
      const got: string[] = [];
      s.on('message', (msg) => got.push(msg.t));
      const closed = nextClose(c);
      c.sendFrameBytes(bytes);
      expect((await closed).code).toBe(code);
      expect(errors).toEqual([err]);
      // Only a batch that parsed whole delivers its frames (up to the bad one).
      expect(got).toEqual(code === 4006 ? ['confirm'] : []);
    }
  });
});

describe('loadToken', () => {
  it('prefers the token file, trimmed, over the environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-token-'));
    writeFileSync(join(dir, 't'), '  abc\n');
    expect(loadToken({ tokenFile: join(dir, 't'), env: 'envtoken' })).toEqual({ token: new TextEncoder().encode('abc'), source: 'file' });
    expect(loadToken({ env: 'envtoken' }).source).toBe('env');
    expect(() => loadToken({ env: '' })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_NO_TOKEN', message: expect.stringMatching(/ftvm token/) }));
    expect(loadToken({ env: '', insecure: true }).source).toBe('none');
    expect(loadToken({ env: '', insecure: true }).token.length).toBe(0);
    const saved = process.env.FTVM_TOKEN;
    process.env.FTVM_TOKEN = 'from-env';
    try {
      expect(loadToken()).toEqual({ token: new TextEncoder().encode('from-env'), source: 'env' });
    } finally {
      if (saved === undefined) delete process.env.FTVM_TOKEN;
      else process.env.FTVM_TOKEN = saved;
    }
  });

  it('refuses a missing or empty token file with a coded error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-token-'));
    writeFileSync(join(dir, 'empty'), '\n');
    expect(() => loadToken({ tokenFile: join(dir, 'empty') })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_TOKEN_FILE' }));
    expect(() => loadToken({ tokenFile: join(dir, 'absent') })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_TOKEN_FILE' }));
  });
});

describe('frame authentication (links without TLS)', () => {
  it('closes a link with FRAME_AUTH (4011) when a frame without a valid MAC is injected', async () => {
    const { c, errors } = await established();
    // A well-formed frame written straight onto the socket, as an on-path attacker would.
    const closed = nextClose(c);
    (c as unknown as { ws: WebSocket }).ws.send(encodeFrame({ t: 'input', term: 5, conn: 1, offset: 0 }, new Uint8Array([1])));
    expect((await closed).code).toBe(4011);
    expect(errors).toEqual(['FTVM_ERR_FRAME_AUTH']);
  });

  it('refuses a replayed frame (the MAC covers a per-direction sequence number)', async () => {
    const { c, s } = await established();
    const seen: Uint8Array[] = [];
    const ws = (c as unknown as { ws: WebSocket }).ws;
    const origSend = ws.send.bind(ws);
    (ws as unknown as { send: (d: Uint8Array, o: unknown, cb?: () => void) => void }).send = (d, o, cb) => {
      seen.push(new Uint8Array(d));
      origSend(d, o as never, cb);
    };
    const got = nextMessage(s);
    c.send({ t: 'input', term: 5, conn: 1, offset: 0 }, new Uint8Array([7]));
    await got;
    const closed = nextClose(c);
    origSend(seen[0]!);
    expect((await closed).code).toBe(4011);
  });
});

describe.runIf(haveTool('openssl'))('TLS links', () => {
  let certs!: TestCerts;
  let serverTls!: TlsOptions;
  let clientTls!: TlsOptions;
  beforeAll(() => {
    certs = makeTestCerts();
    serverTls = { cert: certs.read(certs.serverCert), key: certs.read(certs.serverKey), ca: certs.read(certs.ca) };
    clientTls = { cert: certs.read(certs.clientCert), key: certs.read(certs.clientKey), ca: certs.read(certs.ca) };
  });

  it('carries messages over wss:// with mutual TLS; frames carry no MAC then', async () => {
    const { l, links } = await server({ tls: serverTls });
    expect(l.url).toMatch(/^wss:\/\//);
    const c = await connect(l.url, { ...client(), link: 'net', tls: clientTls });
    await new Promise((r) => setTimeout(r, 10));
    const got = nextMessage(links[0]!.link);
    c.send({ t: 'input', term: 5, conn: 1, offset: 0 }, new TextEncoder().encode('over tls'));
    expect(new TextDecoder().decode((await got).payload)).toBe('over tls');
    c.close();
  });

  it('refuses a client without a certificate from the CA, and a client that does not trust the server', async () => {
    const { l } = await server({ tls: serverTls });
    const rogue = { cert: certs.read(certs.rogueCert), key: certs.read(certs.rogueKey), ca: certs.read(certs.ca) };
    expect(await rejection(connect(l.url, { ...client(), link: 'net', tls: rogue, timeoutMs: 3000 }))).toMatch(/FTVM_ERR_(CONNECT_FAILED|LINK_CLOSED)/);
    expect(await rejection(connect(l.url, { ...client(), link: 'net', tls: { ca: certs.read(certs.ca) }, timeoutMs: 3000 }))).toMatch(/FTVM_ERR_(CONNECT_FAILED|LINK_CLOSED)/);
    expect(await rejection(connect(l.url, { ...client(), link: 'net', tls: { ...clientTls, ca: certs.read(certs.rogueCert) }, timeoutMs: 3000 }))).toBe('FTVM_ERR_CONNECT_FAILED');
    // ws:// to a wss:// listener and the reverse are configuration errors.
    expect(await rejection(connect(l.url.replace('wss:', 'ws:'), { ...client(), link: 'net', tls: clientTls }))).toBe('FTVM_ERR_TLS_CONFIG');
    expect(await rejection(connect(l.url, { ...client(), link: 'net' }))).toBe('FTVM_ERR_TLS_CONFIG');
    await expect(listen({ port: 0, token, identity: () => ({ nodeId: 'x', role: 'primary', term: 0, epoch: 0 }), onLink: () => {}, tls: { ca: serverTls.ca } })).rejects.toMatchObject({ code: 'FTVM_ERR_TLS_CONFIG' });
  });
});

describe('listener bounds', () => {
  it('refuses links beyond maxLinks with BUSY and serves again once one closes', async () => {
    const { l } = await server({ maxLinks: 2 });
    const a = await connect(l.url, { ...client(), link: 'net' });
    await connect(l.url, { ...client(), link: 'net' });
    expect(await rejection(connect(l.url, { ...client(), link: 'net' }))).toMatch(/FTVM_ERR_(BUSY|CONNECT_FAILED)/);
    expect(l.stats.refusedBusy + l.stats.droppedConnections).toBeGreaterThan(0);
    a.close();
    await new Promise((r) => setTimeout(r, 100));
    const again = await connect(l.url, { ...client(), link: 'net' });
    expect(again.closed).toBe(false);
  });
});
