// A bench child: the floor under discover's long-poll wake-up. A bare node:http server that holds
// GET ?version=V requests and, when the watched file changes (fs.watch on its folder, as discover
// does, without discover's debounce, parsing or snapshot building), answers every waiter with the
// same number of bytes discover's snapshot has. /metrics says how many wait, in discover's metric
// name. Prints {"port","pid"}.
//   node bench/lib/longPollFloorChild.ts FILE BODY_BYTES
import { createHash } from 'node:crypto';
import { readFileSync, watch } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { basename, dirname } from 'node:path';

const [file, bytes] = process.argv.slice(2);
const body = Buffer.alloc(Number(bytes) || 2048, 'x');
let version = createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16);
const waiters = new Set<ServerResponse>();

function answer(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/yaml', 'content-length': body.length, etag: `"${version}"` });
  res.end(body);
}

watch(dirname(file), (_event, changed) => {
  if (changed !== null && changed !== basename(file)) return;
  let next: Buffer;
  try {
    next = readFileSync(file);
  } catch {
    return; // mid-replace
  }
  const v = createHash('sha256').update(next).digest('hex').slice(0, 16);
  if (v === version) return;
  version = v;
  for (const res of waiters) answer(res);
  waiters.clear();
});

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/metrics') {
    res.end(`shoal_discover_longpoll_waiters{server="floor"} ${waiters.size}\n`);
    return;
  }
  const asked = url.searchParams.get('version');
  if (asked === null || asked !== version) {
    answer(res);
    return;
  }
  waiters.add(res);
  res.on('close', () => waiters.delete(res));
});
server.keepAliveTimeout = 120_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0, pid: process.pid })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
