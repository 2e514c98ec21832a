// End to end, scenario 4: discover killed for 30 s under 200 rps: zero failed requests; web's
// sidecar restarted meanwhile comes back from its state file and keeps balancing; once discover
// is back, the sidecars pick up changes again.
import { API_PORT, metricValue, shares } from './lib/mesh.ts';
import { e2eSuite, sleep } from './lib/suite.ts';

const OUTAGE_MS = 30_000;

e2eSuite(
  'e2e, discover down for 30 s',
  {
    tag: 'dd',
    variant: 'static',
    webApiOptions: { ConnectionTimeoutMS: 2000 },
  },
  async (t, mesh) => {
    await t.test(
      'scenario 4: discover killed for 30 s under load: zero failed requests; a restarted sidecar serves from its state file',
      async (t) => {
        const load = await mesh.startClient('load', { url: `http://api:${API_PORT}/`, rps: 200, timeoutMs: 10_000 });
        let restartMs = 0;
        let killedAt = 0;
        let backAt = 0;
        try {
          await sleep(1000);
          mesh.discover.kill('SIGKILL');
          await mesh.discover.exited;
          killedAt = Date.now();
          await sleep(8000);
          // The app's sidecar restarts while discover is down: the client holds its requests meanwhile.
          await load.pause();
          const restartStart = Date.now();
          const oldExit = await mesh.restartWebSidecar();
          restartMs = Date.now() - restartStart;
          await load.resume();
          t.equal(oldExit, 0, 'the old sidecar drained and exited 0');
          const m = await mesh.metrics(mesh.web);
          t.equal(
            metricValue(m, 'shoal_proxy_config_applied_total', { source: 'state-file' }),
            1,
            'the new sidecar applied its snapshot from the state file',
          );
          t.equal(
            metricValue(m, 'shoal_proxy_config_applied_total', { source: 'discover' }),
            0,
            'and nothing from discover, which is down',
          );
          t.same(await mesh.webApiEndpoints(), mesh.api.map((a) => `${a.pod.ip}:65380`).sort(), 'with all three api endpoints');
          await sleep(Math.max(0, killedAt + OUTAGE_MS - Date.now()));
          mesh.startDiscover();
          await mesh.waitDiscover();
          backAt = Date.now();
          // Back: a new pod reaches the (restarted) web sidecar through discover again.
          const fresh = await mesh.addApiPod();
          t.comment(
            `scenario 4: after discover came back, ${fresh.name} reached web's sidecar ${Date.now() - backAt} ms after discover was ready`,
          );
          await sleep(1000);
        } finally {
          const r = await load.stop();
          if (r.failed > 0)
            t.comment(
              `per second (sent/failed/slowest ms): ${r.timeline.map((s) => `${s.second}:${s.sent}/${s.failed}/${s.maxMs}`).join(' ')}`,
            );
          t.equal(r.failed, 0, `zero failed requests out of ${r.sent} (${JSON.stringify(r.failures.slice(0, 5))})`);
          const outage = backAt - killedAt;
          t.ok(outage >= OUTAGE_MS, `discover was down ${outage} ms`);
          const during = r.timeline.filter(
            (s) => s.second * 1000 + r.startedAt >= killedAt + 1000 && (s.second + 1) * 1000 + r.startedAt <= killedAt + OUTAGE_MS,
          );
          const byPod: Record<string, number> = {};
          for (const s of during) for (const [k, v] of Object.entries(s.byPod)) byPod[k] = (byPod[k] ?? 0) + v;
          t.same(
            Object.keys(byPod).sort(),
            ['api-1', 'api-2', 'api-3'],
            `while discover was down every api pod kept serving (${shares(byPod)})`,
          );
          const okDuring = during.reduce((a, s) => a + s.ok, 0);
          t.comment(
            `scenario 4: discover down ${(outage / 1000).toFixed(1)} s; ${r.sent} requests at 200 rps, ${r.failed} failed, ${okDuring} served while it was down (${shares(byPod)}); web's sidecar restarted from its state file in ${restartMs} ms (client paused ${r.pausedMs} ms); p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms`,
          );
        }
      },
    );
  },
);
