// DNS wire format by hand: the query parser and the response patches on the hot path, and the
// walker that reads an upstream answer's TTLs for the cache. No full decode per query.

export const TYPE_A = 1;
export const TYPE_SOA = 6;
export const TYPE_OPT = 41;
export const TYPE_IXFR = 251;
export const TYPE_AXFR = 252;
export const TYPE_MAILB = 253;
export const TYPE_MAILA = 254;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

export const HEADER_LEN = 12;
// The EDNS payload size this responder advertises (the DNS flag day 2020 value).
export const OWN_UDP_PAYLOAD = 1232;
// A query is one name and at most one OPT record: anything longer is not a query we serve.
export const MAX_QUERY_LEN = 4096;
const PLAIN_UDP_LIMIT = 512;
const OPT_RR_LEN = 11;

/** The parsed query, reused across queries by its owner (one object, no allocation per query). */
export class Query {
  id = 0;
  opcode = 0;
  rd = false;
  cd = false;
  // End of the name and of the whole question section (name + type + class).
  nameEnd = 0;
  questionEnd = 0;
  labels = 0;
  qtype = 0;
  qclass = 0;
  hasOpt = false;
  udpPayload = PLAIN_UDP_LIMIT;
  dnssecOk = false;
  ednsVersion = 0;
  // Where the message ends (an OPT record included); bytes after it are ignored.
  end = 0;
  // FNV-1a of the lower-cased wire name, 30 bits (a small integer key): the local zone looks names
  // up by it without building a string.
  hash = 0;
  private msg: Buffer | null = null;
  private upper = false;
  private keyCache: string | null = null;

  /** The name in wire form, lower-cased, as a latin1 string: the cache key. Built on first use. */
  get key(): string {
    if (this.keyCache === null) this.keyCache = wireKey(this.msg!, this.nameEnd, this.upper);
    return this.keyCache;
  }

  /** Called by parseQuery only. */
  setSource(msg: Buffer, upper: boolean): void {
    this.msg = msg;
    this.upper = upper;
    this.keyCache = null;
  }

  /** The largest UDP answer this client accepts. */
  get udpLimit(): number {
    return this.hasOpt ? Math.max(PLAIN_UDP_LIMIT, this.udpPayload) : PLAIN_UDP_LIMIT;
  }
}

const lowerScratch = Buffer.allocUnsafe(256);

function wireKey(msg: Buffer, nameEnd: number, upper: boolean): string {
  if (!upper) return msg.toString('latin1', HEADER_LEN, nameEnd);
  const n = nameEnd - HEADER_LEN;
  for (let i = 0; i < n; i++) {
    const c = msg[HEADER_LEN + i];
    lowerScratch[i] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  return lowerScratch.toString('latin1', 0, n);
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** The hash parseQuery computes, for a wire name already in lower case. */
export function wireNameHash(wire: Buffer): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < wire.length; i++) h = Math.imul(h ^ wire[i], FNV_PRIME);
  return h & 0x3fffffff;
}

/** Whether msg[start..] holds the lower-case wire name `wire`, letter case aside. */
export function nameEquals(msg: Buffer, start: number, wire: Buffer): boolean {
  const n = wire.length;
  if (start + n > msg.length) return false;
  for (let i = 0; i < n; i++) {
    let c = msg[start + i];
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== wire[i]) return false;
  }
  return true;
}

/**
 * Parses a query into q. Returns false for anything that is not one well-formed question with at
 * most one OPT record: a response, compression in the question, bad label lengths, truncation.
 */
export function parseQuery(msg: Buffer, q: Query): boolean {
  const len = msg.length;
  if (len < HEADER_LEN + 5 || len > MAX_QUERY_LEN) return false;
  const b2 = msg[2];
  if (b2 & 0x80) return false; // QR=1: a response, never answered (no reflection loops)
  if (msg[4] !== 0 || msg[5] !== 1) return false; // QDCOUNT must be 1
  if (msg[6] !== 0 || msg[7] !== 0 || msg[8] !== 0 || msg[9] !== 0) return false; // no AN/NS in a query
  const arcount = (msg[10] << 8) | msg[11];
  if (arcount > 1) return false;
  let p = HEADER_LEN;
  let upper = false;
  let labels = 0;
  let h = FNV_OFFSET;
  for (;;) {
    const l = msg[p];
    if (l === undefined || l > 63) return false; // truncated, or a pointer/extended label
    h = Math.imul(h ^ l, FNV_PRIME);
    if (l === 0) break;
    const next = p + 1 + l;
    if (next >= len || next - HEADER_LEN > 254) return false;
    for (let i = p + 1; i < next; i++) {
      let c = msg[i];
      if (c >= 0x41 && c <= 0x5a) {
        upper = true;
        c |= 0x20;
      }
      h = Math.imul(h ^ c, FNV_PRIME);
    }
    labels++;
    p = next;
  }
  const nameEnd = p + 1;
  if (nameEnd + 4 > len) return false;
  q.id = (msg[0] << 8) | msg[1];
  q.opcode = (b2 >> 3) & 0x0f;
  q.rd = (b2 & 0x01) !== 0;
  q.cd = (msg[3] & 0x10) !== 0;
  q.nameEnd = nameEnd;
  q.labels = labels;
  q.hash = h & 0x3fffffff;
  q.setSource(msg, upper);
  q.qtype = (msg[nameEnd] << 8) | msg[nameEnd + 1];
  q.qclass = (msg[nameEnd + 2] << 8) | msg[nameEnd + 3];
  q.questionEnd = nameEnd + 4;
  q.hasOpt = false;
  q.udpPayload = PLAIN_UDP_LIMIT;
  q.dnssecOk = false;
  q.ednsVersion = 0;
  q.end = q.questionEnd;
  if (arcount === 1) {
    // The only additional record a query may carry here is OPT: root name, type 41.
    const o = q.questionEnd;
    if (o + OPT_RR_LEN > len || msg[o] !== 0 || msg[o + 1] !== 0 || msg[o + 2] !== TYPE_OPT) return false;
    const rdlen = (msg[o + 9] << 8) | msg[o + 10];
    if (o + OPT_RR_LEN + rdlen > len) return false;
    q.hasOpt = true;
    q.udpPayload = (msg[o + 3] << 8) | msg[o + 4];
    q.ednsVersion = msg[o + 6];
    q.dnssecOk = (msg[o + 7] & 0x80) !== 0;
    q.end = o + OPT_RR_LEN + rdlen;
  }
  return true;
}

