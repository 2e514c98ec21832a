// End to end, variant 1 (discover from a static topology): scenarios 1 (names, balancing,
// upstream), 5 (SIGTERM with requests in flight) and 2 (rolling update under 200 rps).
import { API_LISTEN_PORT, API_PORT, shares } from './lib/mesh.ts';
import { scenarioNamesAndBalancing, scenarioRollingUpdate } from './lib/scenarios.ts';
import { e2eSuite, sleep } from './lib/suite.ts';

e2eSuite(
  'e2e, static topology: names, drain on SIGTERM, rolling update',
  {
    tag: 'st',
    variant: 'static',
    webApiOptions: { LBPolicy: 'round_robin', ConnectionTimeoutMS: 2000 },
    drainTimeoutS: 10,
  },
  async (t, mesh) => {
    await scenarioNamesAndBalancing(t, mesh, true);

    await t.test('scenario 5: SIGTERM to a sidecar with requests in flight: all of them complete', async (t) => {
      // Outbound: web's sidecar, 40 requests of 2 s each in flight.
      const getent = await mesh.cluster.exec(mesh.web, 'getent', ['ahosts', 'api']);
      const address = /^(127\.\S+)\s/m.exec(getent.stdout)?.[1] ?? 'no-address';
      const burst = await mesh.startClient('burst', { url: `http://api:${API_PORT}/slow?ms=2000`, count: 40, timeoutMs: 20_000 });
      await burst.proc.waitFor(/inflight 40/);
      await sleep(300);
      const signalled = Date.now();
      mesh.webSidecar.kill('SIGTERM');
      await sleep(200);
      const during = await mesh.curl(mesh.web, ['-m', '3', '-o', '/dev/null', '-w', '%{http_code}', `http://${address}:${API_PORT}/`]);
      const exit = await mesh.webSidecar.exited;
      const drainMs = Date.now() - signalled;
      const r = await burst.proc
        .waitFor(/result (\{.*\})\n/, 30_000)
        .then((m) => JSON.parse(m[1]) as import('./lib/loadClient.ts').LoadResult);
      t.equal(
        r.ok,
        40,
        `all 40 requests in flight at SIGTERM completed with 200 (${JSON.stringify(r.statuses)} ${JSON.stringify(r.failures.slice(0, 3))})`,
      );
      t.equal(exit.code, 0, "web's sidecar exited 0 after draining");
      t.ok(drainMs < 10_000, `it exited once they were done, before the 10 s drain timeout (${drainMs} ms after SIGTERM)`);
      t.equal(
        `${during.code} ${during.stdout}`,
        '0 200',
        `a new connection during the drain is still served (curl exit ${during.code}, ${during.stdout}): the sidecar accepts until traffic stops`,
      );
      t.comment(
        `scenario 5 (outbound): 40 requests of 2 s in flight at SIGTERM: ${r.ok} completed, ${r.failed} failed; sidecar exited ${exit.code} ${drainMs} ms after the signal; slowest request ${r.latencyMs.max} ms`,
      );
      await mesh.restartWebSidecar();

      // Inbound: api-1's sidecar, 20 requests sent straight to its listen port (as web's sidecar does).
      const api1 = mesh.apiPod('api-1');
      const inbound = await mesh.startClient('burst', {
        url: `http://${api1.pod.ip}:${API_LISTEN_PORT}/slow?ms=2000`,
        count: 20,
        timeoutMs: 20_000,
      });
      await inbound.proc.waitFor(/inflight 20/);
      await sleep(300);
      const inboundSignalled = Date.now();
      api1.sidecar.kill('SIGTERM');
      const inboundExit = await api1.sidecar.exited;
      const inboundDrainMs = Date.now() - inboundSignalled;
      const ri = await inbound.proc
        .waitFor(/result (\{.*\})\n/, 30_000)
        .then((m) => JSON.parse(m[1]) as import('./lib/loadClient.ts').LoadResult);
      t.equal(ri.ok, 20, `all 20 inbound requests in flight at SIGTERM completed with 200 (${JSON.stringify(ri.statuses)})`);
      t.same(Object.keys(ri.byPod), ['api-1'], `answered by api-1 (${shares(ri.byPod)})`);
      t.equal(inboundExit.code, 0, "api-1's sidecar exited 0 after draining");
      t.comment(
        `scenario 5 (inbound): 20 requests of 2 s in flight at SIGTERM: ${ri.ok} completed; sidecar exited ${inboundExit.code} ${inboundDrainMs} ms after the signal`,
      );
      // Back in service for the rolling update.
      api1.sidecar = mesh.startSidecar(api1.pod, 'api');
      await mesh.waitHttp(api1.pod, 'http://127.0.0.1:65533/ready');
    });

    await scenarioRollingUpdate(t, mesh);
  },
);
