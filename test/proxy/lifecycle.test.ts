// Lifecycle: readiness, admin access rules, discover down, restart from the state file (the drain on
// SIGTERM: drain.test.ts).
import { networkInterfaces } from 'node:os';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { createLogger } from '../../shared/log.ts';
import { startDiscover } from '../../discover/main.ts';
import { startProxy } from '../../proxy/main.ts';
import { freePort, httpBackend, randomLoopback, service, startSidecar, waitFor } from './fixtures.ts';
import { withDiscover } from '../lib/discover.ts';

function topology(address: string, port: number, endpoints: string[]): string {
  return `services:\n${service('api', address, port, endpoints)}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { LBPolicy: round_robin } }
`;
}

async function status(url: string): Promise<number> {
  const r = await request(url);
  await r.body.dump();
  return r.statusCode;
}

t.test('/ready only after the first snapshot; /metrics for anyone; /config_dump loopback only', async (t) => {
  const b = await httpBackend(t, 'api-1');
  const port = await freePort();
  const address = randomLoopback();
  const discoverPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'shoal-ready-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ifaces = Object.values(networkInterfaces())
    .flat()
    .filter((i) => i && i.family === 'IPv4' && !i.internal);
  const proxy = await startProxy({
    discoverUrl: `http://127.0.0.1:${discoverPort}/v1/resources/default/web/mesh`,
    stateFile: join(dir, 'state.json'),
    adminHost: ifaces.length > 0 ? '0.0.0.0' : '127.0.0.1',
    adminPort: 0,
    inboundAddress: randomLoopback(),
    drainTimeoutMs: 1000,
    log: createLogger('proxy', 'silent'),
  });
  t.teardown(() => proxy.close());
  const admin = `http://127.0.0.1:${proxy.adminPort}`;
  t.equal(proxy.ready, false, 'not ready while discover is down and there is no state file');
  t.equal(await status(`${admin}/ready`), 503);
  const d = await startDiscover({
    staticFile: await (async () => {
      const f = join(dir, 'topology.yaml');
      (await import('node:fs')).writeFileSync(f, topology(address, port, [b.endpoint]));
      return f;
    })(),
    host: '127.0.0.1',
    port: discoverPort,
    log: createLogger('discover', 'silent'),
  });
  t.teardown(() => d.close());
  await proxy.whenReady();
  await waitFor(() => proxy.ready, 'ready');
  t.equal(await status(`${admin}/ready`), 200, 'ready once discover answered and listeners are bound');
  t.equal(await (await request(`http://${address}:${port}/`)).body.text(), 'api-1');
  const metrics = await (await request(`${admin}/metrics`)).body.text();
  for (const name of [
    'shoal_proxy_requests_total',
    'shoal_proxy_request_duration_seconds_bucket',
    'shoal_proxy_connections_active',
    'shoal_proxy_endpoints',
    'shoal_proxy_config_version',
    'shoal_proxy_config_errors_total',
  ]) {
    t.match(metrics, name, `/metrics has ${name}`);
  }
  t.match(metrics, /shoal_proxy_config_errors_total\{kind="unreachable"[^}]*\} [1-9]/, 'the failed polls were counted');
  const dump = JSON.parse(await (await request(`${admin}/config_dump`)).body.text());
  t.equal(dump.snapshot.version, proxy.version, '/config_dump shows the applied snapshot');
  if (ifaces.length > 0) {
    const outside = `http://${ifaces[0]!.address}:${proxy.adminPort}`;
    t.equal(await status(`${outside}/config_dump`), 403, '/config_dump refuses a non-loopback client');
    t.equal(await status(`${outside}/ready`), 200, '/ready answers anyone');
  } else {
    t.comment('no non-loopback interface here: the 403 path is not exercised');
  }
});

t.test('discover down: traffic goes on; a restart with discover still down serves from the state file', async (t) => {
  const b = await httpBackend(t, 'api-1');
  const port = await freePort();
  const address = randomLoopback();
  const discover = await withDiscover(t, topology(address, port, [b.endpoint]));
  const dir = mkdtempSync(join(tmpdir(), 'shoal-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'state.json');
  const opts = {
    discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
    stateFile,
    adminHost: '127.0.0.1',
    adminPort: 0,
    inboundAddress: randomLoopback(),
    drainTimeoutMs: 1000,
    log: createLogger('proxy', 'silent'),
    waitSeconds: 1,
  };
  const first = await startProxy(opts);
  await first.whenReady();
  await waitFor(() => existsSync(stateFile), 'the state file');
  t.equal(JSON.parse(readFileSync(stateFile, 'utf8')).version, first.version, 'the state file holds the applied snapshot');
  await discover.close();
  await new Promise((r) => setTimeout(r, 1500));
  for (let i = 0; i < 20; i++) t.equal(await (await request(`http://${address}:${port}/`)).body.text(), 'api-1');
  t.equal(first.ready, true, 'still ready with discover down');
  await first.close();

  const second = await startProxy({ ...opts, firstFetchTimeoutMs: 500 } as typeof opts);
  t.teardown(() => second.close());
  // whenReady: the first snapshot (here from the state file) and the request path's warm-up.
  await second.whenReady();
  t.equal(second.ready, true, 'ready from the state file');
  t.equal(second.version, first.version);
  t.equal(await (await request(`http://${address}:${port}/`)).body.text(), 'api-1', 'serves from the state file');
});

t.test('a listener that cannot bind keeps /ready at 503 (naming it) until it binds', async (t) => {
  const b = await httpBackend(t, 'api-1');
  const port = await freePort();
  const address = randomLoopback();
  // Something else holds 127.0.0.1:<port>, which the sidecar also binds for this dependency.
  const blocker = (await import('node:net')).createServer();
  await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
  const s = await startSidecar(t, topology(address, port, [b.endpoint]));
  const admin = `http://127.0.0.1:${s.proxy.adminPort}/ready`;
  t.equal(s.proxy.ready, false);
  const r = await request(admin);
  t.equal(r.statusCode, 503);
  t.match(await r.body.text(), `127.0.0.1:${port}`, '/ready says which listener is not bound');
  t.equal(await (await request(`http://${address}:${port}/`)).body.text(), 'api-1', 'the listeners that did bind serve already');
  await new Promise<void>((r) => blocker.close(() => r()));
  await waitFor(() => s.proxy.ready, 'the retried bind', 5000);
  t.equal(await status(admin), 200);
});
