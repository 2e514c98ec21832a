// Carries TCP connections made inside a namespace to a Unix socket in the file system, which
// every namespace shares: discover in its namespace reaches the test's kube-apiserver, which
// listens on the host's loopback, through the test process (unixToTcp carries that socket to the
// API server) without any address outside the namespaces. `node kubeRelay.ts HOST PORT SOCKET` prints "ready" once listening.
import { connect, createServer, type Server, type Socket } from 'node:net';

/** Joins two sockets both ways; either side's end or error closes the other. */
export function join(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const close = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', close);
  b.on('error', close);
  a.on('close', close);
  b.on('close', close);
}

/** A server on a Unix socket path forwarding each connection to host:port. */
export function unixToTcp(path: string, host: string, port: number): Promise<Server> {
  const server = createServer((c) => join(c, connect(port, host)));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

if (import.meta.main) {
  const [host, port, path] = process.argv.slice(2);
  createServer((c) => join(c, connect(path))).listen(Number(port), host, () => process.stdout.write('ready\n'));
}
