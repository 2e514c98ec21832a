// An app listening on the wildcard address on a dependency's port keeps the sidecar from listening
// for that dependency (Linux refuses the specific-address bind). The sidecar cannot fix that, so it
// says so: in its log, and in /ready's body, which names the port and what to change.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { createLogger } from '../../shared/log.ts';
import { startProxy } from '../../proxy/main.ts';
import { bindFailure, wildcardListenerOn } from '../../proxy/listener/bindConflict.ts';
import { freePort, httpBackend, randomLoopback, service, waitFor } from './fixtures.ts';
import { withDiscover } from '../lib/discover.ts';

function listen(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((c) => c.destroy());
    s.once('error', reject);
    s.listen({ host, port, exclusive: true }, () => resolve(s));
  });
}

t.test('/proc/net parsing: a wildcard LISTEN socket on the port, IPv4 or IPv6; other states, addresses and ports are not', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-procnet-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
  mkdirSync(join(dir, 'v4'));
  writeFileSync(
    join(dir, 'v4', 'tcp'),
    header +
      '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n' + // 127.0.0.1:8080 LISTEN
      '   1: 00000000:1F91 00000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n' + // 0.0.0.0:8081 ESTABLISHED (not a listener)
      '   2: 00000000:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n',
  ); // 0.0.0.0:8082 LISTEN
  t.equal(wildcardListenerOn(8080, join(dir, 'v4')), null, 'a loopback listener does not take the port on every address');
  t.equal(wildcardListenerOn(8081, join(dir, 'v4')), null, 'not in LISTEN state');
  t.equal(wildcardListenerOn(8082, join(dir, 'v4')), 'v4');
  t.equal(wildcardListenerOn(1, join(dir, 'missing')), null, 'no /proc/net (not Linux): no diagnosis, no throw');
  mkdirSync(join(dir, 'v6'));
  writeFileSync(
    join(dir, 'v6', 'tcp6'),
    header +
      '   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n',
  );
  t.equal(wildcardListenerOn(8080, join(dir, 'v6')), 'v6', 'an app on [::] (dual stack) takes the port too');
  const inUse = Object.assign(new Error('listen EADDRINUSE: address already in use 127.1.2.3:8082'), { code: 'EADDRINUSE' });
  t.match(
    bindFailure(inUse, '127.1.2.3', 8082, join(dir, 'v4')),
    /listens on 0\.0\.0\.0:8082.*cannot listen on 127\.1\.2\.3:8082.*specific addresses instead \(127\.0\.0\.1.*or give the dependency another port/,
  );
  t.equal(bindFailure(inUse, '127.1.2.3', 8080, join(dir, 'v4')), inUse.message, 'no wildcard listener: the error as it is');
  const denied = Object.assign(new Error('listen EACCES: permission denied 0.0.0.0:80'), { code: 'EACCES' });
  t.equal(bindFailure(denied, '127.1.2.3', 8082, join(dir, 'v4')), denied.message, 'other errors as they are');
});

t.test(
  'an app on 0.0.0.0:P and a dependency on port P: not ready, and /ready says why and what to do; ready once the app lets go',
  async (t) => {
    const api = await httpBackend(t, 'api-1');
    const port = await freePort();
    const address = randomLoopback();
    const discover = await withDiscover(
      t,
      `services:\n${service('api', address, port, [api.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
`,
    );
    let app: Server | null = await listen('0.0.0.0', port);
    t.teardown(() => app?.close());
    const dir = mkdtempSync(join(tmpdir(), 'shoal-bind-conflict-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const proxy = await startProxy({
      discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
      stateFile: join(dir, 'state.json'),
      adminHost: '127.0.0.1',
      adminPort: 0,
      inboundAddress: randomLoopback(),
      drainTimeoutMs: 500,
      drainQuietMs: 100,
      warmUpRequests: 0,
      log: createLogger('proxy', 'silent'),
    });
    t.teardown(() => proxy.close());
    const admin = `http://127.0.0.1:${proxy.adminPort}/ready`;
    let body = '';
    for (const end = Date.now() + 10_000; Date.now() < end && !body.includes('not bound'); await new Promise((r) => setTimeout(r, 100))) {
      const r = await request(admin);
      body = await r.body.text();
      t.equal(r.statusCode, 503, 'not ready');
    }
    t.match(
      body,
      new RegExp(`api:${port} \\(${address.replace(/\./g, '\\.')}:${port}\\) not bound: .*listens on 0\\.0\\.0\\.0:${port}`),
      '/ready names the listener and the wildcard listener in the way',
    );
    t.match(body, /specific addresses instead \(127\.0\.0\.1, where the sidecar forwards inbound traffic/, 'and what to change');
    t.equal(proxy.ready, false);
    await new Promise<void>((r) => app!.close(() => r()));
    app = null;
    await waitFor(() => proxy.ready, 'the sidecar to bind once the port is free (retried every second)', 10_000);
    const r = await request(admin);
    t.equal(r.statusCode, 200, 'ready');
    await r.body.dump();
    t.equal(await (await request(`http://${address}:${port}/`)).body.text(), 'api-1', 'the dependency is served');
  },
);
