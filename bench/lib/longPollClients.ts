// A bench child: holds many long-poll requests on raw keep-alive sockets and records, with the
// machine's monotonic clock, when each answer's first byte arrives.
import { connect, type Socket } from 'node:net';

interface Conn {
  socket: Socket;
  buf: Buffer;
  gotAt: bigint;
  need: number;
}

const [host, portText, path, countText] = process.argv.slice(2);
const port = Number(portText);
const conns: Conn[] = [];
let version = '';
let expected = 0;
let answered = 0;
let statuses: Record<string, number> = {};

function request(c: Conn): void {
  c.buf = Buffer.alloc(0);
  c.gotAt = 0n;
  c.need = -1;
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
  answered++;
  if (answered === expected) process.send!({ type: 'answered', statuses });
}

async function open(n: number): Promise<void> {
  const batch = 200;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => new Promise<void>((resolve, reject) => {
      const socket = connect({ host, port }, () => resolve());
      socket.setNoDelay(true);
      const c: Conn = { socket, buf: Buffer.alloc(0), gotAt: 0n, need: -1 };
      socket.on('data', (chunk) => onData(c, chunk));
      socket.on('error', reject);
      conns.push(c);
    })));
  }
}

process.on('message', async (msg: { type: string; version?: string }) => {
  if (msg.type === 'wait') {
    version = msg.version!;
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
