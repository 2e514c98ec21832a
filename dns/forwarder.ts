// The forwarder: names that are not local go to the upstream resolvers. The client's query is
// sent as it came (EDNS, DO and every flag kept) with a fresh random ID that is restored on the
// way back; identical queries in flight share one upstream query; a try that times out or fails
// moves to the next upstream; a truncated UDP answer is fetched again over TCP.
// Upstream queries leave from many short-lived sockets, each on a random source port and
// carrying one query at a time (RFC 5452): a forged answer must guess the port as well as the
// 16-bit ID.
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { connect, type Socket as TcpSocket } from 'node:net';
import { randomFillSync } from 'node:crypto';
import type { Logger } from '../shared/log.ts';
import { cacheQuestion, type AnswerCache, type CacheQuestion } from './cache.ts';
import type { DnsMetrics } from './metrics.ts';
import type { Upstream } from './upstreams.ts';
import { throttledWarn } from './logThrottle.ts';
import {
  HEADER_LEN,
  Query,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  emptyAnswer,
  inspectAnswer,
  parseQuery,
  sameQuestion,
  type AnswerFacts,
} from './wire.ts';

/** Where an answer goes: the UDP server (to port/address) or one TCP connection (ignores both). */
export interface ReplyTarget {
  send(answer: Buffer, port: number, address: string): void;
  /** The forwarder took one query from this target: exactly one send follows, now or later. */
  taken(): void;
}

// The upstream is an IPv4 literal: "looking it up" at once lets bind and connect finish before
// connect() returns, instead of after a deferred dns.lookup callback per try.
function literalLookup(address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, 4);
}

interface Waiter {
  target: ReplyTarget;
  port: number;
  address: string;
  // The client's own query: its ID and question spelling go into the answer.
  query: Buffer;
  // The largest answer it takes over UDP; 0 over TCP (no limit).
  udpLimit: number;
}

class PendingQuery {
  readonly waiters: Waiter[] = [];
  tries = 0;
  upstream = 0;
  sentAt = 0;
  timer: NodeJS.Timeout | null = null;
  // The current try's socket: UDP, or TCP after a truncated answer; null between tries.
  udp: UpstreamSocket | null = null;
  tcp: TcpSocket | null = null;
  // The current try's ID (a fresh one per try).
  id: number;
  done = false;
  readonly key: string;
  readonly question: CacheQuestion;
  readonly qtype: number;
  readonly wire: Buffer;
  readonly questionEnd: number;

  constructor(key: string, question: CacheQuestion, qtype: number, wire: Buffer, questionEnd: number) {
    this.id = 0;
    this.key = key;
    this.question = question;
    this.qtype = qtype;
    this.wire = wire;
    this.questionEnd = questionEnd;
  }
}

/**
 * A UDP socket to one upstream: bound to port 0 (the kernel picks a random ephemeral port) and
 * connected, so the kernel drops datagrams from any other address or port and an upstream that
 * refuses (ICMP port unreachable) fails the try at once. It carries one query at a time, at most
 * SOCKET_USES queries in all, and is closed after SOCKET_IDLE_MS unused or after any failure.
 */
class UpstreamSocket {
  readonly sock: UdpSocket;
  readonly upstream: number;
  // The query it carries now.
  p: PendingQuery | null = null;
  uses = 0;
  idleSince = 0;
  connected = false;
  closed = false;
  readonly onSent: (err: Error | null) => void;

  constructor(sock: UdpSocket, upstream: number, onSent: (err: Error | null) => void) {
    this.sock = sock;
    this.upstream = upstream;
    this.onSent = onSent;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.p = null;
    this.sock.close();
  }
}

// Opening a socket costs about as much as the rest of a forwarded query, so one is used for a
// few queries, one after another, before a new port is taken.
export const SOCKET_USES = 4;
const SOCKET_IDLE_MS = 1000;
const MAX_IDLE_SOCKETS = 64;

export interface ForwarderOptions {
  upstreams: Upstream[];
  timeoutMs: number;
  maxInflight: number;
  cache: AnswerCache;
  metrics: DnsMetrics;
  log: Logger;
}

// Coalesced clients per upstream query beyond this are answered SERVFAIL (a flood, not a client).
const MAX_WAITERS = 256;
const MAX_TCP_ANSWER = 65535;

