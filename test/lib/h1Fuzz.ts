// Differential fuzzing of the fast path's request-head parser (proxy/http/h1/requestHead.ts) against
// llhttp (test/lib/llhttp.ts): a seeded generator of request heads, random and mutated, rich in the
// bytes and headers request smuggling lives on, and the comparison. Shared by
// test/proxy/h1/requestHeadDiff.test.ts (a bounded run) and scripts/fuzzRequestHead.ts (long runs).
//
// The rule checked: the fast path reads a buffer the way ClientConnection does (the head ends at the
// first CRLF CRLF; a non-null head is served, the next one read after it; null hands the rest to
// node:http). Whenever it accepts a head, llhttp, given exactly those bytes, accepts one complete
// message with the same method, target, header names and values, no body, and the same keep-alive
// decision; so llhttp also ends that head at the same byte. Whenever llhttp rejects, it hands off.
import { parseRequestHead, type RequestHead } from '../../proxy/http/h1/requestHead.ts';
import type { Llhttp, LlResult } from './llhttp.ts';

export type ParseRequestHead = (buf: Buffer, end: number) => RequestHead | null;

/** A small seeded PRNG (mulberry32): the same seed gives the same cases on every machine. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }

  /** The common choice with probability p, else one of the odd ones. */
  mostly<T>(p: number, common: T, odd: readonly T[]): T {
    return this.chance(p) ? common : this.pick(odd);
  }
}

/** Bytes that lenient parsers read differently from llhttp: controls, line ends, obs-text, NBSP. */
export const ODD_BYTES = [
  '\t',
  '\n',
  '\r',
  '\v',
  '\f',
  '\0',
  '\x01',
  '\x1b',
  '\x7f',
  '\x80',
  '\xa0',
  '\xc2',
  '\xff',
  ' ',
  '  ',
  '\r\n',
  '\n\n',
  '\r\n ',
  ':',
  ',',
  '"',
  '\\',
  '#',
  '?',
] as const;

const METHODS_COMMON = ['GET', 'GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'];
const METHODS_ODD = [
  'get',
  'Get',
  'pOST',
  'PRI',
  'CONNECT',
  'TRACE',
  'QUERY',
  'M-SEARCH',
  'PROPFIND',
  'FOO',
  'GETT',
  'GE',
  '',
  'G\tET',
  'GET\0',
  '\xa0GET',
  'OPTIONSX',
];
const TARGETS = [
  '/',
  '/',
  '/index.html',
  '/api/v1/items?id=3&x=y',
  '/a/b#frag',
  '/%20x',
  '/a?b?c#d#e',
  '/~user/',
  "/!$&'()*+,;=:@",
  '/a"b<c>d\\e^f`g{h|i}',
  '//x',
];
const TARGETS_ODD = ['*', 'http://h.test/p', 'HTTP://H/', 'h.test:443', '', 'a/b', '/a b', '%2F', '?x'];
const TARGET_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-._~%?&=#+!$'()*,;:@[]";
const VERSIONS_ODD = [
  'HTTP/1.0',
  'HTTP/2.0',
  'HTTP/0.9',
  'http/1.1',
  'Http/1.1',
  'HTTP/1.1 ',
  'HTTP/1.10',
  'HTTP/1',
  'HTTP/11',
  'HTTP/1.1\t',
  'HTTP/3.0',
  'HTTP/1.2',
  'RTSP/1.0',
  'ICE/1.0',
  'HTTP /1.1',
  '',
];
const SEPS_ODD = ['  ', '\t', '\v', '\f', '\xa0', '\0', '', ' \t', '\r', '\n'];
const EOLS_ODD = ['\n', '\r', '\r\r\n', ' \r\n', '\n\r', '\t\r\n', '\r\0\n'];
const COLONS_ODD = [':', ':  ', ':\t', ': \t ', ' :', '\t:', '::', ':\xa0', ':\v'];
const PADS_ODD = [' ', '\t', '  ', ' \t ', '\xa0', '\v', '\f', '\0', '\r', '\n', '\x7f', '\x85'];

