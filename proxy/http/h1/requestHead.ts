// The request head as the fast path reads it. It accepts only what llhttp (node:http's parser, strict
// mode) accepts, read the same way: same method, target, header names and values, and the same end
// of head. Anything else, and anything it is not sure about (bodies, upgrades, odd framing, HTTP/1.0,
// rare methods or target forms), is left to node:http, which then owns the connection and answers
// what it rejects with 400. A byte a lenient upstream could read differently (bare CR or LF, TAB or
// any control byte in the target, NUL or VT in a value, obs-fold) therefore never leaves the fast path.

/** Bytes of a token (RFC 9110 5.6.2): method and header names. */
const TCHAR = new Uint8Array(256);
/** Bytes llhttp takes in an origin-form request-target: visible ASCII, no SP, no control, no obs-text. */
const TARGET = new Uint8Array(256);
/** Bytes llhttp takes in a header value: HTAB, SP, VCHAR, obs-text (no CR, LF, NUL, VT, FF, DEL...). */
const VALUE = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let b = 0x30; b <= 0x39; b++) TCHAR[b] = 1;
for (let b = 0x41; b <= 0x5a; b++) TCHAR[b] = TCHAR[b + 0x20] = 1;
for (let b = 0x21; b <= 0x7e; b++) TARGET[b] = 1;
VALUE[0x09] = 1;
for (let b = 0x20; b <= 0x7e; b++) VALUE[b] = 1;
for (let b = 0x80; b <= 0xff; b++) VALUE[b] = 1;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;
const COMMA = 44;

/**
 * node:http answers 431 once the request-target, header names and values add up to 16 KiB; a head
 * shorter than that can never reach it.
 */
const MAX_HEAD = 16 * 1024;

export interface RequestHead {
  method: string;
  path: string;
  /** Header names and values as sent, flat: [name, value, name, value, ...]. */
  raw: string[];
  /** Always set on a head the fast path accepted (HTTP/1.1 requires it: node:http answers 400 without). */
  host: string;
  /** The client asked to close after this exchange. */
  close: boolean;
  /** Extra names the client's Connection header lists (lower case), or null. */
  listed: string[] | null;
}

/** The methods the fast path takes (upper case, as llhttp requires); any other goes to node:http. */
function knownMethod(m: string): boolean {
  switch (m) {
    case 'GET':
    case 'HEAD':
    case 'POST':
    case 'PUT':
    case 'DELETE':
    case 'OPTIONS':
    case 'PATCH':
      return true;
    default:
      return false;
  }
}

/**
 * Parses the head in buf[0, end) (end: index of the first CRLF CRLF). null: leave it to node:http.
 * Every byte of [0, end) is checked, so a bare CR or LF (where llhttp would end a line or the head
 * elsewhere, or fail) always means null.
 */
