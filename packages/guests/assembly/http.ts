// http: an HTTP/1.1 keep-alive server, the workload for `wrk`.
//   GET /                 small fixed body
//   GET|POST /counter     increments a counter and returns its value (GET too, so a
//                         plain `wrk` run changes guest state on every request)
//   PUT /obj/<name>       stores the body (Content-Length bodies only)
//   GET /obj/<name>       the stored body, 404 when missing
//   DELETE /obj/<name>    removes it
// Pipelined requests are answered in order; `Connection: close` (and HTTP/1.0
// without keep-alive) closes after the reply; a malformed request gets 400 and close.

import {
  Guest, setGuest, InputBuffer, ByteWriter, BytesMap, bytesEqualAscii, copyBytes, parseI64, parseOk,
  close, indexOfBytes,
} from "@ftvm/guest-sdk/assembly";
export * from "@ftvm/guest-sdk/assembly/exports";

/** Request line + headers, bytes. */
const MAX_HEADER_BYTES: i32 = 8192;
/** One request body, bytes. */
const MAX_BODY_BYTES: i32 = 1 << 20;
/** Stored objects: count, name bytes and total body bytes. */
const MAX_OBJECTS: i32 = 10000;
const MAX_NAME_BYTES: i32 = 256;
const MAX_STORE_BYTES: i64 = 64 << 20;
/** Replies are sent once they reach this many bytes. */
const FLUSH_BYTES: i32 = 1 << 20;

const ROOT_BODY = "Hello from ftvm\n";

class Conn {
  input: InputBuffer = new InputBuffer(MAX_HEADER_BYTES + MAX_BODY_BYTES);
  closing: bool = false;
}

let conns = new Map<i32, Conn>();
let objects = new BytesMap<ArrayBuffer>();
let storeBytes: i64 = 0;
let counter: i64 = 0;
let requests: i64 = 0;
const out = new ByteWriter();
const CRLFCRLF: usize = memory.data<u8>([13, 10, 13, 10]);

function status(code: i32): string {
  switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Error";
  }
}

function head(code: i32, bodyLen: i32, closing: bool): void {
  out.ascii("HTTP/1.1 ").int(code).byte(32).ascii(status(code)).ascii("\r\nContent-Length: ").int(bodyLen);
  if (bodyLen > 0) out.ascii("\r\nContent-Type: text/plain");
  if (closing) out.ascii("\r\nConnection: close");
  out.ascii("\r\n\r\n");
}

function reply(code: i32, body: string, closing: bool): void {
  head(code, body.length, closing);
  out.ascii(body);
}

/** Replies with an error status and marks the connection for closing. */
function fail(c: Conn, code: i32): void {
  reply(code, status(code) + "\n", true);
  c.closing = true;
}

// ---- request parsing ----------------------------------------------------------

// The request being handled: method and target point into the input buffer.
let mPtr: usize = 0;
let mLen: i32 = 0;
let tPtr: usize = 0;
let tLen: i32 = 0;

function isToken(c: u32): bool {
  return c > 32 && c < 127 && c != 40 && c != 41 && c != 44 && c != 47 && c != 58 && c != 59 &&
    c != 60 && c != 61 && c != 62 && c != 63 && c != 64 && c != 91 && c != 92 && c != 93 &&
    c != 123 && c != 125 && c != 34;
}

/** Does header value [p, p+n) contain the comma-separated token `tok` (ci)? */
function hasToken(p: usize, n: i32, tok: string): bool {
  let i = 0;
  while (i < n) {
    while (i < n && (load<u8>(p + <usize>i) == 32 || load<u8>(p + <usize>i) == 9 || load<u8>(p + <usize>i) == 44)) i++;
    let s = i;
    while (i < n && load<u8>(p + <usize>i) != 44) i++;
    let e = i;
    while (e > s && (load<u8>(p + <usize>(e - 1)) == 32 || load<u8>(p + <usize>(e - 1)) == 9)) e--;
    if (e > s && bytesEqualAscii(p + <usize>s, e - s, tok, true)) return true;
  }
  return false;
}

