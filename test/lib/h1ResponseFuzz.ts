// Differential fuzzing of the fast path's response side against llhttp (test/lib/llhttp.ts): random
// and mutated response heads (with interim 1xx heads, bodies and what follows them) and chunked
// bodies, read by proxy/http/h1/responseHead.ts and chunkedScanner.ts as the exchange reads them,
// and by llhttp in response mode. Shared by test/proxy/h1/responseHeadDiff.test.ts (a bounded run)
// and scripts/fuzzResponseHead.ts (long runs). Every case is built from (seed, index) alone, so one
// failing case can be replayed by itself.
import { ChunkedScanner } from '../../proxy/http/h1/chunkedScanner.ts';
import { Framing, incompleteHeadError, parseResponseHead, type ResponseHead } from '../../proxy/http/h1/responseHead.ts';
import type { LlMessage, LlResult, Llhttp, ParseCase } from './llhttp.ts';

// ---- seeded randomness -------------------------------------------------------------------------

export type Rng = () => number;

/** mulberry32: a small, fast PRNG; same seed, same sequence. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The generator of case `index` of a run seeded with `seed`. */
export function caseRng(seed: number, index: number): Rng {
  return rng(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35));
}

const int = (r: Rng, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];
const chance = (r: Rng, p: number): boolean => r() < p;

/** The byte classes of interest: TAB, LF, CR, VT, NUL, DEL, obs-text, and delimiters. */
const ODD_BYTES = ['\t', '\n', '\r', '\x0b', '\x00', '\x7f', '\x80', '\xa0', '\xff', ' ', ':', ';', ',', '"', '\\', '=', '\x01', '\x1f'];

function oddByte(r: Rng): string {
  return chance(r, 0.8) ? pick(r, ODD_BYTES) : String.fromCharCode(0x80 + int(r, 128));
}

function text(r: Rng, n: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_/.';
  let s = '';
  for (let i = 0; i < n; i++) s += chance(r, 0.04) ? oddByte(r) : alphabet[int(r, alphabet.length)];
  return s;
}

/** Byte-level damage: inserted, deleted or replaced bytes, CRLFs cut to LF or CR, folded lines. */
export function mutate(r: Rng, s: string): string {
  const n = 1 + int(r, 3);
  for (let k = 0; k < n; k++) {
    if (s.length === 0) return s;
    const at = int(r, s.length);
    switch (int(r, 7)) {
      case 0:
        s = s.slice(0, at) + oddByte(r) + s.slice(at);
        break;
      case 1:
        s = s.slice(0, at) + s.slice(at + 1);
        break;
      case 2:
        s = s.slice(0, at) + oddByte(r) + s.slice(at + 1);
        break;
      case 3: {
        const i = s.indexOf('\r\n', at);
        if (i >= 0) s = s.slice(0, i) + (chance(r, 0.5) ? '\n' : '\r') + s.slice(i + 2);
        break;
      }
      case 4: {
        const i = s.indexOf('\r\n', at);
        if (i >= 0) s = `${s.slice(0, i + 2)}${chance(r, 0.5) ? ' ' : '\t'}${s.slice(i + 2)}`;
        break;
      }
      case 5:
        s = s.slice(0, at) + String.fromCharCode(s.charCodeAt(at) ^ 0x20) + s.slice(at + 1);
        break;
      default: {
        const i = s.indexOf('\r\n', at);
        if (i >= 0) s = `${s.slice(0, i)}\r\n${s.slice(s.lastIndexOf('\r\n', i - 1) + 2, i)}${s.slice(i)}`; // a line twice
        break;
      }
    }
  }
  return s;
}

// ---- generators --------------------------------------------------------------------------------