export function parseRequestHead(buf: Buffer, end: number): RequestHead | null {
  if (end >= MAX_HEAD) return null;
  const text = buf.toString('latin1', 0, end);
  const n = text.length;
  // Request line: METHOD SP origin-form SP HTTP/1.1, single spaces (llhttp allows more, and leading
  // empty lines: both are rare and left to node:http).
  let i = 0;
  while (i < n && TCHAR[text.charCodeAt(i)] === 1) i++;
  if (i === 0 || i > 7 || i >= n || text.charCodeAt(i) !== SP) return null;
  const method = text.slice(0, i);
  if (!knownMethod(method)) return null;
  const targetStart = ++i;
  if (text.charCodeAt(i) !== 47 /* / */) return null;
  while (i < n && TARGET[text.charCodeAt(i)] === 1) i++;
  if (i >= n || text.charCodeAt(i) !== SP) return null;
  const path = text.slice(targetStart, i);
  if (!text.startsWith('HTTP/1.1', i + 1)) return null;
  i += 9;
  if (i !== n) {
    if (text.charCodeAt(i) !== CR || text.charCodeAt(i + 1) !== LF) return null;
    i += 2;
  }
  const raw: string[] = [];
  let host: string | undefined;
  let close = false;
  let listed: string[] | null = null;
  let contentLength = false;
  while (i < n) {
    // field-name ":" OWS field-value OWS CRLF; no space before the colon, no obs-fold.
    const nameStart = i;
    while (i < n && TCHAR[text.charCodeAt(i)] === 1) i++;
    if (i === nameStart || i >= n || text.charCodeAt(i) !== COLON) return null;
    const name = text.slice(nameStart, i);
    i++;
    let c = text.charCodeAt(i);
    while (c === SP || c === HTAB) c = text.charCodeAt(++i);
    const valueStart = i;
    while (i < n && VALUE[text.charCodeAt(i)] === 1) i++;
    // The only byte that may end a value before the head's end is the CR of a CRLF.
    if (i < n && (text.charCodeAt(i) !== CR || text.charCodeAt(i + 1) !== LF || i + 2 === n)) return null;
    // llhttp trims trailing SP and HTAB only (String#trim would also take NBSP, VT, CR, LF...).
    let valueEnd = i;
    while (valueEnd > valueStart) {
      c = text.charCodeAt(valueEnd - 1);
      if (c !== SP && c !== HTAB) break;
      valueEnd--;
    }
    const value = text.slice(valueStart, valueEnd);
    i += 2;
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') {
          if (host !== undefined) return null;
          host = value;
        }
        break;
      case 6:
        if (name.toLowerCase() === 'expect') return null;
        break;
      case 7:
        if (name.toLowerCase() === 'upgrade') return null;
        break;
      case 10:
        if (name.toLowerCase() === 'connection') {
          const v = value.toLowerCase();
          if (v === 'close') close = true;
          else if (v !== 'keep-alive') {
            const r = connectionTokens(v, listed);
            if (r === null) return null;
            if (r.close) close = true;
            listed = r.listed;
          }
        }
        break;
      case 14:
        // No body on the fast path: one Content-Length of exactly 0 (llhttp rejects a duplicate).
        if (name.toLowerCase() === 'content-length') {
          if (contentLength || value !== '0') return null;
          contentLength = true;
        }
        break;
      case 16:
        // llhttp reads Proxy-Connection as Connection (it may close the connection): rare, handed off.
        if (name.toLowerCase() === 'proxy-connection') return null;
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') return null;
        break;
    }
    raw.push(name, value);
  }
  // HTTP/1.1 without Host: node:http answers 400.
  if (host === undefined) return null;
  return { method, path, raw, host, close, listed };
}

const connectionResult = { close: false, listed: null as string[] | null };

/**
 * A lower-cased Connection value as a list of tokens (llhttp's reading: comma separated, OWS around).
 * null: not a plain token list, or it asks for an upgrade (left to node:http). The result object is
 * reused: read it at once.
 */
function connectionTokens(v: string, listed: string[] | null): typeof connectionResult | null {
  let close = false;
  let i = 0;
  const n = v.length;
  while (i <= n) {
    let c = v.charCodeAt(i);
    while (c === SP || c === HTAB) c = v.charCodeAt(++i);
    const start = i;
    while (i < n && TCHAR[v.charCodeAt(i)] === 1) i++;
    const token = v.slice(start, i);
    c = v.charCodeAt(i);
    while (c === SP || c === HTAB) c = v.charCodeAt(++i);
    if (i < n && c !== COMMA) return null;
    i++;
    if (token === 'close') close = true;
    else if (token === 'upgrade') return null;
    else if (token !== '' && token !== 'keep-alive') (listed ??= []).push(token);
  }
  connectionResult.close = close;
  connectionResult.listed = listed;
  return connectionResult;
}

/** The value of one header (lower-case name) in a flat raw list. */
export function rawHeader(raw: string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === lowerName.length && raw[i].toLowerCase() === lowerName) return raw[i + 1];
  }
  return undefined;
}
