// Certificate rotation under load: 10 s certificates renewed at half-life on both sidecars while a
// client sends 200 requests per second through them, over keep-alive and fresh connections alike.
import t from 'tap';
import { Pool } from 'undici';
import { metric, startMesh } from './meshFixture.ts';

const RPS = 200;
const SECONDS = 12;

t.test('rotation at half-life under 200 rps: zero failed requests', async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT', certTtlMs: 10_000 });
  const renewals = async (p: typeof mesh.web) =>
    Number((await metric(p, 'shoal_proxy_certificate_renewals_total'))[0]?.split(' ').at(-1) ?? 0);
  const startWeb = await renewals(mesh.web);
  const startApi = await renewals(mesh.api);
  const keepAlive = new Pool(mesh.webUrl, { connections: 16 });
  t.teardown(() => keepAlive.close());
  let ok = 0;
  const failures: string[] = [];
  const inFlight = new Set<Promise<void>>();
  const started = performance.now();
  // Paced at RPS for SECONDS of wall time; on a loaded machine fewer may go out (the rate reached is printed).
  let sent = 0;
  for (let i = 0; performance.now() - started < SECONDS * 1000; i++) {
    sent++;
    const due = started + (i * 1000) / RPS;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    // One request in ten on a connection of its own: new handshakes all through the rotations.
    const fresh = i % 10 === 0;
    const p = (async () => {
      try {
        const r = fresh
          ? await keepAlive.request({ path: `/r/${i}`, method: 'GET', headers: { connection: 'close' } })
          : await keepAlive.request({ path: `/r/${i}`, method: 'GET' });
        const body = await r.body.text();
        if (r.statusCode === 200 && body === `api-ok GET /r/${i}`) ok++;
        else failures.push(`${i}: ${r.statusCode} ${body.slice(0, 120)}`);
      } catch (err) {
        failures.push(`${i}: ${(err as Error).message}`);
      }
    })();
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }
  await Promise.all(inFlight);
  const elapsed = (performance.now() - started) / 1000;
  const webRenewed = (await renewals(mesh.web)) - startWeb;
  const apiRenewed = (await renewals(mesh.api)) - startApi;
  t.comment(
    `${ok} of ${sent} requests in ${elapsed.toFixed(1)} s (${(ok / elapsed).toFixed(0)} rps); renewals: web ${webRenewed}, api ${apiRenewed}`,
  );
  t.same(failures.slice(0, 5), [], 'no request failed');
  t.equal(ok, sent, 'every request answered by the app');
  t.ok(sent >= RPS * SECONDS * 0.25, `enough load to mean something (${sent} requests)`);
  t.ok(webRenewed >= 2, `web's certificate was renewed during the run (${webRenewed} times)`);
  t.ok(apiRenewed >= 2, `api's certificate was renewed during the run (${apiRenewed} times)`);
  t.equal(
    mesh.seen.filter((h) => !String(h['x-forwarded-client-cert']).endsWith('/ns/default/sa/web')).length,
    0,
    "every request arrived with web's verified identity",
  );
});
