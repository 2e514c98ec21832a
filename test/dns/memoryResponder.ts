// Run by hardening.test.ts: the responder in a process of its own, so that its memory figures are
// its own. Started with fork() and --expose-gc; sends { port } once it listens, and answers each
// 'mem' message with its memory after a full GC and its open TCP connections.
//   node --expose-gc test/dns/memoryResponder.ts UPSTREAM TCP_IDLE_MS
import { startDnsResponder } from '../../dns/main.ts';
import { createLogger } from '../../shared/log.ts';
import { DEMO_NAMES } from './fixtures.ts';

export interface MemoryReport {
  rss: number;
  heapUsed: number;
  // Memory outside the JS heap: Buffers, socket buffers held by Node.
  external: number;
  tcpConnections: number;
}

const [upstream, idleMs] = process.argv.slice(2);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined || process.send === undefined) throw new Error('run with fork() and --expose-gc');
const r = await startDnsResponder({
  host: '127.0.0.1',
  port: 0,
  upstreams: [upstream],
  names: DEMO_NAMES,
  tcpIdleMs: Number(idleMs),
  log: createLogger('dns', 'silent'),
});
process.send({ port: r.udpPort });
process.on('message', (m) => {
  if (m === 'mem') {
    gc();
    gc();
    const u = process.memoryUsage();
    const report: MemoryReport = { rss: u.rss, heapUsed: u.heapUsed, external: u.external, tcpConnections: r.tcpConnections };
    process.send!(report);
  } else if (m === 'exit') {
    r.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  }
});
process.on('disconnect', () => process.exit(0));