const VERSIONS = [
  'HTTP/2.0',
  'HTTP/0.9',
  'HTTP/1.2',
  'HTTP/2',
  'http/1.1',
  'RTSP/1.0',
  'ICE/1.0',
  'HTTP/1.x',
  ' HTTP/1.1',
  '\r\nHTTP/1.1',
  'HTTP/1.1 ',
];
const FINAL_STATUS = [
  '200',
  '200',
  '200',
  '200',
  '201',
  '204',
  '204',
  '206',
  '301',
  '304',
  '304',
  '404',
  '500',
  '502',
  '503',
  '504',
  '599',
  '600',
  '999',
];
const ODD_STATUS = ['099', '000', '20', '2000', '2x0', ' 200', '200\t'];
const INTERIM_STATUS = ['100', '102', '103', '103', '150', '199', '101'];
const REASONS = ['OK', 'OK', '', 'Not Found', 'Weird  Reason ', 'O\tK', '\x80\xff'];
const ODD_REASONS = ['O\x00K', 'O\x0bK', 'O\x7fK', 'Sw\x01', 'A\rB', 'A\nB', 'A\r\n B'];
const CL_VALUES = [
  '',
  ' 5',
  '5 ',
  '\t5\t',
  '+5',
  '-1',
  '0x5',
  '5, 5',
  '1 2',
  '007',
  '99999999999999999999',
  '9007199254740993',
  '18446744073709551615',
  '9007199254740991',
];
const TE_VALUES = [
  'chunked',
  'chunked',
  'chunked',
  'CHUNKED',
  ' chunked',
  'chunked ',
  'chunked\t',
  '\tchunked',
  'chunked, gzip',
  'gzip, chunked',
  'gzip',
  'identity',
  ',chunked',
  'chunked,',
  'x',
  '',
  'chunked;q=1',
  'chunked , gzip',
  'chunked \t',
];
const CONNECTION_VALUES = [
  'close',
  'keep-alive',
  'Keep-Alive',
  'upgrade',
  'content-length',
  'Content-Length',
  'transfer-encoding',
  'x-hop',
  'close, x-hop',
  'keep-alive, close',
  'xclose',
  'no-keep-alive',
  ' close ',
  'close;x',
  'a close',
  ',close',
  'keep-alive, x-hop, content-length',
  'date',
  'KEEP-ALIVE\t',
  'keep-alive,',
  'x-hop, keep-alive',
];
const BENIGN = [
  'Content-Type: text/plain',
  'Date: Mon, 06 Jan 2025 10:00:00 GMT',
  'Server: test',
  'Cache-Control: no-cache',
  'X-Request-Id: abc-123',
  'ETag: "x"',
  'X-Hop: 1',
  'Keep-Alive: timeout=5',
  'TE: trailers',
  'Trailer: X-Sum',
  'Upgrade: h2c',
  'Proxy-Connection: keep-alive',
  'Set-Cookie: a=b',
  'X-Empty:',
];
const MALFORMED_LINES = [
  'Transfer-Encoding : chunked',
  'Transfer-Encoding\t: chunked',
  'Content-Length : 5',
  'X Y: z',
  ' X: y',
  '\tX: y',
  ': x',
  'X',
  'X;: y',
  'Tr\x80nsfer-Encoding: chunked',
  'X\x00: y',
];

/** One field line of the palette; body decides the length announced. */
function fieldLine(r: Rng, bodyLength: number): string {
  switch (int(r, 10)) {
    case 0:
    case 1:
      return `${pick(r, ['Content-Length', 'content-length', 'CONTENT-LENGTH'])}: ${chance(r, 0.7) ? String(bodyLength + (chance(r, 0.1) ? pick(r, [-1, 1]) : 0)) : pick(r, CL_VALUES)}`;
    case 2:
      return `${pick(r, ['Transfer-Encoding', 'transfer-encoding'])}: ${pick(r, TE_VALUES)}`;
    case 3:
      return `${pick(r, ['Connection', 'connection'])}: ${pick(r, CONNECTION_VALUES)}`;
    case 4:
      return chance(r, 0.4) ? pick(r, MALFORMED_LINES) : pick(r, BENIGN);
    case 5:
      return `X-${text(r, 1 + int(r, 6)).replace(/[^A-Za-z0-9]/g, 'a')}: ${text(r, int(r, 20))}`;
    case 6:
      return chance(r, 0.4) ? `X-Odd: a${oddByte(r)}b` : pick(r, BENIGN);
    default:
      return pick(r, BENIGN);
  }
}

