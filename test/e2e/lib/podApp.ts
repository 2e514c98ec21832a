// A pod's workload, run inside its namespace:
//   node podApp.ts http NAME HOST PORT RUNDIR   HTTP: GET / answers NAME; /slow?ms=N answers after N ms
//   node podApp.ts tcp  NAME HOST PORT RUNDIR   TCP: writes "NAME\n" on connect and ends
// RUNDIR is only there so the process can be found (and killed) by its run's prefix.
// Prints "ready NAME" once listening.
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';

const [kind, name, host, portText] = process.argv.slice(2);
const port = Number(portText);
if ((kind !== 'http' && kind !== 'tcp') || !name || !host || !Number.isInteger(port)) {
  process.stderr.write('usage: podApp.ts http|tcp NAME HOST PORT RUNDIR\n');
  process.exit(2);
}

const server =
  kind === 'http'
    ? createHttpServer((req, res) => {
        req.resume();
        const url = new URL(req.url ?? '/', 'http://x');
        const answer = () => {
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name), 'x-pod': name });
          res.end(name);
        };
        if (url.pathname === '/slow') setTimeout(answer, Number(url.searchParams.get('ms') ?? 1000));
        else answer();
      })
    : createTcpServer((sock) => {
        sock.on('error', () => sock.destroy());
        sock.end(`${name}\n`);
      });
if ('keepAliveTimeout' in server) server.keepAliveTimeout = 60_000;
server.listen(port, host, () => process.stdout.write(`ready ${name}\n`));
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  if ('closeIdleConnections' in server) server.closeIdleConnections();
});