/** "api.default" -> the wire form "\x03api\x07default\x00" as a latin1 string (a zone/cache key). */
export function nameKey(name: string): string {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed === '') return '\x00';
  let out = '';
  for (const label of trimmed.toLowerCase().split('.')) {
    if (label.length === 0 || label.length > 63) throw new Error(`invalid DNS name ${JSON.stringify(name)}: empty or over-long label`);
    out += String.fromCharCode(label.length) + label;
  }
  out += '\x00';
  if (out.length > 255) throw new Error(`invalid DNS name ${JSON.stringify(name)}: longer than 255 bytes`);
  return out;
}

/** The wire key back to dotted text, for logs and errors. */
export function keyToName(key: string): string {
  const labels: string[] = [];
  let p = 0;
  while (p < key.length) {
    const l = key.charCodeAt(p);
    if (l === 0) break;
    labels.push(key.slice(p + 1, p + 1 + l));
    p += 1 + l;
  }
  return labels.length === 0 ? '.' : labels.join('.');
}

/** The 11-byte OPT record this responder adds to its own answers when the query had EDNS. */
export function writeOpt(out: Buffer, at: number, dnssecOk: boolean, extRcode = 0): number {
  out[at] = 0;
  out[at + 1] = 0;
  out[at + 2] = TYPE_OPT;
  out[at + 3] = OWN_UDP_PAYLOAD >> 8;
  out[at + 4] = OWN_UDP_PAYLOAD & 0xff;
  out[at + 5] = extRcode;
  out[at + 6] = 0; // EDNS version 0
  out[at + 7] = dnssecOk ? 0x80 : 0;
  out[at + 8] = 0;
  out[at + 9] = 0;
  out[at + 10] = 0;
  return at + OPT_RR_LEN;
}

/**
 * The local answer: the query's header and question copied, flags and counts patched, then the
 * precomputed answer record (empty for a type the name has no record of) and OPT when asked.
 */
export function localAnswer(msg: Buffer, q: Query, answer: Buffer | null): Buffer {
  const optLen = q.hasOpt ? OPT_RR_LEN : 0;
  const ansLen = answer === null ? 0 : answer.length;
  const out = Buffer.allocUnsafe(q.questionEnd + ansLen + optLen);
  msg.copy(out, 0, 0, q.questionEnd);
  out[2] = 0x84 | (msg[2] & 0x01); // QR, opcode QUERY, AA, RD copied
  out[3] = 0x80 | (msg[3] & 0x10); // RA, CD copied, NOERROR
  out[4] = 0;
  out[5] = 1;
  out[6] = 0;
  out[7] = answer === null ? 0 : 1;
  out[8] = 0;
  out[9] = 0;
  out[10] = 0;
  out[11] = optLen === 0 ? 0 : 1;
  if (answer !== null) answer.copy(out, q.questionEnd);
  if (optLen !== 0) writeOpt(out, q.questionEnd + ansLen, q.dnssecOk);
  return out;
}

/** The A record that answers a local name: a pointer to the question's name, TTL, the address. */
export function aRecord(address: string, ttl: number): Buffer {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) {
    throw new Error(`invalid IPv4 address ${JSON.stringify(address)}`);
  }
  const rr = Buffer.alloc(16);
  rr[0] = 0xc0;
  rr[1] = HEADER_LEN; // compression pointer to the name in the question
  rr.writeUInt16BE(TYPE_A, 2);
  rr.writeUInt16BE(CLASS_IN, 4);
  rr.writeUInt32BE(ttl, 6);
  rr.writeUInt16BE(4, 10);
  for (let i = 0; i < 4; i++) rr[12 + i] = parts[i];
  return rr;
}

/**
 * An answer with no records: header and question from the query, the given rcode, OPT when
 * the query had one. aa marks local authority; tc asks the client to retry over TCP.
 */