/** A chunked body: chunks with odd sizes, extensions and line ends, a last chunk and trailers. */
export function genChunked(r: Rng, big = false): string {
  let s = '';
  const chunks = int(r, 4);
  const eol = () => (chance(r, 0.97) ? '\r\n' : pick(r, ['\n', '\r', '', '\r\r\n', ' \r\n']));
  for (let c = 0; c < chunks; c++) {
    const size = chance(r, 0.9) ? 1 + int(r, 20) : 16 + int(r, 300);
    let sizeText = size.toString(16);
    if (chance(r, 0.2)) sizeText = sizeText.toUpperCase();
    if (chance(r, 0.1)) sizeText = '0'.repeat(1 + int(r, 20)) + sizeText;
    if (chance(r, 0.03))
      sizeText = pick(r, [
        '',
        '-1',
        'g',
        'ffffffffffffffff',
        '10000000000000000',
        '20000000000000',
        '1fffffffffffff',
        ` ${sizeText}`,
        `${sizeText} `,
        `${sizeText}\t`,
      ]);
    s += sizeText + extensions(r, big) + eol();
    const n = chance(r, 0.95) ? size : Math.max(0, size + pick(r, [-1, 1, 2]));
    s += text(r, n) + eol();
  }
  s += pick(r, ['0', '0', '0', '00', '000000000000000000000']) + extensions(r, big) + eol();
  const trailers = chance(r, 0.7) ? 0 : 1 + int(r, 2);
  for (let t = 0; t < trailers; t++) {
    s += chance(r, 0.5)
      ? pick(r, ['X-Sum: abc', 'X-Sum:', 'Server-Timing: db;dur=53', 'X-A:\tb\t']) + eol()
      : pick(r, [
          'X-Sum: abc',
          'X-Sum:',
          'Content-Length: 5',
          'Transfer-Encoding: chunked',
          'content-length: x',
          'Connection: close',
          'X : y',
          'X Y: z',
          ' X: y',
          'X: a\x00b',
          'X: \xff\x80',
          'X;: y',
          ':y',
          `X: a${oddByte(r)}b`,
        ]) + eol();
    if (chance(r, 0.05)) s += ' folded\r\n';
  }
  if (big && chance(r, 0.5)) s += `X-Big: ${'a'.repeat(16340 + int(r, 60))}\r\n`;
  s += eol();
  if (chance(r, 0.1)) s += pick(r, ['GARBAGE', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', '\r\n']);
  if (chance(r, 0.15)) s = mutate(r, s);
  if (chance(r, 0.08)) s = s.slice(0, int(r, s.length + 1)); // cut short
  return s;
}

function extensions(r: Rng, big: boolean): string {
  if (big && chance(r, 0.3)) return `;${'e'.repeat(16370 + int(r, 30))}`;
  if (chance(r, 0.75)) return '';
  let s = '';
  const n = 1 + int(r, 2);
  for (let i = 0; i < n; i++) {
    s += chance(r, 0.5)
      ? pick(r, [';a', ';a=b', ';a="q s"', ';a="\\""', ';name=token', ';a=', ';;a', ';=x', ';a="\x80"'])
      : pick(r, [
          ';a',
          ';a=b',
          ';a="q s"',
          ';a="\\""',
          ';a="x\\\ty"',
          ';',
          '; a',
          ';a=',
          ';=x',
          ';;a',
          ';a=b c',
          ';a==b',
          ';a="x"y',
          ';a=x"y"',
          ';a="unterminated',
          `;a=${oddByte(r)}`,
          `;a${oddByte(r)}`,
          `;a="${oddByte(r)}"`,
          `;a="\\${oddByte(r)}"`,
          ';name=token',
          ';a ',
        ]);
  }
  return s;
}

export interface ResponseCase {
  /** The bytes the upstream sends, latin1. */
  data: string;
  /** The request's method (HEAD responses have no body). */
  method: string;
  /** Where the bytes are split into separate reads (the outcome must not depend on it). */
  splits?: number[];
}

/** A response: maybe interim heads, a final head from the palettes, a body, maybe more bytes; maybe damaged. */
export function genResponse(r: Rng): ResponseCase {
  const method = chance(r, 0.15) ? 'HEAD' : 'GET';
  let data = '';
  const interims = chance(r, 0.12) ? 1 + int(r, 2) : 0;
  for (let i = 0; i < interims; i++) {
    data += `HTTP/1.1 ${pick(r, INTERIM_STATUS)} ${pick(r, ['Continue', 'Early Hints', ''])}\r\n`;
    if (chance(r, 0.5)) data += 'Link: </a.css>; rel=preload\r\n';
    if (chance(r, 0.2)) data += `${fieldLine(r, 0)}\r\n`;
    data += '\r\n';
  }
  const chunked = chance(r, 0.3);
  const body = chunked ? genChunked(r) : text(r, chance(r, 0.2) ? 0 : 1 + int(r, 40));
  const version = chance(r, 0.85) ? (chance(r, 0.8) ? 'HTTP/1.1' : 'HTTP/1.0') : pick(r, VERSIONS);
  const status = chance(r, 0.9) ? pick(r, FINAL_STATUS) : pick(r, ODD_STATUS);
  const reason = chance(r, 0.9) ? pick(r, REASONS) : pick(r, ODD_REASONS);
  data += chance(r, 0.05) ? `${version} ${status}\r\n` : `${version} ${status} ${reason}\r\n`;
  const fields: string[] = [];
  if (chunked && chance(r, 0.8)) fields.push(`Transfer-Encoding: ${chance(r, 0.8) ? 'chunked' : pick(r, TE_VALUES)}`);
  else if (!chunked && chance(r, 0.7)) fields.push(`Content-Length: ${body.length}`);
  const n = int(r, 6);
  for (let i = 0; i < n; i++) fields.splice(int(r, fields.length + 1), 0, fieldLine(r, body.length));
  for (const f of fields) data += `${f}\r\n`;
  if (chance(r, 0.02)) data += `X-Large: ${'v'.repeat(16300 + int(r, 150))}\r\n`;
  data += '\r\n';
  if (method !== 'HEAD' || chance(r, 0.2)) data += body;
  if (chance(r, 0.15))
    data += pick(r, ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'junk', '\r\n', 'HTTP/1.1 204 No Content\r\n\r\n']);
  if (chance(r, 0.2)) data = mutate(r, data);
  const splits: number[] = [];
  const reads = chance(r, 0.5) ? 0 : 1 + int(r, 4);
  for (let i = 0; i < reads; i++) splits.push(int(r, data.length + 1));
  return { data, method, splits: splits.sort((a, b) => a - b) };
}

export interface ChunkedCase {
  body: string;
  /** Where the scanner's input is split into separate reads. */
  splits: number[];
}

export function genChunkedCase(r: Rng): ChunkedCase {
  const body = genChunked(r, chance(r, 0.02));
  const splits: number[] = [];
  const n = int(r, 4);
  for (let i = 0; i < n; i++) splits.push(int(r, body.length + 1));
  return { body, splits: splits.sort((a, b) => a - b) };
}

// ---- the fast path, as the exchange reads an upstream's bytes ----------------------------------

export interface Simulated {
  outcome: 'accept' | 'reject' | 'incomplete';
  reason: string;
  /** Accepted heads: interim ones, then the final one. */
  heads: ResponseHead[];
  /** reject: where the refused part (a head, or the final body) starts. */
  from: number;
  /** accept: where the response ends (all of it for a body until close); reject: the bytes read when it was refused. */
  consumed: number;
  /** What the client receives (accept). */
  forwarded: string;
  /** accept: the upstream connection may be reused (the final head allows it, and no trailer said Connection). */
  keepAlive: boolean;
  /** accept: the client connection is closed after the response. */
  close: boolean;
}

/**
 * proxy/http/h1/exchange.ts's onUpstreamData and writeBody over `data`, arriving in reads split at
 * `splits`: heads until the final one (interim ones passed on), then the body as its framing says.
 */
export function simulate(data: Buffer, method: string, splits: number[] = []): Simulated {
  const heads: ResponseHead[] = [];
  let forwarded = '';
  const done = (outcome: 'reject' | 'incomplete', reason: string, from: number, consumed: number): Simulated => ({
    outcome,
    reason,
    heads,
    from,
    consumed,
    forwarded,
    keepAlive: false,
    close: true,
  });
  let headBuf: Buffer | null = null;
  let final: ResponseHead | null = null;
  let bodyFrom = 0; // where the final body starts in data
  let remaining = 0;
  let scanner: ChunkedScanner | null = null;
  let at = 0;
  for (const to of [...splits.filter((x) => x > 0 && x < data.length), data.length]) {
    if (to <= at) continue;
    const chunk = data.subarray(at, to);
    const chunkAt = at;
    at = to;
    if (final === null) {
      let checked = headBuf === null ? 0 : headBuf.length;
      let bufAt = chunkAt - checked; // where buf starts in data
      let buf: Buffer = headBuf === null ? chunk : Buffer.concat([headBuf, chunk]);
      headBuf = null;
      for (;;) {
        const end = buf.indexOf('\r\n\r\n', checked > 3 ? checked - 3 : 0);
        if (end < 0) {
          const bad = incompleteHeadError(buf, checked);
          if (bad !== null) return done('reject', bad, bufAt, to);
          if (buf.length > 0) headBuf = Buffer.from(buf);
          break;
        }
        const r = parseResponseHead(buf, end, method, false);
        if (typeof r === 'string') return done('reject', r, bufAt, bufAt + end + 4);
        heads.push(r);
        forwarded += r.head;
        buf = buf.subarray(end + 4);
        bufAt += end + 4;
        checked = 0;
        if (r.status < 200) continue;
        final = r;
        bodyFrom = bufAt;
        remaining = r.length;
        if (r.framing === Framing.Chunked) scanner = new ChunkedScanner();
        break;
      }
      if (final === null) continue;
    }
    // Body bytes from data[max(bodyFrom, chunkAt), to).
    const from = Math.max(bodyFrom, chunkAt);
    const accept = (end: number, trailerClose = false): Simulated => ({
      outcome: 'accept',
      reason: '',
      heads,
      from: bodyFrom,
      consumed: end,
      forwarded: forwarded + data.toString('latin1', bodyFrom, end),
      keepAlive: final!.keepAlive && !trailerClose,
      close: final!.close || trailerClose,
    });
    switch (final.framing) {
      case Framing.None:
        return accept(bodyFrom);
      case Framing.Length:
        if (to - from >= remaining) return accept(from + remaining);
        remaining -= to - from;
        break;
      case Framing.Chunked: {
        const e = scanner!.scan(data, from, to);
        if (scanner!.error) return done('reject', scanner!.error, bodyFrom, to);
        if (e >= 0) return accept(e, scanner!.close);
        break;
      }
      default:
        break;
    }
  }
  if (final !== null && final.framing === Framing.UntilClose) {
    return {
      outcome: 'accept',
      reason: '',
      heads,
      from: bodyFrom,
      consumed: data.length,
      forwarded: forwarded + data.toString('latin1', bodyFrom),
      keepAlive: false,
      close: true,
    };
  }
  if (final !== null && final.framing === Framing.None)
    return {
      outcome: 'accept',
      reason: '',
      heads,
      from: bodyFrom,
      consumed: bodyFrom,
      forwarded,
      keepAlive: final.keepAlive,
      close: final.close,
    };
  return done('incomplete', final === null ? 'head' : 'body', final === null ? at - (headBuf?.length ?? 0) : bodyFrom, data.length);
}

// ---- what llhttp must agree with ---------------------------------------------------------------

const HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-connection', 'transfer-encoding']);

/** The fields a client should see for a message llhttp read: hop-by-hop and Connection-listed ones removed (never the framing). */
export function expectedFields(headers: string[], final: ResponseHead | null): string[] {
  const listed = new Set<string>();
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i].toLowerCase() !== 'connection') continue;
    for (const t of headers[i + 1].split(',')) {
      const n = t.replace(/^[ \t]+|[ \t]+$/g, '').toLowerCase();
      if (n !== '' && n !== 'close' && n !== 'keep-alive' && n !== 'upgrade' && n !== 'content-length' && n !== 'transfer-encoding')
        listed.add(n);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i].toLowerCase();
    if (!HOP.has(n) && !listed.has(n)) out.push(headers[i], headers[i + 1]);
  }
  if (final !== null && final.framing === Framing.Chunked) out.push('transfer-encoding', 'chunked');
  if (final !== null && final.close) out.push('connection', 'close');
  return out;
}

