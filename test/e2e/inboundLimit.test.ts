// End to end, scenario 6: an inbound limit (LIMIT_RPS) on the api pods' port: each pod's sidecar
// lets about that many requests per second through and answers the rest 429 (rate-limited,
// with Retry-After) itself, before they reach the backend.
import { API_PORT, shares } from './lib/mesh.ts';
import { e2eSuite } from './lib/suite.ts';

const LIMIT_RPS = 20;
const LIMIT_BURST = 20;
const OFFERED_RPS = 150;
const DURATION_MS = 6000;

e2eSuite(
  'e2e, inbound rate limit',
  {
    tag: 'il',
    variant: 'static',
    webApiOptions: { ConnectionTimeoutMS: 2000, LBPolicy: 'round_robin' },
    apiInboundOptions: { OPEN_LIMIT: 'YES', LIMIT_RPS, LIMIT_BURST },
  },
  async (t, mesh) => {
    await t.test(`scenario 6: LIMIT_RPS ${LIMIT_RPS} per api pod under ${OFFERED_RPS} rps: 429s beyond the configured rate`, async (t) => {
      const r = await mesh.runClient('load', {
        url: `http://api:${API_PORT}/`,
        rps: OFFERED_RPS,
        durationMs: DURATION_MS,
        okStatuses: [200, 429],
      });
      const seconds = r.activeMs / 1000;
      t.equal(r.failed, 0, `every request got 200 or 429 (${JSON.stringify(r.statuses)} ${JSON.stringify(r.failures.slice(0, 3))})`);
      const limited = r.statuses['429'] ?? 0;
      t.equal(r.shoalErrors['rate-limited'], limited, `every 429 carries x-shoal-error: rate-limited (${limited})`);
      t.ok(
        Object.keys(r.retryAfter).length > 0 && Object.values(r.retryAfter).reduce((a, b) => a + b, 0) === limited,
        `every 429 carries Retry-After (${JSON.stringify(r.retryAfter)})`,
      );
      const expected = LIMIT_RPS * seconds + LIMIT_BURST;
      for (const pod of ['api-1', 'api-2', 'api-3']) {
        const passed = r.byPod[pod] ?? 0;
        t.ok(
          passed >= expected * 0.7 && passed <= expected * 1.15,
          `${pod} let ${passed} through in ${seconds.toFixed(1)} s: about LIMIT_RPS x seconds + LIMIT_BURST = ${expected.toFixed(0)} (${(passed / seconds).toFixed(1)}/s)`,
        );
      }
      t.comment(
        `scenario 6: ${r.sent} requests at ${OFFERED_RPS} rps for ${seconds.toFixed(1)} s against 3 pods limited to ${LIMIT_RPS} rps (burst ${LIMIT_BURST}) each: ${r.statuses['200'] ?? 0} passed (${((r.statuses['200'] ?? 0) / seconds).toFixed(1)}/s; ${shares(r.byPod)}), ${limited} got 429`,
      );
    });
  },
);