export function emptyAnswer(msg: Buffer, q: Query, rcode: number, opts: { aa?: boolean; tc?: boolean } = {}): Buffer {
  const extRcode = rcode >> 4;
  const optLen = q.hasOpt ? OPT_RR_LEN : 0;
  const out = Buffer.allocUnsafe(q.questionEnd + optLen);
  msg.copy(out, 0, 0, q.questionEnd);
  out[2] = 0x80 | (q.opcode << 3) | (opts.aa ? 0x04 : 0) | (opts.tc ? 0x02 : 0) | (msg[2] & 0x01);
  out[3] = 0x80 | (msg[3] & 0x10) | (rcode & 0x0f);
  out[4] = 0;
  out[5] = 1;
  out.fill(0, 6, 11);
  out[11] = optLen === 0 ? 0 : 1;
  if (optLen !== 0) writeOpt(out, q.questionEnd, q.dnssecOk, extRcode);
  return out;
}

/** What the cache needs to know about an upstream answer. */
export interface AnswerFacts {
  rcode: number;
  truncated: boolean;
  // Offsets of every TTL field but OPT's, and their values.
  ttlOffsets: number[];
  ttls: number[];
  // How long it may be cached: the smallest TTL of a positive answer, or the SOA rule of a
  // negative one (RFC 2308: min of the SOA's TTL and its MINIMUM); -1 when it must not be.
  cacheTtl: number;
}

// Skips a possibly compressed name; returns the offset after it, or -1 when malformed.
function skipName(buf: Buffer, p: number): number {
  for (let hops = 0; hops < 128; hops++) {
    const l = buf[p];
    if (l === undefined) return -1;
    if (l === 0) return p + 1;
    if ((l & 0xc0) === 0xc0) return p + 2 <= buf.length ? p + 2 : -1;
    if (l > 63) return -1;
    p += 1 + l;
  }
  return -1;
}

/**
 * Walks an upstream answer record by record. Returns null when it is malformed (then it is
 * treated as a failed try, never relayed or cached).
 */
export function inspectAnswer(buf: Buffer): AnswerFacts | null {
  if (buf.length < HEADER_LEN) return null;
  const rcode = buf[3] & 0x0f;
  const truncated = (buf[2] & 0x02) !== 0;
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  let p = HEADER_LEN;
  for (let i = 0; i < qd; i++) {
    p = skipName(buf, p);
    if (p < 0 || p + 4 > buf.length) return null;
    p += 4;
  }
  const ttlOffsets: number[] = [];
  const ttls: number[] = [];
  let minTtl = Number.MAX_SAFE_INTEGER;
  let negativeTtl = -1;
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    p = skipName(buf, p);
    if (p < 0 || p + 10 > buf.length) return null;
    const type = buf.readUInt16BE(p);
    const ttl = buf.readUInt32BE(p + 4);
    const rdlen = buf.readUInt16BE(p + 8);
    const rdata = p + 10;
    if (rdata + rdlen > buf.length) return null;
    if (type !== TYPE_OPT) {
      ttlOffsets.push(p + 4);
      ttls.push(ttl);
      if (i < an + ns) minTtl = Math.min(minTtl, ttl);
      if (type === TYPE_SOA && i >= an && i < an + ns) {
        // SOA rdata: MNAME, RNAME, SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM.
        let r = skipName(buf, rdata);
        if (r >= 0) r = skipName(buf, r);
        if (r < 0 || r + 20 > rdata + rdlen) return null;
        negativeTtl = Math.min(ttl, buf.readUInt32BE(r + 16));
      }
    }
    p = rdata + rdlen;
  }
  let cacheTtl = -1;
  if (!truncated) {
    if (rcode === RCODE_NOERROR && an > 0) cacheTtl = minTtl === Number.MAX_SAFE_INTEGER ? -1 : minTtl;
    else if (rcode === RCODE_NXDOMAIN || (rcode === RCODE_NOERROR && an === 0)) cacheTtl = negativeTtl;
  }
  return { rcode, truncated, ttlOffsets, ttls, cacheTtl };
}

/** The end of the question section of a message whose question was already checked. */
export function questionEnd(buf: Buffer): number {
  const p = skipName(buf, HEADER_LEN);
  return p < 0 ? -1 : p + 4;
}

/** Case-insensitive equality of two questions (name, type, class) in wire form. */
export function sameQuestion(a: Buffer, aStart: number, b: Buffer, bStart: number, len: number): boolean {
  if (aStart + len > a.length || bStart + len > b.length) return false;
  for (let i = 0; i < len; i++) {
    let x = a[aStart + i];
    let y = b[bStart + i];
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

const TYPE_NAMES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  35: 'NAPTR',
  43: 'DS',
  48: 'DNSKEY',
  64: 'SVCB',
  65: 'HTTPS',
  251: 'IXFR',
  252: 'AXFR',
  255: 'ANY',
};

/** The metric label of a query type: common ones by name, the rest as "other". */
export function typeLabel(qtype: number): string {
  return TYPE_NAMES[qtype] ?? 'other';
}
