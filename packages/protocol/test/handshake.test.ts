import { describe, expect, it } from 'vitest';
import {
  ClientHandshake, PROTOCOL_VERSION, ProtocolError, ServerHandshake, decodeFrame, encodeFrame,
  type Hello, type Message, type ServerIdentity, type Welcome,
} from '../src/index.js';

const token = new TextEncoder().encode('s3cret');
const identity = (): ServerIdentity => ({ nodeId: 'sec-1', role: 'secondary', term: 3, epoch: 41 });
/** Messages cross the wire as bytes in these tests. */
const wire = (m: Message): Message => decodeFrame(encodeFrame(m)).msg;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'no error';
}

function run(clientToken: Uint8Array, serverToken: Uint8Array, accept?: (h: Hello) => void, version?: number, insecure?: boolean) {
  const server = new ServerHandshake({ token: serverToken, identity, accept, insecure });
  const client = new ClientHandshake({ token: clientToken, hello: { role: 'primary', link: 'replication', nodeId: 'pri-1', term: 3, epoch: 40 }, version, insecure });
  const hello = client.receive(wire(server.start())).reply!;
  const step = server.receive(wire(hello));
  const done = client.receive(wire(step.reply)).done!;
  return { hello: step.done!, welcome: done };
}

describe('handshake', () => {
  it('authenticates both sides with a shared token', () => {
    const { hello, welcome } = run(token, token);
    expect(hello).toMatchObject({ role: 'primary', link: 'replication', nodeId: 'pri-1', term: 3, epoch: 40 });
    expect(welcome).toMatchObject({ nodeId: 'sec-1', role: 'secondary', term: 3, epoch: 41 });
  });

  it('refuses an empty token (NO_TOKEN) unless both sides chose --insecure', () => {
    expect(codeOf(() => run(new Uint8Array(0), new Uint8Array(0)))).toBe('FTVM_ERR_NO_TOKEN');
    expect(codeOf(() => new ServerHandshake({ token: new Uint8Array(0), identity }))).toBe('FTVM_ERR_NO_TOKEN');
    expect(run(new Uint8Array(0), new Uint8Array(0), undefined, undefined, true).welcome.nodeId).toBe('sec-1');
  });

  it('refuses a client with the wrong token as AUTH_FAILED', () => {
    expect(codeOf(() => run(new TextEncoder().encode('guess'), token))).toBe('FTVM_ERR_AUTH_FAILED');
    // An insecure client (empty key) cannot talk to a node that has a token.
    expect(codeOf(() => run(new Uint8Array(0), token, undefined, undefined, true))).toBe('FTVM_ERR_AUTH_FAILED');
  });

  it('gives both ends the same per-direction frame keys, different per session', () => {
    const mk = () => {
      const server = new ServerHandshake({ token, identity });
      const client = new ClientHandshake({ token, hello: { role: 'proxy', link: 'net', nodeId: 'px', term: 1 } });
      const hello = client.receive(wire(server.start())).reply!;
      client.receive(wire(server.receive(wire(hello)).reply));
      return { c: client.keys!, s: server.keys! };
    };
    const a = mk();
    expect(Buffer.from(a.c.send).equals(Buffer.from(a.s.recv))).toBe(true);
    expect(Buffer.from(a.c.recv).equals(Buffer.from(a.s.send))).toBe(true);
    expect(Buffer.from(a.c.send).equals(Buffer.from(a.c.recv))).toBe(false);
    expect(Buffer.from(mk().c.send).equals(Buffer.from(a.c.send))).toBe(false);
  });

  it('binds the proofs to the TLS session: a different binding fails', () => {
    const server = new ServerHandshake({ token, identity, binding: new Uint8Array(32).fill(1) });
    const client = new ClientHandshake({ token, hello: { role: 'proxy', link: 'net', nodeId: 'px', term: 1 } });
    client.bind(new Uint8Array(32).fill(2));
    const hello = client.receive(wire(server.start())).reply!;
    expect(codeOf(() => server.receive(wire(hello)))).toBe('FTVM_ERR_AUTH_FAILED');
  });

  it('refuses a hello whose fields were changed after signing', () => {
    const server = new ServerHandshake({ token, identity });
    const client = new ClientHandshake({ token, hello: { role: 'proxy', link: 'net', nodeId: 'px', term: 1 } });
    const hello = client.receive(server.start()).reply as Hello;
    expect(codeOf(() => server.receive({ ...hello, term: 9 }))).toBe('FTVM_ERR_AUTH_FAILED');
  });

  it('refuses a hello replayed against a new challenge', () => {
    const first = new ServerHandshake({ token, identity });
    const client = new ClientHandshake({ token, hello: { role: 'proxy', link: 'net', nodeId: 'px', term: 1 } });
    const hello = client.receive(first.start()).reply as Hello;
    const second = new ServerHandshake({ token, identity });
    second.start();
    expect(codeOf(() => second.receive(hello))).toBe('FTVM_ERR_AUTH_FAILED');
  });

  it('lets the client detect a server that does not know the token', () => {
    const server = new ServerHandshake({ token: new TextEncoder().encode('other'), identity });
    const client = new ClientHandshake({ token, hello: { role: 'proxy', link: 'net', nodeId: 'px', term: 1 } });
    const hello = client.receive(server.start()).reply as Hello;
    // A server without the token cannot verify the hello; one that skips the check still cannot forge the welcome.
    const forged: Welcome = { t: 'welcome', nodeId: 'evil', role: 'primary', term: 1, epoch: 0, proof: hello.proof };
    expect(codeOf(() => client.receive(forged))).toBe('FTVM_ERR_AUTH_FAILED');
  });

  it('refuses a wrong protocol version on either side', () => {
    expect(codeOf(() => run(token, token, undefined, PROTOCOL_VERSION + 1))).toBe('FTVM_ERR_PROTO_VERSION');
    const client = new ClientHandshake({ token, hello: { role: 'cli', link: 'control', nodeId: 'c', term: 0 } });
    expect(codeOf(() => client.receive({ t: 'challenge', version: 7, nonce: new Uint8Array(32) }))).toBe('FTVM_ERR_PROTO_VERSION');
  });

  it('lets the accept hook refuse a stale term', () => {
    const accept = (h: Hello): void => {
      if (h.term < 4) throw new ProtocolError('FTVM_ERR_STALE_TERM', `term ${h.term} < 4`);
    };
    expect(codeOf(() => run(token, token, accept))).toBe('FTVM_ERR_STALE_TERM');
  });

  it('turns a reject into an error carrying the peer code', () => {
    const client = new ClientHandshake({ token, hello: { role: 'cli', link: 'control', nodeId: 'c', term: 0 } });
    expect(codeOf(() => client.receive({ t: 'reject', code: 'FTVM_ERR_STALE_TERM', message: 'old' }))).toBe('FTVM_ERR_STALE_TERM');
  });

  it('refuses messages out of order', () => {
    const server = new ServerHandshake({ token, identity });
    server.start();
    expect(codeOf(() => server.receive({ t: 'fence', term: 1 }))).toBe('FTVM_ERR_UNEXPECTED_MESSAGE');
    const client = new ClientHandshake({ token, hello: { role: 'cli', link: 'control', nodeId: 'c', term: 0 } });
    expect(codeOf(() => client.receive({ t: 'welcome', nodeId: 'x', role: 'primary', term: 0, epoch: 0, proof: new Uint8Array(32) }))).toBe('FTVM_ERR_UNEXPECTED_MESSAGE');
  });
});