const HOSTS = ['api', 'api.default.svc.cluster.local:8080', '127.0.0.1', '[::1]:80', '', 'a b', 'x,y', 'h\xe9'];
const CONTENT_LENGTHS = [
  '0',
  '0',
  '00',
  '+0',
  '-0',
  ' 0',
  '0 ',
  '1',
  '5',
  '10',
  '0x0',
  '0,0',
  '0, 0',
  '0 0',
  '',
  '\xa00',
  '0\xa0',
  '\v0',
  '0\t',
  '18446744073709551616',
];
const TRANSFER_ENCODINGS = ['chunked', 'identity', 'gzip, chunked', 'chunked, gzip', '', 'Chunked', 'xchunked'];
const CONNECTIONS = [
  'close',
  'keep-alive',
  'Close',
  'CLOSE',
  'Keep-Alive',
  'upgrade',
  'Upgrade',
  'close, x-foo',
  'x-foo',
  'te, close',
  ',close',
  'close ,',
  'close;x',
  'keep-alive, close',
  'x close',
  '"close"',
  'close\xa0',
  'Upgrade, HTTP2-Settings',
  '',
  ' , ',
  'x-a, x-b, x-c',
  'close\t,\tkeep-alive',
  'clo se',
  'close,,,',
  'keep-alive,x',
];
const GENERIC = [
  ['User-Agent', ['curl/8.5.0', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)']],
  ['Accept', ['*/*', 'application/json', 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8']],
  ['Accept-Encoding', ['gzip, deflate, br', 'identity']],
  ['Accept-Language', ['en-US,en;q=0.5']],
  ['Accept-Charset', ['utf-8']], // 14 letters, like Content-Length
  ['Cookie', ['session=abc123; theme=dark']],
  ['Authorization', ['Bearer eyJhbGciOiJIUzI1NiJ9.e30.x']],
  ['X-Request-Id', ['7f3c2a9e-1b4d-4e8f-9a6b-2c5d8e1f0a3b']],
  ['X-Forwarded-For', ['10.0.0.1', '10.0.0.1, 10.0.0.2']],
  ['X-Forwarded-Proto', ['https']],
  ['Cache-Control', ['no-cache']],
  ['If-None-Match', ['"abc"', 'W/"x"']],
  ['Referer', ['http://web/page?q=1']],
  ['TE', ['trailers']],
  ['Keep-Alive', ['timeout=5']],
  ['Trailer', ['X-Sum']],
  ['X-Empty', ['']],
  ['X-Latin1', ['caf\xe9 \xa0nbsp\xa0 \xff']],
] as const;
const NAMES_ODD = [
  'X Y',
  'X:Y',
  ' Host',
  'Host ',
  'Ho\tst',
  '',
  'X\x80',
  'X"',
  'X(y)',
  'Content-Length ',
  'Transfer-Encoding\t',
  'X\0',
  'X/Y',
  '\xa0X',
  'X@',
  'X{}',
];

function randomString(r: Rng, alphabet: string, max: number): string {
  let s = '';
  const n = r.int(max + 1);
  for (let i = 0; i < n; i++) s += alphabet[r.int(alphabet.length)];
  return s;
}

/** A string of the safe alphabet with, sometimes, odd bytes mixed in. */
function sprinkle(r: Rng, alphabet: string, max: number, oddRate: number): string {
  let s = '';
  const n = r.int(max + 1);
  for (let i = 0; i < n; i++) s += r.chance(oddRate) ? r.pick(ODD_BYTES) : alphabet[r.int(alphabet.length)];
  return s;
}

function target(r: Rng): string {
  const k = r.int(10);
  if (k < 5) return r.pick(TARGETS);
  if (k < 6) return r.pick(TARGETS_ODD);
  if (k < 8) return `/${randomString(r, TARGET_SAFE, 24)}`;
  return `/${sprinkle(r, TARGET_SAFE, 16, 0.15)}`;
}

const VALUE_SAFE = 'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~\t';

function headerLine(r: Rng, name: string, value: string, eol: () => string, odd: () => boolean): string {
  const pad = () => (odd() ? r.pick(PADS_ODD) : '');
  const colon = odd() ? r.pick(COLONS_ODD) : r.mostly(0.9, ': ', [':', ':\t', ':  ']);
  let line = `${name}${colon}${pad()}${value}${pad()}${eol()}`;
  // obs-fold: a continuation line.
  if (odd() && r.chance(0.2)) line += `${r.pick([' ', '\t'])}${randomString(r, VALUE_SAFE, 6)}${eol()}`;
  return line;
}

function casing(r: Rng, name: string): string {
  const k = r.int(6);
  if (k === 0) return name.toLowerCase();
  if (k === 1) return name.toUpperCase();
  return name;
}

/** One request head (request line, headers, blank line), well-formed or subtly not. */
export function requestHead(r: Rng): string {
  // Most heads are clean; the odd ones change one part, sometimes several.
  const oddness = r.chance(0.4) ? 0 : r.chance(0.5) ? 0.03 : 0.12;
  const odd = () => r.chance(oddness);
  const method = odd() ? r.pick(METHODS_ODD) : r.pick(METHODS_COMMON);
  const sep = () => (odd() ? r.pick(SEPS_ODD) : ' ');
  const eol = () => (odd() ? r.pick(EOLS_ODD) : '\r\n');
  const t = odd() ? target(r) : r.chance(0.7) ? r.pick(TARGETS) : `/${randomString(r, TARGET_SAFE, 30)}`;
  const version = odd() ? r.pick(VERSIONS_ODD) : 'HTTP/1.1';
  let s = `${method}${sep()}${t}${sep()}${version}${eol()}`;
  const lines: string[] = [];
  if (r.chance(0.9)) lines.push(headerLine(r, casing(r, 'Host'), odd() ? r.pick(HOSTS) : 'api.default.svc', eol, odd));
  const count = r.int(9);
  for (let i = 0; i < count; i++) {
    const k = odd() ? r.int(24) : r.int(19);
    let name: string;
    let value: string;
    if (k < 11) {
      const [n, vs] = r.pick(GENERIC);
      name = n;
      value = odd() ? sprinkle(r, VALUE_SAFE, 20, 0.2) : r.pick(vs);
    } else if (k < 13) [name, value] = ['Content-Length', odd() ? r.pick(CONTENT_LENGTHS) : '0'];
    else if (k < 15) [name, value] = ['Connection', r.pick(CONNECTIONS)];
    else if (k === 15) [name, value] = ['Transfer-Encoding', r.pick(TRANSFER_ENCODINGS)];
    else if (k === 16)
      [name, value] = [
        r.pick(['Upgrade', 'Expect', 'Proxy-Connection', 'Host']),
        r.pick(['websocket', 'h2c', '100-continue', 'close', 'keep-alive', 'api']),
      ];
    else if (k < 19) [name, value] = [`X-${randomString(r, 'abcdefghijklmnopqrstuvwxyz-0123456789', 12)}`, randomString(r, VALUE_SAFE, 40)];
    else if (k < 21) [name, value] = [r.pick(NAMES_ODD), 'v'];
    else [name, value] = [`X-Odd-${i}`, sprinkle(r, VALUE_SAFE, 24, 0.15)];
    lines.push(headerLine(r, casing(r, name), value, eol, odd));
  }
  // Host is not always first.
  if (lines.length > 1 && r.chance(0.3)) lines.push(lines.shift()!);
  s += lines.join('');
  return `${s}${eol()}`;
}

/** Small random edits: an odd byte inserted or replacing one, a byte dropped, a line repeated. */
export function mutate(r: Rng, s: string): string {
  const n = 1 + r.int(3);
  for (let i = 0; i < n && s.length > 0; i++) {
    const at = r.int(s.length);
    switch (r.int(6)) {
      case 0:
        s = s.slice(0, at) + r.pick(ODD_BYTES) + s.slice(at);
        break;
      case 1:
        s = s.slice(0, at) + r.pick(ODD_BYTES) + s.slice(at + 1);
        break;
      case 2:
        s = s.slice(0, at) + s.slice(at + 1);
        break;
      case 3: {
        // Repeat one header line (duplicate Host, Content-Length...).
        const start = s.indexOf('\r\n', at);
        const end = start < 0 ? -1 : s.indexOf('\r\n', start + 2);
        if (end > 0) s = s.slice(0, end + 2) + s.slice(start + 2, end + 2) + s.slice(end + 2);
        break;
      }
      case 4: {
        const c = s[at];
        s = s.slice(0, at) + (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) + s.slice(at + 1);
        break;
      }
      default:
        s = s.slice(0, at) + String.fromCharCode(r.int(256)) + s.slice(at + 1);
        break;
    }
  }
  return s;
}

/** One fuzz input: a head, or a pipeline of several, sometimes mutated. */
export function fuzzInput(r: Rng): string {
  let s = requestHead(r);
  if (r.chance(0.15)) {
    const more = 1 + r.int(3);
    for (let i = 0; i < more; i++) s += (r.chance(0.1) ? '\r\n' : '') + requestHead(r);
  }
  if (r.chance(0.25)) s = mutate(r, s);
  return s;
}

/** One head the fast path read from an input, in order, as ClientConnection reads them. */
export interface Segment {
  /** The head's bytes including the final CRLF CRLF, latin1. */
  head: string;
  fast: RequestHead | null;
}

/** The heads the fast path reads from one input: stops at the first hand-off, a close, or no more CRLF CRLF. */
export function fastSegments(data: string, parse: ParseRequestHead = parseRequestHead): Segment[] {
  const out: Segment[] = [];
  let buf = Buffer.from(data, 'latin1');
  for (;;) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return out;
    const fast = parse(buf, end);
    out.push({ head: buf.toString('latin1', 0, end + 4), fast });
    if (fast === null || fast.close) return out;
    buf = buf.subarray(end + 4);
  }
}

/** Why llhttp disagrees with a head the fast path accepted, or null when it agrees. */
export function disagreement(fast: RequestHead, ll: LlResult): string | null {
  if (ll.error !== null) return `llhttp rejects it: ${ll.error} (${ll.reason}) at byte ${ll.bytesParsed}`;
  if (ll.messages.length !== 1) return `llhttp reads ${ll.messages.length} messages in these bytes`;
  if (ll.finishError !== null) return `llhttp ends in ${ll.finishError}`;
  const m = ll.messages[0];
  if (!m.complete) return 'llhttp expects more of this message (a body)';
  if (m.body !== '') return `llhttp reads a body of ${m.body.length} bytes`;
  if (m.versionMajor !== 1 || m.versionMinor !== 1) return `llhttp reads HTTP/${m.versionMajor}.${m.versionMinor}`;
  if (m.method !== fast.method) return `method ${JSON.stringify(fast.method)}, llhttp ${JSON.stringify(m.method)}`;
  if (m.url !== fast.path) return `target ${JSON.stringify(fast.path)}, llhttp ${JSON.stringify(m.url)}`;
  if (JSON.stringify(m.headers) !== JSON.stringify(fast.raw))
    return `headers ${JSON.stringify(fast.raw)}, llhttp ${JSON.stringify(m.headers)}`;
  if (m.upgrade) return 'llhttp reads an upgrade';
  if (m.shouldKeepAlive === fast.close) return `close ${fast.close}, llhttp keep-alive ${m.shouldKeepAlive}`;
  let host: string | undefined;
  for (let i = 0; i < m.headers.length && host === undefined; i += 2) if (m.headers[i].toLowerCase() === 'host') host = m.headers[i + 1];
  if (host !== fast.host) return `host ${JSON.stringify(fast.host)}, llhttp's first Host ${JSON.stringify(host)}`;
  return null;
}

/** llhttp accepts these head bytes as (at least) one message's head, whatever comes after. */
export function llhttpAcceptsHead(ll: LlResult): boolean {
  return ll.error === null && ll.messages.length >= 1;
}

export interface FuzzStats {
  inputs: number;
  /** Heads the fast path accepted and llhttp read identically. */
  accepted: number;
  /** Heads handed to node:http that llhttp accepts (rare forms the fast path leaves alone). */
  handedOff: number;
  /** Heads handed to node:http that llhttp rejects too. */
  rejected: number;
  /** Inputs with no complete head (no CRLF CRLF): nothing for the fast path to decide. */
  noHead: number;
}

export interface FuzzFailure {
  /** The whole input, latin1 (JSON-encoded in reports). */
  input: string;
  /** The head in it the parsers disagree on. */
  head: string;
  why: string;
}

export function emptyStats(): FuzzStats {
  return { inputs: 0, accepted: 0, handedOff: 0, rejected: 0, noHead: 0 };
}

/** Runs the given inputs through both parsers; adds to stats, returns the disagreements. */
export async function differential(
  ll: Llhttp,
  inputs: string[],
  stats: FuzzStats,
  parse: ParseRequestHead = parseRequestHead,
): Promise<FuzzFailure[]> {
  const segs = inputs.map((d) => fastSegments(d, parse));
  const flat: { input: string; seg: Segment }[] = [];
  segs.forEach((ss, i) => {
    stats.inputs++;
    if (ss.length === 0) stats.noHead++;
    for (const seg of ss) flat.push({ input: inputs[i], seg });
  });
  const results = await ll.parseAll(flat.map((f) => ({ mode: 'request' as const, data: f.seg.head })));
  const failures: FuzzFailure[] = [];
  flat.forEach(({ input, seg }, i) => {
    const ll = results[i];
    if (seg.fast === null) {
      if (llhttpAcceptsHead(ll)) stats.handedOff++;
      else stats.rejected++;
      return;
    }
    const why = disagreement(seg.fast, ll);
    if (why === null) stats.accepted++;
    else failures.push({ input, head: seg.head, why });
  });
  return failures;
}

/** Generates `count` inputs from `seed` and runs them in batches; stops after maxFailures. */
export async function fuzz(
  ll: Llhttp,
  o: {
    seed: number;
    count: number;
    batch?: number;
    maxFailures?: number;
    parse?: ParseRequestHead;
    progress?: (done: number, stats: FuzzStats) => void;
  },
): Promise<{ stats: FuzzStats; failures: FuzzFailure[] }> {
  const r = new Rng(o.seed);
  const stats = emptyStats();
  const failures: FuzzFailure[] = [];
  const batch = o.batch ?? 2000;
  for (let done = 0; done < o.count && failures.length < (o.maxFailures ?? 10);) {
    const inputs: string[] = [];
    for (let i = 0; i < batch && done < o.count; i++, done++) inputs.push(fuzzInput(r));
    failures.push(...(await differential(ll, inputs, stats, o.parse)));
    o.progress?.(done, stats);
  }
  return { stats, failures: failures.slice(0, o.maxFailures ?? 10) };
}

/** A failure as one line of JSON: the exact bytes to replay. */
export function describeFailure(f: FuzzFailure): string {
  return JSON.stringify({ why: f.why, head: f.head, input: f.input });
}
