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
}

/** One TCP client: length-prefixed queries in, length-prefixed answers out, in any order. */
class TcpConnection implements ReplyTarget {
  private buf: Buffer = Buffer.alloc(0);
  private readonly socket: TcpSocket;
  private readonly router: QueryRouter;
  private readonly metrics: DnsMetrics;

  constructor(socket: TcpSocket, router: QueryRouter, metrics: DnsMetrics, idleMs: number) {
    this.socket = socket;
    this.router = router;
    this.metrics = metrics;
    socket.setNoDelay(true);
    socket.setTimeout(idleMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 2) {
      const len = this.buf.readUInt16BE(0);
      if (len > MAX_QUERY_LEN) {
        // Not a query we serve, and the stream cannot be resynchronised: count and hang up.
        this.metrics.count(-1, 'malformed');
        this.socket.destroy();
        return;
      }
      if (this.buf.length < 2 + len) return;
      const msg = Buffer.from(this.buf.subarray(2, 2 + len));
      this.buf = this.buf.subarray(2 + len);
      const answer = this.router.route(msg, this, 0, '', true);
      if (answer !== null) this.send(answer);
    }
  }

  send(answer: Buffer): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    const prefix = Buffer.allocUnsafe(2);
    prefix.writeUInt16BE(answer.length);
    this.socket.cork();
    this.socket.write(prefix);
    this.socket.write(answer);
    this.socket.uncork();
  }
}

export interface DnsServer {
  udpPort: number;
  tcpPort: number;
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
      throw new Error(`dns: cannot listen on udp ${opts.host}:${opts.port}: ${(err as Error).message}`);
    }
    try {
      udp.socket.setRecvBufferSize(RECV_BUFFER);
    } catch {
      // The kernel's rmem_max caps it; the default still works.
    }
    const port = udp.socket.address().port;
    const tcp = createServer({ pauseOnConnect: false }, (socket) => {
      if (connections.size >= opts.maxTcpConnections ||
          (!opts.allowRemote && !(socket.remoteAddress ?? '').startsWith('127.'))) {
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
      throw new Error(`dns: cannot listen on tcp ${opts.host}:${port}: ${(err as Error).message}`);
    }
    return {
      udpPort: port,
      tcpPort: port,
      async close() {
        udp.socket.close();
        for (const s of connections) s.destroy();
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
      },
    };
  }
}
