// The listeners: UDP and TCP on one address and port, both feeding the query router. Only
// loopback clients are answered unless the responder is told otherwise: it is no open resolver.
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import type { Logger } from '../shared/log.ts';
import type { ReplyTarget } from './forwarder.ts';
import type { DnsMetrics } from './metrics.ts';
import type { QueryRouter } from './queryRouter.ts';
import { throttledWarn } from './logThrottle.ts';
import { MAX_QUERY_LEN } from './wire.ts';

export interface DnsServerOptions {
  host: string;
  port: number;
  router: QueryRouter;
  metrics: DnsMetrics;
  log: Logger;
  // Answer clients outside 127.0.0.0/8 too (a responder on a pod or node address).
  allowRemote: boolean;
  tcpIdleMs: number;
  maxTcpConnections: number;
}

const RECV_BUFFER = 4 * 1024 * 1024;

// Replies always go to the IPv4 literal a query came from: answering the "lookup" at once saves
// dns.lookup's deferred callback on every send.
function literalLookup(address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, 4);
}

/** The UDP side: one socket; it is its own reply target, so a query costs no closure. */
class UdpListener implements ReplyTarget {
  readonly socket: UdpSocket;
  private readonly router: QueryRouter;
  private readonly metrics: DnsMetrics;
  private readonly allowRemote: boolean;

  constructor(opts: DnsServerOptions) {
    this.router = opts.router;
    this.metrics = opts.metrics;
    this.allowRemote = opts.allowRemote;
    this.socket = createSocket({ type: 'udp4', lookup: literalLookup });
    this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    this.socket.on('error', throttledWarn(opts.log, 'dns udp socket error'));
  }

  onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const address = rinfo.address;
    if (!this.allowRemote && !address.startsWith('127.')) {
      this.metrics.count(-1, 'dropped');
      return;
    }
    const answer = this.router.route(msg, this, rinfo.port, address, false);
    if (answer !== null) this.socket.send(answer, rinfo.port, address);
  }

  send(answer: Buffer, port: number, address: string): void {
    this.socket.send(answer, port, address);
  }

  taken(): void {
    // One datagram, one answer: nothing to bound per client.
  }
}

// A TCP client may pipeline queries; reading stops while either of these is reached and goes on
// once answers have gone out, so a client that writes without reading holds a bounded amount of
// memory (kernel buffers aside) and then hits the idle timeout.
// Queries of one connection waiting for an upstream.
export const MAX_TCP_PENDING = 64;
// Bytes of answers queued in the process for one connection (the socket's high-water mark); the
// same bound applies to input Node reads ahead while the connection is paused.
export const TCP_HIGH_WATER = 16 * 1024;

/**
 * One TCP client: length-prefixed queries in, length-prefixed answers out, in any order.
 * Unparsed input is at most the rest of one read (64 KiB) while reading is paused, and at most
 * one partial message otherwise.
 */
class TcpConnection implements ReplyTarget {
  // Unparsed input from off on; null when there is none.
  private buf: Buffer | null = null;
  private off = 0;
  // Queries handed to the forwarder and not answered yet.
  private pending = 0;
  private paused = false;
  private pumping = false;
  // The client sent FIN: answer what is pending, then close.
  private ended = false;
  private readonly socket: TcpSocket;
  private readonly router: QueryRouter;
  private readonly metrics: DnsMetrics;

  constructor(socket: TcpSocket, router: QueryRouter, metrics: DnsMetrics, idleMs: number) {
    this.socket = socket;
    this.router = router;
    this.metrics = metrics;
    socket.setNoDelay(true);
    // Any read or write restarts it; a paused connection whose client does not read sees
    // neither, so a stalled client is closed after idleMs.
    socket.setTimeout(idleMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.pump());
    socket.on('end', () => {
      this.ended = true;
      this.maybeEnd();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.buf = null;
    });
  }

  private onData(chunk: Buffer): void {
    if (this.buf === null) {
      this.buf = chunk;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
    }
    this.off = 0;
    this.pump();
  }