/**
 * Heads the fast path refuses although llhttp accepts them, on purpose (proxy/http/h1/responseHead.ts
 * lists why). Each class is recognised from the bytes and llhttp's reading of them, not from the
 * fast path's answer, so a refusal outside these classes fails the test.
 */
// eslint-disable-next-line no-control-regex -- the control characters are what it looks for
const CONTROL_EXCEPT_HTAB = /[\x00-\x08\x0a-\x1f\x7f]/;

export const STRICTER_HEADS: { name: string; test: (rawHead: string, m: LlMessage | undefined) => boolean }[] = [
  { name: 'empty lines before the status line', test: (h) => h.startsWith('\r\n') },
  { name: 'version other than HTTP/1.0 or HTTP/1.1', test: (h) => !/^HTTP\/1\.[01] /.test(h) },
  { name: 'status below 100', test: (_, m) => m !== undefined && m.statusCode! < 100 },
  {
    name: 'reason phrase with a control character other than HTAB',
    test: (_, m) => m !== undefined && CONTROL_EXCEPT_HTAB.test(m.statusMessage ?? ''),
  },
  { name: '101 to a request that asked for no upgrade', test: (_, m) => m !== undefined && m.statusCode === 101 },
  {
    name: '1xx with Content-Length or Transfer-Encoding',
    test: (_, m) =>
      m !== undefined && m.statusCode! < 200 && fieldValues(m, 'content-length').length + fieldValues(m, 'transfer-encoding').length > 0,
  },
  {
    name: 'Transfer-Encoding other than one field saying chunked',
    test: (h) => {
      const te = [...h.matchAll(/\r\ntransfer-encoding:([^\r]*)/gi)].map((x) => x[1]);
      return te.length > 1 || te.some((v) => !/^[ \t]*chunked *$/i.test(v));
    },
  },
  {
    name: 'Content-Length over 2^53 - 1',
    test: (_, m) => m !== undefined && fieldValues(m, 'content-length').some((v) => Number(v) > Number.MAX_SAFE_INTEGER),
  },
  { name: 'head over 16 KiB', test: (h) => h.length > 16 * 1024 - 4 },
];

