// The forwarder: names that are not local go to the upstream resolvers. The client's query is
// sent as it came (EDNS, DO and every flag kept) with a fresh random ID that is restored on the
// way back; identical queries in flight share one upstream query; a try that times out or fails
// moves to the next upstream; a truncated UDP answer is fetched again over TCP.
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { connect, type Socket as TcpSocket } from 'node:net';
import { randomFillSync } from 'node:crypto';
import type { Logger } from '../shared/log.ts';
import { cacheQuestion, type AnswerCache, type CacheQuestion } from './cache.ts';
import type { DnsMetrics } from './metrics.ts';
import type { Upstream } from './upstreams.ts';
import { throttledWarn } from './logThrottle.ts';
import {
  HEADER_LEN, Query, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL, emptyAnswer, inspectAnswer, parseQuery, sameQuestion,
  type AnswerFacts,
} from './wire.ts';

/** Where an answer goes: the UDP server (to port/address) or one TCP connection (ignores both). */
export interface ReplyTarget {
  send(answer: Buffer, port: number, address: string): void;
  /** The forwarder took one query from this target: exactly one send follows, now or later. */
  taken(): void;
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
  tcp: TcpSocket | null = null;
  readonly id: number;
  readonly key: string;
  readonly question: CacheQuestion;
  readonly qtype: number;
  readonly wire: Buffer;
  readonly questionEnd: number;

  constructor(id: number, key: string, question: CacheQuestion, qtype: number, wire: Buffer, questionEnd: number) {
    this.id = id;
    this.key = key;
    this.question = question;
    this.qtype = qtype;
    this.wire = wire;
    this.questionEnd = questionEnd;
  }
}

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
  private readonly byId = new Map<number, PendingQuery>();
  private readonly byKey = new Map<string, PendingQuery>();
  private readonly ids = new Uint16Array(512);
  private idNext = this.ids.length;
  private readonly scratch = new Query();
  // The upstream tried first; it moves on when one fails, so a dead upstream costs one timeout.
  private preferred = 0;
  private readonly down: boolean[];
  private socket: UdpSocket | null = null;

  constructor(opts: ForwarderOptions) {
    this.upstreams = opts.upstreams;
    this.timeoutMs = opts.timeoutMs;
    this.maxTries = Math.max(2, opts.upstreams.length);
    this.maxInflight = opts.maxInflight;
    this.cache = opts.cache;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.down = opts.upstreams.map(() => false);
  }

  get inflight(): number {
    return this.byId.size;
  }

  /** Opens the UDP socket upstream queries leave from (a random source port). */
  async start(): Promise<void> {
    const socket = createSocket({ type: 'udp4' });
    socket.on('message', (msg, rinfo) => this.onUpstreamMessage(msg, rinfo));
    socket.on('error', throttledWarn(this.log, 'dns forwarder socket error'));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '0.0.0.0', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    this.socket = socket;
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
    if (this.byId.size >= this.maxInflight || this.socket === null) {
      this.fail(waiter, q.qtype, 'dropped');
      return;
    }
    let id = this.randomId();
    while (this.byId.has(id)) id = this.randomId();
    const wire = Buffer.allocUnsafe(q.end);
    msg.copy(wire, 0, 0, q.end);
    wire[0] = id >> 8;
    wire[1] = id & 0xff;
    // A single OPT record may be followed by junk we ignored; the copy carries exactly one.
    const p = new PendingQuery(id, cacheKey, cacheQuestion(msg, q, flags), q.qtype, wire, q.questionEnd);
    p.waiters.push(waiter);
    p.upstream = this.preferred;
    this.byId.set(id, p);
    this.byKey.set(cacheKey, p);
    this.send(p);
  }

  close(): void {
    for (const p of [...this.byId.values()]) this.finish(p);
    this.socket?.close();
    this.socket = null;
  }

  private randomId(): number {
    if (this.idNext >= this.ids.length) {
      randomFillSync(this.ids);
      this.idNext = 0;
    }
    return this.ids[this.idNext++];
  }

  private send(p: PendingQuery): void {
    const u = this.upstreams[p.upstream];
    p.tries++;
    p.sentAt = performance.now();
    p.timer = setTimeout(() => this.onTryFailed(p, 'timeout'), this.timeoutMs);
    this.socket!.send(p.wire, u.port, u.host, (err) => {
      if (err && this.byId.get(p.id) === p && p.tcp === null) this.onTryFailed(p, 'error');
    });
  }

  private onUpstreamMessage(msg: Buffer, rinfo: RemoteInfo): void {
    if (msg.length < HEADER_LEN || (msg[2] & 0x80) === 0) return;
    const p = this.byId.get((msg[0] << 8) | msg[1]);
    if (p === undefined || p.tcp !== null) return;
    const u = this.upstreams[p.upstream];
    // Only the upstream asked may answer, and only to the question asked (spoofing, late answers).
    if (rinfo.address !== u.host || rinfo.port !== u.port) return;
    if (!sameQuestion(msg, HEADER_LEN, p.wire, HEADER_LEN, p.questionEnd - HEADER_LEN)) return;
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
      if (this.byId.get(p.id) !== p || p.tcp !== sock) return;
      if (msg.length < HEADER_LEN || msg.readUInt16BE(0) !== p.id ||
          !sameQuestion(msg, HEADER_LEN, p.wire, HEADER_LEN, p.questionEnd - HEADER_LEN)) {
        this.onTryFailed(p, 'malformed');
        return;
      }
      this.onAnswer(p, Buffer.from(msg));
    });
    sock.on('error', () => {
      if (this.byId.get(p.id) === p && p.tcp === sock) this.onTryFailed(p, 'error');
    });
    sock.on('close', () => {
      if (this.byId.get(p.id) === p && p.tcp === sock) this.onTryFailed(p, 'closed');
    });
  }

  private onTryFailed(p: PendingQuery, reason: string): void {
    if (this.byId.get(p.id) !== p) return;
    const u = this.upstreams[p.upstream];
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
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
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    if (p.tcp) {
      const s = p.tcp;
      p.tcp = null;
      s.destroy();
    }
    if (this.byId.get(p.id) === p) this.byId.delete(p.id);
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

function isNoData(msg: Buffer): boolean {
  return msg[6] === 0 && msg[7] === 0;
}
