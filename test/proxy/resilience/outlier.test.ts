// Outlier ejection against a real endpoint answering 503 to everything, under 300 rps of GETs.
import t from 'tap';
import { freePort, httpBackend, nameHandler, randomLoopback, service, startSidecar } from '../fixtures.ts';
import { configDump, metric, openLoad } from './load.ts';

const RPS = 300;
// 10 s of load (not a longer run) keeps the rate and every assertion (the ejection time is 5 s).
const SECONDS = 10;
const EJECTION_MS = 5000;
const HEAL_AT_MS = 3000;

t.test(
  'one endpoint answering 503: ejected within 3 requests, < 0.1% client errors, back after the ejection time once healthy',
  async (t) => {
    let healthy = false;
    let loadStart = 0;
    const badHits: number[] = [];
    const good = await Promise.all([1, 2].map((i) => httpBackend(t, `api-${i}`)));
    const bad = await httpBackend(t, 'api-bad', (req, res, b) => {
      badHits.push(performance.now() - loadStart);
      if (healthy) return nameHandler(req, res, b);
      req.resume();
      res.writeHead(503, { 'content-length': '4' });
      res.end('down');
    });
    const port = await freePort();
    const address = randomLoopback();
    const s = await startSidecar(
      t,
      `services:\n${service(
        'api',
        address,
        port,
        [...good, bad].map((b) => b.endpoint),
      )}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { ConsecutiveErrors: 3, BaseEjectionTimeMS: ${EJECTION_MS}, IntervalMS: 200 } }
`,
    );
    loadStart = performance.now();
    let healedAt = 0;
    const { outcomes, failed } = await openLoad(`http://${address}:${port}/`, RPS, SECONDS, {
      onTick: (ms) => {
        if (!healthy && ms >= HEAL_AT_MS) {
          healthy = true;
          healedAt = ms;
        }
      },
    });
    t.equal(outcomes.length, RPS * SECONDS);
    t.ok(
      failed.length < outcomes.length * 0.001,
      `client errors: ${failed.length} of ${outcomes.length} (${JSON.stringify(failed.slice(0, 3))})`,
    );
    const beforeHeal = badHits.filter((ms) => ms < healedAt);
    t.ok(beforeHeal.length >= 3, `the bad endpoint was tried (${beforeHeal.length} requests)`);
    t.comment(`bad endpoint hits before healing at ms: ${beforeHeal.map((x) => x.toFixed(1)).join(', ')}`);
    // Ejected on the third 503: what arrives later was already on its way (sent before that answer came
    // back). 50 ms leaves room for a request held up by a busy machine; an endpoint left in rotation
    // would keep taking about a third of 300 rps, i.e. a hit every ~10 ms until it heals.
    const third = beforeHeal[2];
    const late = beforeHeal.filter((ms) => ms > third + 50);
    t.same(
      late,
      [],
      `ejected within 3 requests: nothing reached it later than 50 ms after its third 503 (${beforeHeal.length - 3} already in flight then)`,
    );
    t.ok(beforeHeal.length <= 6, `at most a few requests in flight on top of the 3 (${beforeHeal.length})`);
    const firstHit = badHits[0];
    const back = badHits.filter((ms) => ms >= healedAt);
    t.ok(back.length > 0, 'it gets traffic again once healthy');
    if (back.length > 0) {
      const returnedAfter = back[0] - beforeHeal[beforeHeal.length - 1];
      t.comment(
        `first 503 at ${firstHit.toFixed(0)} ms, ejected at ${beforeHeal[beforeHeal.length - 1].toFixed(0)} ms, back at ${back[0].toFixed(0)} ms (${returnedAfter.toFixed(0)} ms later); ${back.length} requests after it returned`,
      );
      t.ok(returnedAfter >= EJECTION_MS - 50, `no traffic during the ejection time (returned after ${returnedAfter.toFixed(0)} ms)`);
      t.ok(returnedAfter < EJECTION_MS + 1500, 'returned within the ejection time plus a few sweeps');
      t.ok(back.length > (RPS * (SECONDS * 1000 - back[0])) / 1000 / 3 / 3, `it takes a share of the load again (${back.length})`);
    }
    t.equal(await metric(s.proxy.adminPort, 'shoal_proxy_outlier_ejections_total', { result: 'ejected' }), 1, 'one ejection counted');
    t.equal(await metric(s.proxy.adminPort, 'shoal_proxy_outlier_ejected_endpoints'), 0, 'nothing ejected now');
    t.ok((await metric(s.proxy.adminPort, 'shoal_proxy_retries_total', { result: 'sent' })) >= 3, 'the 503s were retried elsewhere');
    const dump = (await configDump(s.proxy.adminPort)) as {
      policies: {
        clusters: Array<{
          cluster: string;
          outlierDetection: {
            consecutiveErrors: number;
            baseEjectionTimeMs: number;
            endpoints: Array<{ endpoint: string; timesEjected: number }>;
          };
        }>;
      };
    };
    const c = dump.policies.clusters.find((x) => x.cluster.startsWith('api.'))!;
    t.equal(c.outlierDetection.consecutiveErrors, 3, '/config_dump shows the applied ConsecutiveErrors');
    t.equal(c.outlierDetection.baseEjectionTimeMs, EJECTION_MS);
  },
);