/** Chunked bodies the scanner refuses although llhttp accepts them, on purpose (chunkedScanner.ts). */
export const STRICTER_CHUNKED: { name: string; test: (body: string) => boolean }[] = [
  {
    name: 'chunk size over 2^53 - 1',
    test: (b) => [...b.matchAll(/(?:^|\n)([0-9a-f]+)/gi)].some((m) => BigInt(`0x${m[1]}`) > BigInt(Number.MAX_SAFE_INTEGER)),
  },
  { name: 'Transfer-Encoding as a trailer field', test: (b) => /\r\ntransfer-encoding:/i.test(b) },
  { name: 'chunk extensions within a few bytes of 16 KiB', test: (b) => /;[^\r]{16300,}/.test(b) },
  { name: 'trailer section within a few bytes of 16 KiB', test: (b) => /(^|\n)0+(;[^\r]*)?\r\n[^]{16300,}/.test(b) },
];

function fieldValues(m: LlMessage, lowerName: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < m.headers.length; i += 2) if (m.headers[i].toLowerCase() === lowerName) out.push(m.headers[i + 1]);
  return out;
}

export interface Checked {
  /** The llhttp parses this case needs; judge() gets their results in the same order. */
  parses: ParseCase[];
  judge: (results: LlResult[]) => string | null;
  /** The class of a deliberate difference, when judge() found one. */
  stricter?: string;
}

