import { describe, it, expect, beforeEach } from 'vitest';
import { GuestHarness } from './harness.js';

const C = 7;
let h: GuestHarness;
beforeEach(() => {
  h = GuestHarness.load('http').init();
  h.open(C);
});

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: localhost:8080\r\n${extra}\r\n`;
}

function put(path: string, body: string, extra = ''): string {
  return `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

interface Resp {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits concatenated HTTP responses (Content-Length framed). */
function parse(text: string): Resp[] {
  const out: Resp[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    expect(end).toBeGreaterThan(0);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine!);
    expect(m, statusLine).not.toBeNull();
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = Number(headers['content-length']);
    out.push({ status: Number(m![1]), headers, body: rest.slice(end + 4, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

function req(input: string): Resp[] {
  h.data(C, input);
  return parse(h.text(C));
}

describe('http guest', () => {
  it('answers GET / with a small fixed body and keeps the connection open', () => {
    const [r] = req(get('/'));
    expect(r).toEqual({ status: 200, headers: { 'content-length': '16', 'content-type': 'text/plain' }, body: 'Hello from ftvm\n' });
    expect(h.closed.has(C)).toBe(false);
    expect(req(get('/'))[0]!.status).toBe(200);
  });

  it('counts GET and POST /counter', () => {
    expect(req(get('/counter'))[0]!.body).toBe('1\n');
    expect(req('POST /counter HTTP/1.1\r\nContent-Length: 0\r\n\r\n')[0]!.body).toBe('2\n');
    h.open(8);
    h.data(8, get('/counter'));
    expect(parse(h.text(8))[0]!.body).toBe('3\n');
  });

  it('stores objects with PUT and serves them with GET, 404 when missing', () => {
    expect(req(get('/obj/a'))[0]!.status).toBe(404);
    expect(req(put('/obj/a', 'hello body'))[0]!.status).toBe(201);
    expect(req(get('/obj/a'))[0]!.body).toBe('hello body');
    expect(req(put('/obj/a', 'v2'))[0]!.status).toBe(200);
    expect(req(get('/obj/a'))[0]!.body).toBe('v2');
    expect(req(`DELETE /obj/a HTTP/1.1\r\n\r\n`)[0]!.status).toBe(204);
    expect(req(get('/obj/a'))[0]!.status).toBe(404);
    expect(req(get('/nope'))[0]!.status).toBe(404);
  });

  it('answers pipelined requests in order', () => {
    const rs = req(get('/') + put('/obj/x', 'X') + get('/obj/x') + get('/counter') + get('/counter'));
    expect(rs.map((r) => r.status)).toEqual([200, 201, 200, 200, 200]);
    expect(rs.map((r) => r.body)).toEqual(['Hello from ftvm\n', 'Created\n', 'X', '1\n', '2\n']);
  });

  it('answers the same pipeline split at every byte boundary', () => {
    const input = Buffer.from(put('/obj/k', 'some body') + get('/obj/k') + get('/'));
    h.data(C, input);
    const whole = h.text(C);
    for (let cut = 1; cut < input.length; cut++) {
      h = GuestHarness.load('http').init();
      h.data(C, input.subarray(0, cut));
      h.data(C, input.subarray(cut));
      expect(h.text(C), `cut at ${cut}`).toBe(whole);
    }
  });

  it('honours Connection: close and HTTP/1.0 defaults', () => {
    const [r] = req(get('/', 'Connection: close\r\n') + get('/'));
    expect(r!.headers.connection).toBe('close');
    expect(h.closed.has(C)).toBe(true);
    h.open(9);
    h.data(9, 'GET / HTTP/1.0\r\n\r\n');
    expect(parse(h.text(9))[0]!.status).toBe(200);
    expect(h.closed.has(9)).toBe(true);
    h.open(10);
    h.data(10, 'GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n');
    expect(parse(h.text(10))[0]!.status).toBe(200);
    expect(h.closed.has(10)).toBe(false);
  });

  it('answers a malformed request with 400 and closes', () => {
    for (const bad of ['GARBAGE\r\n\r\n', 'GET nopath HTTP/1.1\r\n\r\n', 'GET / HTTP/1.1\r\nNoColon\r\n\r\n', 'GET / FTP/1.0\r\n\r\n', 'GET / HTTP/1.1\r\nContent-Length: -3\r\n\r\n']) {
      h = GuestHarness.load('http').init();
      const [r] = req(bad);
      expect(r!.status, JSON.stringify(bad)).toBe(400);
      expect(r!.headers.connection).toBe('close');
      expect(h.closed.has(C)).toBe(true);
    }
  });

  it('refuses chunked bodies, oversized headers and oversized bodies, then closes', () => {
    expect(req('PUT /obj/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n')[0]!.status).toBe(501);
    h = GuestHarness.load('http').init();
    expect(req(`GET / HTTP/1.1\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`)[0]!.status).toBe(431);
    h = GuestHarness.load('http').init();
    expect(req(`PUT /obj/a HTTP/1.1\r\nContent-Length: ${2 << 20}\r\n\r\n`)[0]!.status).toBe(413);
    expect(h.closed.has(C)).toBe(true);
  });

  it('frees delivery buffers: memory stays flat over many large deliveries', () => {
    const body = 'b'.repeat(32 * 1024);
    h.data(C, put('/obj/warm', body));
    h.text(C);
    const before = h.mem().length;
    for (let i = 0; i < 2000; i++) {
      h.data(C, put('/obj/same', body));
      h.text(C);
    }
    expect(h.mem().length).toBeLessThanOrEqual(before + (4 << 20));
  });
});