/**
 * Handles one request at the front of [p, p+n). Returns bytes consumed, 0 when the
 * request is incomplete. On a malformed request it replies, sets c.closing and
 * returns n (the rest of the input is discarded).
 */
function handle(c: Conn, p: usize, n: i32): i32 {
  // Tolerate empty lines before a request (RFC 9112 2.2).
  let skip = 0;
  while (skip < n && (load<u8>(p + <usize>skip) == 13 || load<u8>(p + <usize>skip) == 10)) skip++;
  if (skip > 0) return skip;

  let hend = indexOfBytes(p, min(n, MAX_HEADER_BYTES), CRLFCRLF, 4);
  if (hend < 0) {
    if (n >= MAX_HEADER_BYTES) { fail(c, 431); return n; }
    return 0;
  }
  // Request line: METHOD SP target SP HTTP/1.x CRLF
  let lineEnd = indexOfBytes(p, hend + 2, CRLFCRLF, 2);
  let i = 0;
  while (i < lineEnd && isToken(<u32>load<u8>(p + <usize>i))) i++;
  if (i == 0 || i >= lineEnd || load<u8>(p + <usize>i) != 32) { fail(c, 400); return n; }
  mPtr = p; mLen = i;
  let ts = i + 1;
  let te = ts;
  while (te < lineEnd && load<u8>(p + <usize>te) > 32 && load<u8>(p + <usize>te) < 127) te++;
  if (te == ts || te >= lineEnd || load<u8>(p + <usize>te) != 32 || load<u8>(p + <usize>ts) != 47) { fail(c, 400); return n; }
  tPtr = p + <usize>ts; tLen = te - ts;
  let vp = p + <usize>(te + 1);
  let vlen = lineEnd - te - 1;
  let http10 = false;
  if (bytesEqualAscii(vp, vlen, "HTTP/1.1")) http10 = false;
  else if (bytesEqualAscii(vp, vlen, "HTTP/1.0")) http10 = true;
  else if (vlen == 8 && bytesEqualAscii(vp, 5, "HTTP/")) { fail(c, 505); return n; }
  else { fail(c, 400); return n; }

  // Headers
  let contentLength: i64 = -1;
  let keepAlive = !http10;
  let pos = lineEnd + 2;
  while (pos < hend + 2) {
    let le = indexOfBytes(p + <usize>pos, hend + 2 - pos, CRLFCRLF, 2) + pos;
    let colon = -1;
    for (let k = pos; k < le; k++) if (load<u8>(p + <usize>k) == 58) { colon = k; break; }
    if (colon <= pos) { fail(c, 400); return n; }
    for (let k = pos; k < colon; k++) if (!isToken(<u32>load<u8>(p + <usize>k))) { fail(c, 400); return n; }
    let np = p + <usize>pos;
    let nlen = colon - pos;
    let vs = colon + 1;
    let ve = le;
    while (vs < ve && (load<u8>(p + <usize>vs) == 32 || load<u8>(p + <usize>vs) == 9)) vs++;
    while (ve > vs && (load<u8>(p + <usize>(ve - 1)) == 32 || load<u8>(p + <usize>(ve - 1)) == 9)) ve--;
    let hv = p + <usize>vs;
    let hvl = ve - vs;
    if (bytesEqualAscii(np, nlen, "content-length", true)) {
      let v = parseI64(hv, hvl);
      if (!parseOk || v < 0 || (contentLength >= 0 && contentLength != v)) { fail(c, 400); return n; }
      contentLength = v;
    } else if (bytesEqualAscii(np, nlen, "transfer-encoding", true)) {
      // Chunked bodies are not supported: refuse rather than misread the stream.
      fail(c, 501);
      return n;
    } else if (bytesEqualAscii(np, nlen, "connection", true)) {
      if (hasToken(hv, hvl, "close")) keepAlive = false;
      else if (hasToken(hv, hvl, "keep-alive")) keepAlive = true;
    }
    pos = le + 2;
  }
  let bodyLen: i32 = contentLength < 0 ? 0 : <i32>min(contentLength, <i64>(MAX_BODY_BYTES + 1));
  if (contentLength > <i64>MAX_BODY_BYTES) { fail(c, 413); return n; }
  let total = hend + 4 + bodyLen;
  if (n < total) return 0;
  requests++;
  route(c, p + <usize>(hend + 4), bodyLen, !keepAlive);
  if (!keepAlive) c.closing = true;
  return total;
}

