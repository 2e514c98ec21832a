// Every endpoint failing: the retry budget keeps upstream attempts at <= 1.2x the client's requests
// plus the floor, counted at the servers.
import t from 'tap';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from '../fixtures.ts';
import { RETRY_FLOOR } from '../../../proxy/policy/retryBudget.ts';
import { metric, openLoad } from './load.ts';

t.test('all endpoints answering 503: attempts <= 1.2 x requests + floor', async (t) => {
  const bs = await Promise.all(
    [1, 2, 3].map((i) =>
      httpBackend(t, `api-${i}`, (req, res) => {
        req.resume();
        res.writeHead(503, { 'content-length': '4' });
        res.end('down');
      }),
    ),
  );
  const port = await freePort();
  const address = randomLoopback();
  // Ejection off the table (it would move load around, not change the count), retries generous:
  // only the budget stands between 600 requests and 1,800 attempts.
  const s = await startSidecar(
    t,
    `services:\n${service(
      'api',
      address,
      port,
      bs.map((b) => b.endpoint),
    )}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { RetryAttempts: 2, MaxActiveRetries: 1000, ConsecutiveErrors: 100000 } }
`,
  );
  const { outcomes, failed } = await openLoad(`http://${address}:${port}/`, 200, 3);
  const attempts = bs.reduce((n, b) => n + b.requests, 0);
  const requests = outcomes.length;
  t.equal(failed.length, requests, 'every request fails (all endpoints are down)');
  t.ok(
    failed.every((o) => o.status === 503),
    'the client sees the upstream 503',
  );
  const bound = 1.2 * requests + RETRY_FLOOR;
  t.comment(`${requests} requests, ${attempts} upstream attempts (${(attempts / requests).toFixed(3)}x); bound ${bound}`);
  t.ok(attempts > requests, 'some requests were retried');
  t.ok(attempts <= bound, `attempts ${attempts} <= 1.2 x ${requests} + ${RETRY_FLOOR}`);
  const exhausted = await metric(s.proxy.adminPort, 'shoal_proxy_retries_total', { result: 'budget_exhausted' });
  t.ok(exhausted > requests * 0.5, `retries refused by the budget are counted (${exhausted})`);
});
