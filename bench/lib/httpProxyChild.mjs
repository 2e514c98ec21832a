// A contender: http-proxy (the npm package) with a keep-alive agent, one Node process.
// argv[2]: the target origin. Prints {"port":N,"pid":N} when listening.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const http = require('node:http');
const httpProxy = require('http-proxy');

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const proxy = httpProxy.createProxyServer({ target: process.argv[2], agent });
proxy.on('error', (_err, _req, res) => {
  if (res.writeHead && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port, pid: process.pid })}\n`));
process.on('SIGTERM', () => process.exit(0));