function route(c: Conn, body: usize, bodyLen: i32, closing: bool): void {
  let get = bytesEqualAscii(mPtr, mLen, "GET");
  if (bytesEqualAscii(tPtr, tLen, "/")) {
    if (get) reply(200, ROOT_BODY, closing); else reply(405, "Method Not Allowed\n", closing);
    return;
  }
  if (bytesEqualAscii(tPtr, tLen, "/counter")) {
    if (get || bytesEqualAscii(mPtr, mLen, "POST")) {
      counter++;
      let w = new ByteWriter();
      w.int(counter).byte(10);
      head(200, w.len, closing);
      out.bytes(w.ptr, w.len);
      w.free();
    } else reply(405, "Method Not Allowed\n", closing);
    return;
  }
  if (tLen > 5 && bytesEqualAscii(tPtr, 5, "/obj/")) {
    let np = tPtr + 5;
    let nl = tLen - 5;
    if (nl > MAX_NAME_BYTES) { reply(414, "URI Too Long\n", closing); return; }
    if (get) {
      let e = objects.find(np, nl);
      if (e === null) { reply(404, "Not Found\n", closing); return; }
      head(200, e.value.byteLength, closing);
      out.buffer(e.value);
    } else if (bytesEqualAscii(mPtr, mLen, "PUT")) {
      let e = objects.find(np, nl);
      let old: i64 = e === null ? 0 : <i64>e.value.byteLength;
      if ((e === null && objects.size >= MAX_OBJECTS) || storeBytes - old + <i64>bodyLen > MAX_STORE_BYTES) {
        reply(507, "Insufficient Storage\n", closing);
        return;
      }
      storeBytes += <i64>bodyLen - old;
      objects.set(np, nl, copyBytes(body, bodyLen));
      if (e === null) reply(201, "Created\n", closing); else reply(200, "Updated\n", closing);
    } else if (bytesEqualAscii(mPtr, mLen, "DELETE")) {
      let e = objects.find(np, nl);
      if (e === null) { reply(404, "Not Found\n", closing); return; }
      storeBytes -= <i64>e.value.byteLength;
      objects.deleteEntry(e);
      head(204, 0, closing);
    } else reply(405, "Method Not Allowed\n", closing);
    return;
  }
  reply(404, "Not Found\n", closing);
}

class Http extends Guest {
  onOpen(conn: i32): void {
    conns.set(conn, new Conn());
  }

  onData(conn: i32, ptr: usize, len: i32): void {
    let c: Conn;
    if (conns.has(conn)) c = conns.get(conn);
    else { c = new Conn(); conns.set(conn, c); }
    if (c.closing) return;
    // Parsed in place unless a partial request is pending (see InputBuffer.take). More
    // pending input than a maximal request: the client ignores our limits.
    if (!c.input.take(ptr, len)) {
      fail(c, 413);
    } else {
      let buf = c.input;
      while (buf.length > 0 && !c.closing) {
        let used = handle(c, buf.data(), buf.length);
        if (used == 0) break;
        buf.consume(used);
        if (out.pending >= FLUSH_BYTES) out.flush(conn);
      }
      if (!c.closing && !buf.settle()) fail(c, 413);
    }
    out.flush(conn);
    if (c.closing) {
      c.input.free();
      close(conn);
    }
  }

  onClose(conn: i32): void {
    if (conns.has(conn)) {
      conns.get(conn).input.free();
      conns.delete(conn);
    }
  }
}

setGuest(new Http());