  /** Answers the complete queries held, as far as the limits allow; pauses or resumes reading. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const socket = this.socket;
    let blocked = false;
    while (this.buf !== null && !socket.destroyed) {
      if (socket.writableNeedDrain || this.pending >= MAX_TCP_PENDING) {
        blocked = true;
        break;
      }
      const buf = this.buf;
      const off = this.off;
      if (buf.length - off < 2) break;
      const len = (buf[off] << 8) | buf[off + 1];
      if (len > MAX_QUERY_LEN) {
        // Not a query we serve, and the stream cannot be resynchronised: count and hang up.
        this.metrics.count(-1, 'malformed');
        this.buf = null;
        socket.destroy();
        break;
      }
      const end = off + 2 + len;
      if (buf.length < end) break;
      // A copy: a forwarded query outlives this read's buffer.
      const msg = Buffer.from(buf.subarray(off + 2, end));
      if (end === buf.length) this.buf = null;
      else this.off = end;
      const answer = this.router.route(msg, this, 0, '', true);
      if (answer !== null) this.write(answer);
    }
    this.pumping = false;
    if (socket.destroyed) return;
    if (blocked) {
      if (!this.paused) {
        this.paused = true;
        socket.pause();
      }
      return;
    }
    // Only a partial message is left: keep just its bytes, not the whole read.
    if (this.buf !== null && this.off > 0) {
      this.buf = Buffer.from(this.buf.subarray(this.off));
      this.off = 0;
    }
    if (this.paused) {
      this.paused = false;
      socket.resume();
    }
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.ended && this.pending === 0 && !this.paused && !this.socket.destroyed) this.socket.end();
  }

  private write(answer: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    const out = Buffer.allocUnsafe(2 + answer.length);
    out[0] = answer.length >> 8;
    out[1] = answer.length & 0xff;
    answer.copy(out, 2);
    socket.write(out);
  }

  taken(): void {
    this.pending++;
  }

  /** A forwarded query's answer (or its SERVFAIL). */
  send(answer: Buffer): void {
    this.pending--;
    this.write(answer);
    if (this.paused || this.ended) this.pump();
  }
}

export interface DnsServer {
  udpPort: number;
  tcpPort: number;
  /** TCP connections open now. */
  readonly tcpConnections: number;
  close(): Promise<void>;
}

function bindUdp(socket: UdpSocket, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Starts both listeners on host:port. With port 0, UDP binds first and TCP takes the same
 * number; if that number is taken for TCP, both try again on a new one.
 */
export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const connections = new Set<TcpSocket>();
  for (let attempt = 0; ; attempt++) {
    const udp = new UdpListener(opts);
    try {
      await bindUdp(udp.socket, opts.host, opts.port);
    } catch (err) {
      throw new Error(`dns: cannot listen on udp ${opts.host}:${opts.port}: ${(err as Error).message}`, { cause: err });
    }
    try {
      udp.socket.setRecvBufferSize(RECV_BUFFER);
    } catch {
      // The kernel's rmem_max caps it; the default still works.
    }
    const port = udp.socket.address().port;
    // Half-open: a client may send its queries and FIN, then read the answers (RFC 7766).
    const tcp = createServer({ pauseOnConnect: false, allowHalfOpen: true, highWaterMark: TCP_HIGH_WATER }, (socket) => {
      if (connections.size >= opts.maxTcpConnections || (!opts.allowRemote && !(socket.remoteAddress ?? '').startsWith('127.'))) {
        opts.metrics.count(-1, 'dropped');
        socket.destroy();
        return;
      }
      connections.add(socket);
      socket.on('close', () => connections.delete(socket));
      new TcpConnection(socket, opts.router, opts.metrics, opts.tcpIdleMs);
    });
    try {
      await listenTcp(tcp, opts.host, port);
    } catch (err) {
      udp.socket.close();
      if (opts.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
      throw new Error(`dns: cannot listen on tcp ${opts.host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    return {
      udpPort: port,
      tcpPort: port,
      get tcpConnections() {
        return connections.size;
      },
      async close() {
        udp.socket.close();
        for (const s of connections) s.destroy();
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
      },
    };
  }
}
