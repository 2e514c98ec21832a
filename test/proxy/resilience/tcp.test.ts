// L4 resilience: a refused connect is retried on another endpoint (the client's first bytes survive),
// the refusing endpoint is ejected, MaxConnections resets what is over it, idle connections close.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { freePort, randomLoopback, service, startSidecar } from '../fixtures.ts';
import { configDump, metric } from './load.ts';

async function echoBackend(t: Test, name: string): Promise<{ endpoint: string; accepted: () => number }> {
  const address = randomLoopback();
  const open = new Set<Socket>();
  let accepted = 0;
  const server = createServer((s) => {
    accepted++;
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(`${name}:${d}`));
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { endpoint: `${address}:${(server.address() as AddressInfo).port}`, accepted: () => accepted };
}

async function tcpSidecar(t: Test, endpoints: string[], options: string) {
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(
    t,
    `services:\n${service('cache', address, port, endpoints, 'tcp')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: cache, port: ${port}, protocol: tcp, options: { ${options} } }
`,
  );
  return { s, address, port };
}

/** Connects, sends `send` at once (before the sidecar has an upstream), returns the first answer or the error. */
function ask(address: string, port: number, send: string): Promise<string> {
  return new Promise((resolve) => {
    const c = connect(port, address);
    c.on('data', (d) => {
      resolve(String(d));
      c.destroy();
    });
    c.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
    c.on('close', () => resolve('closed'));
    c.write(send);
  });
}

t.test('a refused connect is retried on another endpoint; the refusing one is ejected', async (t) => {
  const live = await echoBackend(t, 'live');
  const dead = `127.0.0.1:${await freePort()}`;
  const { s, address, port } = await tcpSidecar(
    t,
    [dead, live.endpoint],
    'LBPolicy: round_robin, ConsecutiveErrors: 2, BaseEjectionTimeMS: 60000',
  );
  const answers: string[] = [];
  for (let i = 0; i < 10; i++) answers.push(await ask(address, port, `hello${i}`));
  t.same(
    answers,
    Array.from({ length: 10 }, (_, i) => `live:hello${i}`),
    'every connection reached the live endpoint, first bytes intact',
  );
  t.equal(live.accepted(), 10);
  t.equal(
    await metric(s.proxy.adminPort, 'shoal_proxy_upstream_failures_total', { reason: 'connect-failure' }),
    2,
    'two refusals, then the dead endpoint is ejected',
  );
  t.equal(await metric(s.proxy.adminPort, 'shoal_proxy_outlier_ejected_endpoints'), 1);
  const dump = (await configDump(s.proxy.adminPort)) as {
    policies: { clusters: Array<{ cluster: string; outlierDetection: { endpoints: Array<{ endpoint: string; ejected: boolean }> } }> };
  };
  const c = dump.policies.clusters.find((x) => x.cluster.startsWith('cache.'))!;
  t.same(
    c.outlierDetection.endpoints.filter((e) => e.ejected).map((e) => e.endpoint),
    [dead],
    '/config_dump names the ejected endpoint',
  );
});

t.test('MaxConnections 2: a third concurrent connection is reset; TCPIdleTimeout closes idle ones', async (t) => {
  const b = await echoBackend(t, 'b');
  const { s, address, port } = await tcpSidecar(t, [b.endpoint], 'MaxConnections: 2, TCPIdleTimeout: 1');
  const open = async () => {
    const c = connect(port, address);
    c.on('error', () => {});
    t.teardown(() => c.destroy());
    await new Promise<void>((r) => c.once('connect', () => r()));
    return c;
  };
  const one = await open();
  const two = await open();
  for (const [i, c] of [one, two].entries()) {
    const got = await new Promise<string>((r) => {
      c.once('data', (d) => r(String(d)));
      c.write(`x${i}`);
    });
    t.equal(got, `b:x${i}`);
  }
  const third = await ask(address, port, 'x2');
  t.match(third, /^(error ECONNRESET|closed)$/, `the third is refused (${third})`);
  t.equal(await metric(s.proxy.adminPort, 'shoal_proxy_circuit_overflow_total', { limit: 'max_connections' }), 1);
  const started = Date.now();
  await new Promise<void>((r) => one.once('close', () => r()));
  const idleFor = Date.now() - started;
  t.ok(idleFor < 2500, `an idle connection closes after TCPIdleTimeout (1 s; took ${idleFor} ms)`);
});
