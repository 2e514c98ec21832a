// The fast path's reading of an upstream response head. A head is taken only when llhttp (the
// parser node:http and undici run, strict) would take it with the same status, fields and framing;
// a few more are refused where RFC 9112 lets a proxy refuse rather than guess (see the list below).
// A refused head becomes a 502 for the client and the upstream connection is not reused. The head
// for the client is the upstream's, copied in slices, minus hop-by-hop fields; framing is decided
// from the fields that are forwarded.
//
// Refused although llhttp accepts them:
// - a version other than HTTP/1.0 and HTTP/1.1 (llhttp also takes HTTP/0.9, HTTP/2.0, RTSP/, ICE/);
// - a status below 100, or a reason phrase with a control character other than HTAB;
// - 101 (the fast path never asks for an upgrade), and a 1xx with Content-Length or Transfer-Encoding;
// - Transfer-Encoding other than one field saying `chunked` (a coding the sidecar would have to
//   drop with the field, or a list llhttp reads one way and other parsers another);
// - Content-Length above 2^53 - 1; a head of more than MAX_RESPONSE_HEAD bytes (node counts a little
//   less of it against the same 16 KiB); empty lines before the status line.

export const Framing = { None: 0, Length: 1, Chunked: 2, UntilClose: 3 } as const;
export type Framing = (typeof Framing)[keyof typeof Framing];

/** node:http's and undici's header limit (--max-http-header-size), here for the whole head. */
export const MAX_RESPONSE_HEAD = 16 * 1024;

export interface ResponseHead {
  status: number;
  framing: Framing;
  /** Framing.Length: the body's length. */
  length: number;
  /** The head for the client, ending in the blank line. */
  head: string;
  /** The upstream connection may carry another exchange once this response's body is read. */
  keepAlive: boolean;
  /** The client connection closes after this response (it asked, or the body runs until close). */
  close: boolean;
}

// tchar (RFC 9110 5.6.2) and field-value bytes (HTAB, SP, VCHAR, obs-text), as llhttp's strict tables.
export const TOKEN = new Uint8Array(256);
export const FIELD = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0; c < 256; c++) {
  if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)) TOKEN[c] = 1;
  if (c === 9 || (c >= 32 && c !== 127)) FIELD[c] = 1;
}

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;