export class Forwarder {
  private readonly upstreams: Upstream[];
  private readonly timeoutMs: number;
  private readonly maxTries: number;
  private readonly maxInflight: number;
  private readonly cache: AnswerCache;
  private readonly metrics: DnsMetrics;
  private readonly log: Logger;
  // Every query in flight, by its question and flags.
  private readonly byKey = new Map<string, PendingQuery>();
  private readonly ids = new Uint16Array(512);
  private idNext = this.ids.length;
  private readonly scratch = new Query();
  // The upstream tried first; it moves on when one fails, so a dead upstream costs one timeout.
  private preferred = 0;
  private readonly down: boolean[];
  private running = false;
  // Per upstream: sockets between two queries, the last used on top.
  private readonly idle: UpstreamSocket[][];
  private sweeper: NodeJS.Timeout | null = null;
  // A try's socket failing (out of file descriptors, no route): one line per interval.
  private readonly warnSocket: (err: Error) => void;

  constructor(opts: ForwarderOptions) {
    this.upstreams = opts.upstreams;
    this.timeoutMs = opts.timeoutMs;
    this.maxTries = Math.max(2, opts.upstreams.length);
    this.maxInflight = opts.maxInflight;
    this.cache = opts.cache;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.down = opts.upstreams.map(() => false);
    this.idle = opts.upstreams.map(() => []);
    this.warnSocket = throttledWarn(this.log, 'dns forwarder socket error');
  }

  get inflight(): number {
    return this.byKey.size;
  }

  /** Starts taking queries. */
  async start(): Promise<void> {
    this.running = true;
    this.sweeper = setInterval(() => this.sweepIdle(performance.now()), SOCKET_IDLE_MS);
    this.sweeper.unref();
  }

  /** Forwards q (parsed from msg) on behalf of one client; the answer goes to target. */
  forward(msg: Buffer, q: Query, flags: number, target: ReplyTarget, port: number, address: string, udpLimit: number): void {
    const waiter: Waiter = { target, port, address, query: msg, udpLimit };
    target.taken();
    // Identical questions (name in any case, type, class, flags) share one upstream query.
    const cacheKey = q.key + String.fromCharCode(q.qtype, q.qclass, flags);
    const same = this.byKey.get(cacheKey);
    if (same !== undefined) {
      if (same.waiters.length < MAX_WAITERS) same.waiters.push(waiter);
      else this.fail(waiter, q.qtype, 'dropped');
      return;
    }
    if (this.byKey.size >= this.maxInflight || !this.running) {
      this.fail(waiter, q.qtype, 'dropped');
      return;
    }
    const wire = Buffer.allocUnsafe(q.end);
    msg.copy(wire, 0, 0, q.end);
    // A single OPT record may be followed by junk we ignored; the copy carries exactly one.
    const p = new PendingQuery(cacheKey, cacheQuestion(msg, q, flags), q.qtype, wire, q.questionEnd);
    p.waiters.push(waiter);
    p.upstream = this.preferred;
    this.byKey.set(cacheKey, p);
    this.send(p);
  }