const show = (v: unknown) => JSON.stringify(v);
/** A response after the one under test: llhttp reads it only on a connection it keeps. */
const SENTINEL = 'HTTP/1.1 204 Sentinel\r\n\r\n';

/** Plans and judges one response case: null from judge() when the fast path and llhttp agree. */
export function checkResponse(c: ResponseCase): Checked & { sim: Simulated } {
  const data = Buffer.from(c.data, 'latin1');
  const sim = simulate(data, c.method);
  const split = simulate(data, c.method, c.splits ?? []);
  const p = (s: string): ParseCase => ({ mode: 'response', data: s, requestMethod: c.method });
  const k = sim.heads.length; // index of the message the outcome is about
  const out: Checked & { sim: Simulated } = { sim, parses: [], judge: () => null };
  const same =
    sim.outcome === split.outcome && show(sim.heads) === show(split.heads) && (sim.outcome !== 'accept' || show(sim) === show(split));
  if (!same) {
    out.judge = () => `reads split at ${show(c.splits)} give ${show(split).slice(0, 300)}, one read gives ${show(sim).slice(0, 300)}`;
    return out;
  }
  if (sim.outcome === 'accept') {
    const final = sim.heads[k - 1];
    const untilClose = final.framing === Framing.UntilClose;
    // The client's connection stays open unless the fast path closes it: a response after it must parse.
    const fwd = sim.close ? sim.forwarded : sim.forwarded + SENTINEL;
    out.parses = [
      p(c.data.slice(0, sim.consumed)),
      untilClose ? p(`${c.data}Z`) : p(c.data.slice(0, sim.consumed - 1)),
      { mode: 'response', data: fwd, requestMethod: c.method },
    ];
    // Reuse as llhttp has it at the end of the message (the keep-alive flag node passes with the
    // head is taken before a HEAD response is known to have no body): a response after it parses.
    if (sim.keepAlive) out.parses.push(p(c.data.slice(0, sim.consumed) + SENTINEL));
    out.judge = ([whole, edge, forwarded, reuse]) => {
      if (whole.error !== null || whole.finishError !== null)
        return `fast path accepts, llhttp refuses: ${whole.error ?? whole.finishError} ${whole.reason ?? ''} at ${whole.bytesParsed}`;
      if (whole.messages.length !== k) return `fast path reads ${k} messages, llhttp ${whole.messages.length}`;
      const m = whole.messages[k - 1];
      if (!m.complete) return 'llhttp has not finished the response where the fast path has';
      if (untilClose) {
        if (edge.error !== null || edge.messages.length !== k || edge.messages[k - 1].body !== `${m.body}Z`)
          return 'fast path reads until close, llhttp does not';
      } else if (edge.messages.length >= k && edge.messages[k - 1].complete) return 'llhttp finished the response before the fast path did';
      if (sim.keepAlive && (reuse.error !== null || reuse.messages.length !== k + 1))
        return `fast path reuses the upstream connection, llhttp would not (${reuse.error} ${reuse.reason ?? ''})`;
      if (forwarded.error !== null || forwarded.finishError !== null)
        return `llhttp refuses what the fast path forwards: ${forwarded.error ?? forwarded.finishError} ${forwarded.reason ?? ''}`;
      if (forwarded.messages.length !== (sim.close ? k : k + 1))
        return `the client reads ${forwarded.messages.length} messages, not ${k}${sim.close ? '' : ' and the next one'}`;
      for (let i = 0; i < k; i++) {
        const a = whole.messages[i];
        const b = forwarded.messages[i];
        if (a.statusCode !== b.statusCode || a.statusMessage !== b.statusMessage)
          return `status ${a.statusCode} ${show(a.statusMessage)} forwarded as ${b.statusCode} ${show(b.statusMessage)}`;
        if (sim.heads[i].status !== a.statusCode) return `fast path status ${sim.heads[i].status}, llhttp ${a.statusCode}`;
        const want = expectedFields(a.headers, i === k - 1 ? final : null);
        if (show(want) !== show(b.headers)) return `fields forwarded ${show(b.headers)}, expected ${show(want)}`;
        if (b.versionMajor !== 1 || b.versionMinor !== 1) return 'forwarded as a version other than HTTP/1.1';
      }
      const b = forwarded.messages[k - 1];
      if (!b.complete || b.body !== m.body) return `the client decodes body ${show(b.body)}, llhttp read ${show(m.body)}`;
      if (final.close && b.shouldKeepAlive) return 'the client keeps a connection the fast path closes';
      return null;
    };
  } else if (sim.outcome === 'reject') {
    // An interim head must be followed by a final one: llhttp may refuse only that (after a close).
    out.parses = [p(c.data.slice(0, sim.consumed)), p(c.data.slice(0, sim.consumed) + SENTINEL)];
    out.judge = ([l, followed]) => {
      if (k > 0 && sim.heads[k - 1].status >= 200) {
        // The final body was refused: llhttp must refuse it too, not something after it.
        if (l.error !== null && !l.messages[k - 1]?.complete) return null;
        const cls = STRICTER_CHUNKED.find((s) => s.test(c.data.slice(sim.from)));
        if (cls) {
          out.stricter = cls.name;
          return null;
        }
        return `fast path refuses a body llhttp accepts (${sim.reason})`;
      }
      if (l.error !== null)
        return l.bytesParsed >= sim.from
          ? null
          : `llhttp refuses earlier (at ${l.bytesParsed}, ${l.error}) than the head the fast path refuses (from ${sim.from})`;
      const m = l.messages[k];
      if (
        m?.complete &&
        m.statusCode! >= 100 &&
        m.statusCode! < 200 &&
        m.statusCode !== 101 &&
        followed.error !== null &&
        followed.bytesParsed >= sim.consumed
      )
        return null;
      const cls = STRICTER_HEADS.find((s) => s.test(c.data.slice(sim.from, sim.consumed), m));
      if (cls) {
        out.stricter = cls.name;
        return null;
      }
      return `fast path refuses a head llhttp accepts (${sim.reason})`;
    };
  } else {
    out.parses = [p(c.data)];
    out.judge = ([l]) => {
      const m = l.messages[k];
      if (m !== undefined && m.complete && l.error === null && l.finishError === null)
        return `llhttp reads a complete response where the fast path waits for more (${sim.reason})`;
      return null;
    };
  }
  return out;
}

