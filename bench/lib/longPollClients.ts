// A bench child: holds many long-poll requests on raw keep-alive sockets and records, with the
// machine's monotonic clock, when each answer's first byte arrives.
import { connect, type Socket } from 'node:net';

interface Conn {
  socket: Socket;
  buf: Buffer;
  gotAt: bigint;
  need: number;
  // With a path list (5th argument): the path this client polls, and the version it last held.
  path?: string;
  holds?: string;
}

const [host, portText, path, countText, pathList] = process.argv.slice(2);
const port = Number(portText);
// Optional: comma-separated paths; client i polls paths[i % n] (many apps' snapshots from one child).
const paths = pathList ? pathList.split(',') : null;
// With paths: the version each path's client holds, sent in the 'wait' message.
let versions: Record<string, string> = {};
// With paths: every answer's ETag must differ from what the client held (a real new version).
let stale = 0;
const conns: Conn[] = [];
let version = '';
let expected = 0;
let answered = 0;
let statuses: Record<string, number> = {};

function request(c: Conn): void {
  c.buf = Buffer.alloc(0);
  c.gotAt = 0n;
  c.need = -1;
  if (c.path !== undefined) {
    c.holds = versions[c.path] ?? version;
    c.socket.write(`GET ${c.path}?version=${c.holds}&wait=60s HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
    return;
  }
  c.socket.write(`GET ${path}?version=${version}&wait=60s HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
}

function onData(c: Conn, chunk: Buffer): void {
  if (c.gotAt === 0n) c.gotAt = process.hrtime.bigint();
  c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
  const end = c.buf.indexOf('\r\n\r\n');
  if (end < 0) return;
  const head = c.buf.subarray(0, end).toString('latin1');
  const len = Number(/content-length: *([0-9]+)/i.exec(head)?.[1] ?? 0);
  if (c.buf.length < end + 4 + len) return;
  const status = head.slice(9, 12);
  statuses[status] = (statuses[status] ?? 0) + 1;
  if (c.path !== undefined && status === '200' && /etag: *"?([^"\r\n]*)"?/i.exec(head)?.[1] === c.holds) stale++;
  answered++;
  if (answered === expected) process.send!(paths ? { type: 'answered', statuses, stale } : { type: 'answered', statuses });
}

async function open(n: number): Promise<void> {
  const batch = 200;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(
      Array.from(
        { length: Math.min(batch, n - i) },
        () =>
          new Promise<void>((resolve, reject) => {
            const socket = connect({ host, port }, () => resolve());
            socket.setNoDelay(true);
            const c: Conn = { socket, buf: Buffer.alloc(0), gotAt: 0n, need: -1 };
            if (paths) c.path = paths[conns.length % paths.length];
            socket.on('data', (chunk) => onData(c, chunk));
            socket.on('error', reject);
            conns.push(c);
          }),
      ),
    );
  }
}

process.on('message', (msg: { type: string; version?: string; versions?: Record<string, string> }) => {
  if (msg.type === 'wait') {
    version = msg.version ?? '';
    versions = msg.versions ?? {};
    stale = 0;
    expected = conns.length;
    answered = 0;
    statuses = {};
    for (const c of conns) request(c);
    process.send!({ type: 'sent' });
  } else if (msg.type === 'report') {
    process.send!({ type: 'times', times: conns.map((c) => c.gotAt.toString()) });
  } else if (msg.type === 'exit') {
    for (const c of conns) c.socket.destroy();
    process.exit(0);
  }
});

await open(Number(countText));
process.send!({ type: 'open', count: conns.length });
