// L4 outbound: per-connection balancing, half-close both ways, idle timeout, refusal when empty.
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { freePort, randomLoopback, service, startSidecar } from '../fixtures.ts';

async function tcpBackend(t: Test, onSocket: (s: Socket) => void): Promise<{ server: Server; endpoint: string }> {
  const address = randomLoopback();
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
    onSocket(s);
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { server, endpoint: `${address}:${(server.address() as AddressInfo).port}` };
}

async function tcpSidecar(t: Test, endpoints: string[], options = '') {
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('cache', address, port, endpoints, 'tcp')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: cache, port: ${port}, protocol: tcp${options === '' ? '' : `, options: { ${options} }`} }
`,
  );
  return { address, port };
}

/** Connects, optionally writes and half-closes, and collects everything until the server closes. */
function exchange(address: string, port: number, send?: string): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port, allowHalfOpen: true });
    let data = '';
    s.on('data', (d) => (data += d.toString()));
    s.on('error', (err) => resolve({ data, error: (err as NodeJS.ErrnoException).code ?? err.message }));
    s.on('end', () => s.end());
    s.on('close', () => resolve({ data }));
    if (send !== undefined) s.end(send);
  });
}

t.test('connections are balanced per connection over 3 endpoints', async (t) => {
  const backends = await Promise.all([1, 2, 3].map((i) => tcpBackend(t, (s) => s.end(`cache-${i}`))));
  const { address, port } = await tcpSidecar(
    t,
    backends.map((b) => b.endpoint),
    'LBPolicy: round_robin',
  );
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) seen.push((await exchange(address, port)).data);
  t.same(new Set(seen).size, 3, 'all three endpoints answered');
  t.same(seen.slice(3), seen.slice(0, 3), 'round robin per connection');
  const local = await exchange('127.0.0.1', port);
  t.match(local.data, /^cache-[123]$/, '127.0.0.1:<port> carries the unique tcp port too');
});

t.test('half-close: the client ends its side and still reads the answer', async (t) => {
  const b = await tcpBackend(t, (s) => {
    let n = 0;
    s.on('data', (d) => (n += d.length));
    // Answer only after the client's FIN arrives: the proxy must pass the half-close on, not close.
    s.on('end', () => setTimeout(() => s.end(`got ${n} bytes`), 50));
  });
  const { address, port } = await tcpSidecar(t, [b.endpoint]);
  const r = await exchange(address, port, 'x'.repeat(100_000));
  t.equal(r.error, undefined);
  t.equal(r.data, 'got 100000 bytes');
});

t.test('half-close the other way: the server ends first, the client keeps sending', async (t) => {
  const b = await tcpBackend(t, (s) => {
    s.write('hello; ');
    s.end();
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('end', () => t.equal(got, 'late data', 'the server still receives after its own FIN'));
  });
  const { address, port } = await tcpSidecar(t, [b.endpoint]);
  await new Promise<void>((resolve) => {
    const s = connect({ host: address, port, allowHalfOpen: true });
    s.on('end', () => {
      s.end('late data');
    });
    s.on('close', () => resolve());
    s.resume();
  });
  await new Promise((r) => setTimeout(r, 100));
});

t.test('an idle connection is closed after TCPIdleTimeout', async (t) => {
  const b = await tcpBackend(t, (s) => s.write('hi'));
  const { address, port } = await tcpSidecar(t, [b.endpoint], 'TCPIdleTimeout: 1');
  const started = Date.now();
  const r = await exchange(address, port);
  const took = Date.now() - started;
  t.equal(r.data, 'hi');
  t.ok(took >= 900 && took < 4000, `closed after ${took} ms idle`);
});

t.test('no endpoints: the connection is refused at once, not left hanging', async (t) => {
  const { address, port } = await tcpSidecar(t, []);
  const started = Date.now();
  const r = await exchange(address, port);
  t.equal(r.data, '');
  t.ok(Date.now() - started < 1000);
  const dead = await freePort();
  const { address: a2, port: p2 } = await tcpSidecar(t, [`127.0.0.1:${dead}`]);
  const r2 = await exchange(a2, p2);
  t.equal(r2.data, '', 'an endpoint that refuses closes the client side too');
});

t.test('20 MB each way through L4 arrive intact, with a slow reader', async (t) => {
  const MB = 1024 * 1024;
  const b = await tcpBackend(t, (s) => {
    let got = 0;
    s.on('data', (d: Buffer) => (got += d.length));
    s.on('end', () => {
      const chunk = Buffer.alloc(64 * 1024, 9);
      let sent = 0;
      const pump = () => {
        while (sent < 20 * MB) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end(`|got ${got}`);
      };
      pump();
    });
  });
  const { address, port } = await tcpSidecar(t, [b.endpoint]);
  const result = await new Promise<{ bytes: number; tail: string }>((resolve) => {
    const s = connect({ host: address, port, allowHalfOpen: true });
    let bytes = 0;
    let tail = '';
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      tail = (tail + d.toString('latin1')).slice(-32);
      // A slow reader: the sidecar must hold the backend back, not buffer 20 MB.
      s.pause();
      setTimeout(() => s.resume(), 1);
    });
    s.on('end', () => resolve({ bytes, tail }));
    const chunk = Buffer.alloc(MB, 1);
    let n = 0;
    const pump = () => {
      while (n < 20) {
        n++;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  t.match(result.tail, new RegExp(`\\|got ${20 * MB}$`), 'the backend got all 20 MB');
  t.equal(result.bytes, 20 * MB + `|got ${20 * MB}`.length, 'the client got all 20 MB back');
});
