// End to end, scenario 3: an api pod's namespace deleted mid-load, as a node dies: its cable cut
// first (packets to it vanish: no RST, no ICMP), then its processes killed and namespace deleted.
// Web's sidecar must keep the error rate under 0.1% with retries and eject the dead endpoint
// within its outlier settings.
import { API_PORT, metricValue, shares } from './lib/mesh.ts';
import { e2eSuite, sleep } from './lib/suite.ts';

// Distinct timeouts, so a request that touched the dead pod is recognisable by its latency. An attempt
// at the cut pod times out at PER_TRY_TIMEOUT_MS and is retried; the request as a whole has
// REQUEST_TIMEOUT_MS, room for that attempt and two more.
const CONNECT_TIMEOUT_MS = 1000;
const PER_TRY_TIMEOUT_MS = 2000;
const REQUEST_TIMEOUT_MS = 3 * PER_TRY_TIMEOUT_MS;
const CONSECUTIVE_ERRORS = 3;

e2eSuite(
  'e2e, hard failure of an api pod',
  {
    tag: 'hf',
    variant: 'static',
    webApiOptions: {
      ConnectionTimeoutMS: CONNECT_TIMEOUT_MS,
      RequestTimeoutMS: REQUEST_TIMEOUT_MS,
      PerTryTimeoutMS: PER_TRY_TIMEOUT_MS,
      RetryAttempts: 2,
      MaxActiveRetries: 200,
      ConsecutiveErrors: CONSECUTIVE_ERRORS,
      BaseEjectionTimeMS: 60_000,
      IntervalMS: 1000,
      MaxEjectionPercent: 34,
    },
  },
  async (t, mesh) => {
    await t.test("scenario 3: an api pod's namespace deleted mid-load: error rate < 0.1%, the dead pod ejected", async (t) => {
      const load = await mesh.startClient('load', {
        url: `http://api:${API_PORT}/`,
        rps: 200,
        timeoutMs: 15_000,
        slowMs: CONNECT_TIMEOUT_MS,
      });
      // Web's sidecar's own account, sampled every 250 ms: when the dead endpoint was ejected, and
      // whether attempts at it went on failing afterwards.
      const samples: Array<{ at: number; ejected: number; ejections: number; failures: number }> = [];
      let sampling = true;
      const sampler = (async () => {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by another task while this one awaited (TypeScript keeps the narrowing across await)
        while (sampling) {
          const m = await mesh.metrics(mesh.web);
          samples.push({
            at: Date.now(),
            ejected: metricValue(m, 'shoal_proxy_outlier_ejected_endpoints'),
            ejections: metricValue(m, 'shoal_proxy_outlier_ejections_total', { result: 'ejected' }),
            failures: metricValue(m, 'shoal_proxy_upstream_failures_total'),
          });
          await sleep(250);
        }
      })();
      let killedAt = 0;
      try {
        await sleep(2000);
        mesh.killApiPod('api-2');
        killedAt = Date.now();
        await sleep(10_000);
      } finally {
        const r = await load.stop();
        sampling = false;
        await sampler;
        const rate = r.failed / Math.max(1, r.sent);
        t.ok(
          rate < 0.001,
          `error rate ${(rate * 100).toFixed(3)}% < 0.1% (${r.failed} of ${r.sent}: ${JSON.stringify(r.failures.slice(0, 5))})`,
        );
        const ejected = samples.find((x) => x.at > killedAt && x.ejected >= 1);
        const ejectedMs = ejected ? ejected.at - killedAt : Infinity;
        // The first failures show up one per-try timeout (in-flight requests) or connect timeout (new
        // connections) after the cut; CONSECUTIVE_ERRORS of them eject at once; plus the 250 ms sampling.
        const bound = PER_TRY_TIMEOUT_MS + 2 * CONNECT_TIMEOUT_MS + 1000;
        t.ok(
          ejectedMs <= bound,
          `the dead endpoint was ejected ${ejectedMs} ms after the cut (bound from the outlier settings: ${bound} ms)`,
        );
        // Attempts already in flight at the ejection may still time out; none may start failing after.
        const settled = samples.find((x) => ejected && x.at >= ejected.at + PER_TRY_TIMEOUT_MS + 1000);
        const last = samples[samples.length - 1];
        t.ok(
          settled && last.failures === settled.failures,
          `no failed attempt at the dead pod once it was ejected (failed attempts ${settled?.failures} then ${last?.failures})`,
        );
        t.equal(last?.ejected, 1, 'it stays ejected (BaseEjectionTimeMS 60 s) while discover still lists it');
        t.equal(last?.ejections, 1, 'ejected once');
        const after = r.timeline.filter((x) => x.second * 1000 + r.startedAt >= killedAt + bound + 1000);
        t.ok(
          after.length >= 3 && after.every((x) => !x.byPod['api-2'] && x.failed === 0),
          `after that, only api-1 and api-3 answer, with no failure (${after.length} s checked)`,
        );
        t.comment(
          `scenario 3: api-2's cable cut and its namespace deleted mid-load at 200 rps: ${r.failed} of ${r.sent} failed (${(rate * 100).toFixed(3)}%); ejected ${ejectedMs} ms after the cut (${last?.ejections} ejection, ${last?.failures} failed attempts in all, each retried); ${r.slow.filter((x) => x.at >= killedAt - PER_TRY_TIMEOUT_MS).length} requests took >= ${CONNECT_TIMEOUT_MS} ms after the cut; p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms; by pod: ${shares(r.byPod)}`,
        );
      }
      // Then discover learns the pod is gone (the EndpointSlice controller's job): still no failure.
      await mesh.forgetApiPod('api-2');
      const r2 = await mesh.runClient('load', { url: `http://api:${API_PORT}/`, rps: 200, durationMs: 2000 });
      t.equal(r2.failed, 0, `with api-2 removed from the topology: ${r2.sent} requests, none failed (${shares(r2.byPod)})`);
    });
  },
);
