// Inbound: the listen port forwards to 127.0.0.1:<port>, L7 for http and L4 for tcp, with metrics.
import { createServer as createNetServer, connect, type AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { randomLoopback, startSidecar } from './fixtures.ts';

t.test('inbound http and tcp ports reach the app on 127.0.0.1', async (t) => {
  const app = createServer((req, res) => {
    req.resume();
    res.end(`app saw ${req.url} from ${req.headers['x-forwarded-for']}`);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  const tcpApp = createNetServer((s) => s.end('tcp app'));
  await new Promise<void>((r) => tcpApp.listen(0, '127.0.0.1', r));
  const tcpPort = (tcpApp.address() as AddressInfo).port;
  t.teardown(() => {
    app.closeAllConnections();
    app.close();
    tcpApp.close();
  });
  const inboundAddress = randomLoopback();
  const s = await startSidecar(
    t,
    `services: []
apps:
  - name: web
    config:
      base_ports:
        - { port: ${appPort}, protocol: http }
        - { port: ${tcpPort}, protocol: tcp }
`,
    { inboundAddress },
  );
  let listen: Record<number, number> = {};
  s.proxy.onSnapshot((snap) => (listen = Object.fromEntries(snap.inbound.map((i) => [i.port, i.listenPort]))));
  t.ok(listen[appPort] >= 65301 && listen[appPort] <= 65400, 'listen port in the inbound range');
  const r = await request(`http://${inboundAddress}:${listen[appPort]}/hello`);
  t.equal(r.statusCode, 200);
  t.equal(await r.body.text(), 'app saw /hello from 127.0.0.1', 'x-forwarded-for names the caller');
  const tcp = await new Promise<string>((resolve) => {
    let d = '';
    const c = connect(listen[tcpPort], inboundAddress);
    c.on('data', (x) => (d += x));
    c.on('close', () => resolve(d));
  });
  t.equal(tcp, 'tcp app');
  const m = await (await request(`http://127.0.0.1:${s.proxy.adminPort}/metrics`)).body.text();
  t.match(
    m,
    new RegExp(`shoal_proxy_requests_total\\{dependency="inbound:${appPort}",route="inbound:${appPort}/",status_class="2xx"[^}]*\\} 1`),
  );
  t.match(m, new RegExp(`shoal_proxy_tcp_connections_total\\{dependency="inbound:${tcpPort}",direction="inbound"[^}]*\\} 1`));
  // The app is down: the caller gets an explicit 502, not a hang.
  app.closeAllConnections();
  await new Promise<void>((r) => app.close(() => r()));
  const down = await request(`http://${inboundAddress}:${listen[appPort]}/`);
  t.equal(down.statusCode, 502);
  t.equal(down.headers['x-shoal-error'], 'upstream-reset');
  await down.body.dump();
});