/** Where a scanner reading `body` in reads split at `splits` ends: the end, 'error: why', or 'incomplete'. */
export function scanChunked(body: Buffer, splits: number[]): string {
  const s = new ChunkedScanner();
  let from = 0;
  for (const at of [...splits, body.length]) {
    if (at < from) continue;
    const e = s.scan(body, from, at);
    if (s.error) return `error: ${s.error}`;
    if (e >= 0) return String(e);
    from = at;
  }
  return 'incomplete';
}

const CHUNKED_HEAD = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';

/** Plans and judges one chunked body: the scanner must end (or refuse) where llhttp does. */
export function checkChunked(c: ChunkedCase): Checked & { outcome: string } {
  const body = Buffer.from(c.body, 'latin1');
  const outcome = scanChunked(body, c.splits);
  const whole = scanChunked(body, []);
  const p = (s: string): ParseCase => ({ mode: 'response', data: CHUNKED_HEAD + s });
  const out: Checked & { outcome: string } = { outcome, parses: [p(c.body)], judge: () => null };
  if (outcome !== whole) {
    out.judge = () => `split reads give ${outcome}, one read gives ${whole}`;
    return out;
  }
  if (/^[0-9]+$/.test(outcome)) {
    const end = Number(outcome);
    out.parses.push(p(c.body.slice(0, end)), p(c.body.slice(0, end - 1)));
    out.judge = ([, at, before]) => {
      if (at.error !== null || at.finishError !== null || at.messages.length !== 1 || !at.messages[0].complete)
        return `scanner ends the body at ${end}, llhttp does not accept it there: ${at.error ?? at.finishError} ${at.reason ?? ''}`;
      if (before.messages.length === 1 && before.messages[0].complete) return `llhttp ends the body before ${end}`;
      return null;
    };
  } else if (outcome === 'incomplete') {
    out.judge = ([l]) => {
      if (l.error !== null) return `llhttp refuses (${l.error} ${l.reason}) where the scanner waits for more`;
      if (l.messages[0]?.complete) return 'llhttp ends the body where the scanner waits for more';
      return null;
    };
  } else {
    out.judge = ([l]) => {
      if (l.error !== null && !l.messages[0]?.complete) return null;
      const cls = STRICTER_CHUNKED.find((s) => s.test(c.body));
      if (cls) {
        out.stricter = cls.name;
        return null;
      }
      return `scanner refuses (${outcome}), llhttp ${l.error === null ? 'accepts' : `refuses only after the body (${l.error})`}`;
    };
  }
  return out;
}

