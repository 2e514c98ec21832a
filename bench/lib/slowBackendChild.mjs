// A backend that holds /hold for argv[2] ms (default 5,000) and answers anything else at once.
// Prints {"port":N,"pid":N} when ready.
import http from 'node:http';

const holdMs = Number(process.argv[2] ?? 5000);
const server = http.createServer((req, res) => {
  if (req.url === '/hold') setTimeout(() => res.end('held\n'), holdMs).unref();
  else res.end('ok\n');
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port, pid: process.pid })}\n`));
process.on('SIGTERM', () => process.exit(0));