  close(): void {
    this.running = false;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const p of [...this.byKey.values()]) this.finish(p);
    this.sweepIdle(Infinity);
  }

  private randomId(): number {
    if (this.idNext >= this.ids.length) {
      randomFillSync(this.ids);
      this.idNext = 0;
    }
    return this.ids[this.idNext++];
  }

  /** One try over UDP: a fresh ID, from a socket that carries no other query. */
  private send(p: PendingQuery): void {
    p.tries++;
    p.sentAt = performance.now();
    const id = this.randomId();
    p.id = id;
    p.wire[0] = id >> 8;
    p.wire[1] = id & 0xff;
    p.timer = setTimeout(() => this.onTryFailed(p, 'timeout'), this.timeoutMs);
    const us = this.takeSocket(p.upstream);
    if (us.closed) {
      // It could not even be opened (out of file descriptors, say): already logged.
      this.onTryFailed(p, 'error');
      return;
    }
    us.p = p;
    us.uses++;
    p.udp = us;
    // A new socket sends once connected (see openSocket).
    if (us.connected) us.sock.send(p.wire, us.onSent);
  }

  private takeSocket(upstream: number): UpstreamSocket {
    const idle = this.idle[upstream];
    const now = performance.now();
    while (idle.length > 0) {
      const us = idle.pop()!;
      if (!us.closed && now - us.idleSince < SOCKET_IDLE_MS) return us;
      us.close();
    }
    return this.openSocket(upstream);
  }

  private openSocket(upstream: number): UpstreamSocket {
    const u = this.upstreams[upstream];
    const sock = createSocket({ type: 'udp4', lookup: literalLookup });
    const us: UpstreamSocket = new UpstreamSocket(sock, upstream, (err) => {
      if (err) this.onUdpError(us, err);
    });
    sock.on('message', (msg, rinfo) => {
      const p = us.p;
      if (p !== null) this.onUpstreamMessage(p, msg, rinfo);
    });
    sock.on('error', (err) => this.onUdpError(us, err));
    // Node passes a failed connect's error to this callback (its types do not say so).
    const onConnect = (err?: Error): void => {
      if (err) {
        this.onUdpError(us, err);
        return;
      }
      us.connected = true;
      if (us.p !== null) sock.send(us.p.wire, us.onSent);
    };
    sock.connect(u.port, u.host, onConnect as () => void);
    return us;
  }

  private onUdpError(us: UpstreamSocket, err: Error): void {
    // ECONNREFUSED is the upstream's ICMP port unreachable: a failed try, nothing to log.
    if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED') this.warnSocket(err);
    const p = us.p;
    if (p !== null && p.udp === us) this.onTryFailed(p, 'error');
    else us.close();
  }

  /** After a good answer the socket may take another query; otherwise it is closed. */
  private releaseUdp(p: PendingQuery): void {
    const us = p.udp;
    if (us === null) return;
    p.udp = null;
    us.p = null;
    const idle = this.idle[us.upstream];
    if (us.uses >= SOCKET_USES || !this.running || idle.length >= MAX_IDLE_SOCKETS) {
      us.close();
      return;
    }
    us.idleSince = performance.now();
    idle.push(us);
  }

  private sweepIdle(now: number): void {
    for (const idle of this.idle) {
      // Oldest at the bottom.
      let n = 0;
      while (n < idle.length && now - idle[n].idleSince >= SOCKET_IDLE_MS) idle[n++].close();
      if (n > 0) idle.splice(0, n);
    }
  }

  private onUpstreamMessage(p: PendingQuery, msg: Buffer, rinfo: RemoteInfo): void {
    if (msg.length < HEADER_LEN || (msg[2] & 0x80) === 0) return;
    // Only the upstream asked may answer, with this try's ID, to the one question asked
    // (forged and late answers). The connected socket already filters the address and port.
    if (((msg[0] << 8) | msg[1]) !== p.id) return;
    const u = this.upstreams[p.upstream];
    if (rinfo.address !== u.host || rinfo.port !== u.port) return;
    if (msg[4] !== 0 || msg[5] !== 1 || !sameQuestion(msg, HEADER_LEN, p.wire, HEADER_LEN, p.questionEnd - HEADER_LEN)) return;
    this.onAnswer(p, msg);
  }

  private onAnswer(p: PendingQuery, msg: Buffer): void {
    const u = this.upstreams[p.upstream];
    const facts = inspectAnswer(msg);
    if (facts === null) {
      this.onTryFailed(p, 'malformed');
      return;
    }
    if (facts.truncated && p.tcp === null) {
      this.retryOverTcp(p);
      return;
    }
    const rcode = facts.rcode;
    if ((rcode === RCODE_SERVFAIL || rcode === RCODE_REFUSED) && p.tries < this.maxTries && this.upstreams.length > 1) {
      this.onTryFailed(p, rcode === RCODE_SERVFAIL ? 'servfail' : 'refused');
      return;
    }
    this.metrics.upstreamDuration.observe({ upstream: u.label, outcome: 'answer' }, (performance.now() - p.sentAt) / 1000);
    this.markUp(p.upstream);
    this.releaseUdp(p);
    this.finish(p);
    if (facts.cacheTtl > 0) {
      this.cache.store(p.question, msg, facts.ttlOffsets, facts.ttls, facts.cacheTtl, rcode !== 0 || isNoData(msg));
    }
    this.deliver(p, msg, facts);
  }

  private deliver(p: PendingQuery, msg: Buffer, facts: AnswerFacts): void {
    const result = facts.rcode === RCODE_NXDOMAIN ? 'nxdomain' : facts.rcode === RCODE_SERVFAIL ? 'servfail' : 'forwarded';
    for (const w of p.waiters) {
      let out: Buffer;
      if (w.udpLimit !== 0 && msg.length > w.udpLimit) {
        out = this.truncatedFor(w);
      } else {
        out = Buffer.allocUnsafe(msg.length);
        msg.copy(out);
        out[0] = w.query[0];
        out[1] = w.query[1];
        w.query.copy(out, HEADER_LEN, HEADER_LEN, p.questionEnd);
      }
      w.target.send(out, w.port, w.address);
      this.metrics.count(p.qtype, result);
    }
  }

  private retryOverTcp(p: PendingQuery): void {
    const u = this.upstreams[p.upstream];
    this.metrics.tcpRetries.inc();
    closeUdp(p);
    if (p.timer) clearTimeout(p.timer);
    p.timer = setTimeout(() => this.onTryFailed(p, 'timeout'), this.timeoutMs);
    const sock = connect({ host: u.host, port: u.port });
    p.tcp = sock;
    const prefix = Buffer.allocUnsafe(2);
    prefix.writeUInt16BE(p.wire.length);
    sock.write(Buffer.concat([prefix, p.wire]));
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > MAX_TCP_ANSWER + 2) {
        sock.destroy();
        return;
      }
      if (buf.length < 2) return;
      const need = buf.readUInt16BE(0);
      if (buf.length < 2 + need) return;
      const msg = buf.subarray(2, 2 + need);
      sock.destroy();
      if (p.done || p.tcp !== sock) return;
      if (
        msg.length < HEADER_LEN ||
        msg.readUInt16BE(0) !== p.id ||
        msg[4] !== 0 ||
        msg[5] !== 1 ||
        !sameQuestion(msg, HEADER_LEN, p.wire, HEADER_LEN, p.questionEnd - HEADER_LEN)
      ) {
        this.onTryFailed(p, 'malformed');
        return;
      }
      // Its own memory (not a slice of the read, nor of the shared pool): it may be cached.
      const own = Buffer.allocUnsafeSlow(msg.length);
      msg.copy(own);
      this.onAnswer(p, own);
    });
    sock.on('error', () => {
      if (!p.done && p.tcp === sock) this.onTryFailed(p, 'error');
    });
    sock.on('close', () => {
      if (!p.done && p.tcp === sock) this.onTryFailed(p, 'closed');
    });
  }

  private onTryFailed(p: PendingQuery, reason: string): void {
    if (p.done) return;
    const u = this.upstreams[p.upstream];
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    closeUdp(p);
    if (p.tcp) {
      const s = p.tcp;
      p.tcp = null;
      s.destroy();
    }
    this.metrics.upstreamFailures.inc({ upstream: u.label, reason });
    this.metrics.upstreamDuration.observe({ upstream: u.label, outcome: reason }, (performance.now() - p.sentAt) / 1000);
    this.markDown(p.upstream, reason);
    if (p.tries < this.maxTries) {
      p.upstream = (p.upstream + 1) % this.upstreams.length;
      this.send(p);
      return;
    }
    this.finish(p);
    for (const w of p.waiters) this.fail(w, p.qtype, 'servfail');
  }

  private finish(p: PendingQuery): void {
    p.done = true;
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    closeUdp(p);
    if (p.tcp) {
      const s = p.tcp;
      p.tcp = null;
      s.destroy();
    }
    if (this.byKey.get(p.key) === p) this.byKey.delete(p.key);
  }

  private fail(w: Waiter, qtype: number, result: 'servfail' | 'dropped'): void {
    if (parseQuery(w.query, this.scratch)) w.target.send(emptyAnswer(w.query, this.scratch, RCODE_SERVFAIL), w.port, w.address);
    this.metrics.count(qtype, result);
  }

  private truncatedFor(w: Waiter): Buffer {
    parseQuery(w.query, this.scratch);
    return emptyAnswer(w.query, this.scratch, 0, { tc: true });
  }

  private markDown(i: number, reason: string): void {
    if (this.preferred === i) this.preferred = (i + 1) % this.upstreams.length;
    if (!this.down[i]) {
      this.down[i] = true;
      this.log.warn({ upstream: this.upstreams[i].label, reason }, 'dns upstream failed; trying the next one');
    }
  }

  private markUp(i: number): void {
    if (this.down[i]) {
      this.down[i] = false;
      this.log.info({ upstream: this.upstreams[i].label }, 'dns upstream answers again');
    }
  }
}

function closeUdp(p: PendingQuery): void {
  const us = p.udp;
  if (us === null) return;
  p.udp = null;
  us.close();
}

function isNoData(msg: Buffer): boolean {
  return msg[6] === 0 && msg[7] === 0;
}