export interface FuzzFailure {
  kind: 'response' | 'chunked';
  seed: number;
  index: number;
  input: ResponseCase | ChunkedCase;
  problem: string;
  detail: unknown;
}

export interface FuzzStats {
  cases: number;
  accepted: number;
  refusedByBoth: number;
  incomplete: number;
  /** Deliberate differences seen, by class. */
  stricter: Record<string, number>;
}

/** Runs response cases and as many chunked-body cases [first, cases) of `seed`; stops after maxFailures. */
export async function runFuzz(
  ll: Llhttp,
  seed: number,
  cases: number,
  maxFailures = 5,
  first = 0,
  batch = 250,
): Promise<{ failures: FuzzFailure[]; responses: FuzzStats; chunked: FuzzStats }> {
  const failures: FuzzFailure[] = [];
  const stats = (): FuzzStats => ({ cases: 0, accepted: 0, refusedByBoth: 0, incomplete: 0, stricter: {} });
  const responses = stats();
  const chunked = stats();
  for (let from = first; from < cases && failures.length < maxFailures; from += batch) {
    const planned: { kind: 'response' | 'chunked'; index: number; input: ResponseCase | ChunkedCase; check: Checked; outcome: string }[] =
      [];
    for (let i = from; i < Math.min(cases, from + batch); i++) {
      const rc = genResponse(caseRng(seed, i));
      const r = checkResponse(rc);
      planned.push({ kind: 'response', index: i, input: rc, check: r, outcome: r.sim.outcome });
      const cc = genChunkedCase(caseRng(seed ^ 0x5bd1e995, i));
      const ch = checkChunked(cc);
      planned.push({
        kind: 'chunked',
        index: i,
        input: cc,
        check: ch,
        outcome: /^[0-9]+$/.test(ch.outcome) ? 'accept' : ch.outcome === 'incomplete' ? 'incomplete' : 'reject',
      });
    }
    const results = await ll.parseAll(planned.flatMap((x) => x.check.parses));
    let at = 0;
    for (const x of planned) {
      const mine = results.slice(at, at + x.check.parses.length);
      at += x.check.parses.length;
      const st = x.kind === 'response' ? responses : chunked;
      st.cases++;
      const problem = x.check.judge(mine);
      if (problem !== null) {
        failures.push({
          kind: x.kind,
          seed,
          index: x.index,
          input: x.input,
          problem,
          detail: {
            fastPath:
              x.kind === 'response'
                ? (x.check as ReturnType<typeof checkResponse>).sim
                : (x.check as ReturnType<typeof checkChunked>).outcome,
            llhttp: mine,
          },
        });
        continue;
      }
      if (x.check.stricter !== undefined) st.stricter[x.check.stricter] = (st.stricter[x.check.stricter] ?? 0) + 1;
      else if (x.outcome === 'accept') st.accepted++;
      else if (x.outcome === 'reject') st.refusedByBoth++;
      else st.incomplete++;
    }
  }
  return { failures, responses, chunked };
}

/** A failure as a reproducible report: the seed, the case, its bytes (JSON-escaped) and both readings. */
export function describeFailure(f: FuzzFailure): string {
  return [
    `${f.kind} case ${f.index} of seed ${f.seed}: ${f.problem}`,
    `  replay: node scripts/fuzzResponseHead.ts --seed ${f.seed} --only ${f.index}`,
    `  input: ${JSON.stringify(f.input)}`,
    `  detail: ${JSON.stringify(f.detail).slice(0, 4000)}`,
  ].join('\n');
}