/** Whether buf[at, at + lower.length) is lower (ASCII letters and '-'), ignoring case. */
function is(buf: Buffer, at: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) if ((buf[at + k] | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/** Removes the lines whose (lower-cased) name is listed from a head block (rare: costs a split). */
function dropListed(head: string, listed: string[]): string {
  const lines = head.split('\r\n');
  const kept = [lines[0]];
  for (let i = 1; i < lines.length; i++) {
    if (!listed.includes(lines[i].slice(0, lines[i].indexOf(':')).toLowerCase())) kept.push(lines[i]);
  }
  return kept.join('\r\n');
}

/**
 * A head still missing its blank line that can already be refused: too long, not starting with
 * HTTP/1., or a CR or LF that is not part of a CRLF (llhttp refuses those wherever they are).
 * buf[0, checked) passed this check before (a head arriving in pieces is not rescanned). Returns
 * the reason, or null to wait for more bytes.
 */
export function incompleteHeadError(buf: Buffer, checked = 0): string | null {
  if (buf.length >= MAX_RESPONSE_HEAD) return `response head over ${MAX_RESPONSE_HEAD} bytes`;
  const n = buf.length < 7 ? buf.length : 7;
  for (let k = checked; k < n; k++) if (buf[k] !== 'HTTP/1.'.charCodeAt(k)) return 'status line does not start with HTTP/1.';
  for (let k = buf.indexOf(LF, checked); k >= 0; k = buf.indexOf(LF, k + 1))
    if (k === 0 || buf[k - 1] !== CR) return 'LF without CR in the response head';
  const from = checked > 0 ? checked - 1 : 0; // a CR that ended the last piece
  for (let k = buf.indexOf(CR, from); k >= 0 && k < buf.length - 1; k = buf.indexOf(CR, k + 1))
    if (buf[k + 1] !== LF) return 'CR without LF in the response head';
  return null;
}

/**
 * Reads the head in buf[0, end) (end: the index of its blank line's CRLFCRLF) of a response to
 * `method`; clientClose: the client connection closes after this response anyway. Returns the
 * head, or the reason it is refused.
 */
export function parseResponseHead(buf: Buffer, end: number, method: string, clientClose: boolean): ResponseHead | string {
  if (end + 4 > MAX_RESPONSE_HEAD) return `response head over ${MAX_RESPONSE_HEAD} bytes`;
  // Status line: HTTP/1.0 or HTTP/1.1, SP, three digits from 100, then nothing or SP and a reason.
  if (
    end < 12 ||
    buf[0] !== 0x48 ||
    buf[1] !== 0x54 ||
    buf[2] !== 0x54 ||
    buf[3] !== 0x50 ||
    buf[4] !== 0x2f ||
    buf[5] !== 0x31 ||
    buf[6] !== 0x2e
  ) {
    return 'status line does not start with HTTP/1.';
  }
  const minor = buf[7];
  if ((minor !== 0x30 && minor !== 0x31) || buf[8] !== SP) return 'HTTP version other than 1.0 or 1.1';
  const d0 = buf[9] - 48;
  const d1 = buf[10] - 48;
  const d2 = buf[11] - 48;
  if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return 'status code is not three digits from 100';
  const status = d0 * 100 + d1 * 10 + d2;
  if (status === 101) return '101 Switching Protocols to a request that asked for no upgrade';
  let pos = 12;
  if (pos < end && buf[pos] === SP) {
    pos++;
    while (pos < end && FIELD[buf[pos]] === 1) pos++;
  }
  if (pos < end && (buf[pos] !== CR || buf[pos + 1] !== LF)) return 'invalid character in the status line';
  const http10 = minor === 0x30;
  const text = buf.toString('latin1', 0, end);
  // Copied in slices: [copyFrom, a dropped line's leading CRLF) each time a line is dropped.
  let out = http10 ? `HTTP/1.1${text.slice(8, pos)}` : '';
  let copyFrom = http10 ? pos : 0;
  let length = -1;
  let te = false;
  let closeToken = false;
  let keepAliveToken = false;
  let listed: string[] | null = null;
  pos += 2;
  while (pos < end) {
    const start = pos;
    while (TOKEN[buf[pos]] === 1) pos++;
    if (pos === start)
      return buf[pos] === SP || buf[pos] === HTAB ? 'obs-fold or whitespace before a field name' : 'field line without a name';
    if (buf[pos] !== 0x3a) return 'invalid character in a field name';
    const n = pos - start;
    pos++;
    while (pos < end && (buf[pos] === SP || buf[pos] === HTAB)) pos++;
    const vStart = pos;
    while (pos < end && FIELD[buf[pos]] === 1) pos++;
    if (pos < end && (buf[pos] !== CR || buf[pos + 1] !== LF)) return 'invalid character in a field value';
    let vEnd = pos;
    while (vEnd > vStart && (buf[vEnd - 1] === SP || buf[vEnd - 1] === HTAB)) vEnd--;
    let drop = false;
    switch (n) {
      case 2:
        drop = is(buf, start, 'te');
        break;
      case 7:
        drop = is(buf, start, 'trailer') || is(buf, start, 'upgrade');
        break;
      case 10:
        if (is(buf, start, 'connection')) {
          drop = true;
          // Tokens as llhttp splits them: close and keep-alive decide reuse, other names are dropped.
          for (let t = vStart; t < vEnd;) {
            let e = t;
            while (e < vEnd && buf[e] !== 0x2c) e++;
            let a = t;
            let b = e;
            while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
            while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
            if (b - a === 5 && is(buf, a, 'close')) closeToken = true;
            else if (b - a === 10 && is(buf, a, 'keep-alive')) keepAliveToken = true;
            else if (b > a && !(b - a === 7 && is(buf, a, 'upgrade'))) {
              const name = text.slice(a, b).toLowerCase();
              // Never the framing: a proxy forwards the body as framed, so the framing fields go with it.
              if (name !== 'content-length' && name !== 'transfer-encoding') (listed ??= []).push(name);
            }
            t = e + 1;
          }
        } else drop = is(buf, start, 'keep-alive');
        break;
      case 14:
        if (is(buf, start, 'content-length')) {
          if (length >= 0) return 'more than one Content-Length';
          if (vEnd === vStart) return 'empty Content-Length';
          let v = 0;
          for (let k = vStart; k < vEnd; k++) {
            const d = buf[k] - 48;
            if (d < 0 || d > 9) return 'Content-Length is not a number';
            v = v * 10 + d;
          }
          if (v > Number.MAX_SAFE_INTEGER) return 'Content-Length over 2^53 - 1';
          length = v;
        }
        break;
      case 16:
        drop = is(buf, start, 'proxy-connection');
        break;
      case 17:
        if (is(buf, start, 'transfer-encoding')) {
          if (te) return 'more than one Transfer-Encoding';
          te = true;
          drop = true;
          // Exactly `chunked`: llhttp reads "chunked<HTAB>" as no chunking, and any other coding would be lost with the field.
          if (vEnd - vStart !== 7 || !is(buf, vStart, 'chunked')) return 'Transfer-Encoding other than chunked';
          let k = vStart + 7;
          while (k < pos && buf[k] === SP) k++;
          if (k !== pos) return 'Transfer-Encoding other than chunked';
        }
        break;
    }
    if (drop) {
      out += text.slice(copyFrom, start - 2);
      copyFrom = pos;
    }
    pos += 2;
  }
  if (te && length >= 0) return 'both Content-Length and Transfer-Encoding';
  out = copyFrom === 0 ? text : out + text.slice(copyFrom);
  if (listed !== null) out = dropListed(out, listed);
  // llhttp's reuse rule: HTTP/1.1 unless close, HTTP/1.0 only with keep-alive (here close wins).
  let keepAlive = !closeToken && (!http10 || keepAliveToken);
  if (status < 200) {
    // Interim: ends with its head, passed on and followed by the final response, which llhttp
    // refuses to read on a connection the interim one closed.
    if (te || length >= 0) return 'a 1xx response with Content-Length or Transfer-Encoding';
    if (!keepAlive) return 'a 1xx response that closes the connection';
    return { status, framing: Framing.None, length: 0, head: `${out}\r\n\r\n`, keepAlive: true, close: false };
  }
  if (http10 && te) keepAlive = false; // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing
  let framing: Framing;
  if (method === 'HEAD' || status === 204 || status === 304) {
    framing = Framing.None;
    // As undici: a body announced anyway may follow and must not be read as the next response.
    if (method !== 'HEAD' && (te || length > 0)) keepAlive = false;
  } else if (te) {
    framing = Framing.Chunked;
    out += '\r\ntransfer-encoding: chunked';
  } else if (length > 0) framing = Framing.Length;
  else if (length === 0) framing = Framing.None;
  else {
    framing = Framing.UntilClose;
    keepAlive = false;
  }
  const close = clientClose || framing === Framing.UntilClose;
  if (close) out += '\r\nconnection: close';
  return { status, framing, length: length > 0 ? length : 0, head: `${out}\r\n\r\n`, keepAlive, close };
}
