// The baseline for RSS and CPU: a bare node:http server answering the same 1 KB body.
import { createServer } from 'node:http';

const body = Buffer.alloc(1024, 'x');
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port, pid: process.pid })}\n`));
process.on('SIGTERM', () => process.exit(0));
