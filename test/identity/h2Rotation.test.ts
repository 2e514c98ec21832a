// Certificate rotation on the HTTP/2 path: 10 s certificates (the CA's shortest) renewed at half-life on both sidecars
// while a gRPC client keeps calls in flight through one channel. The caller's upstream h2 sessions
// opened with an old certificate take no new streams once it is renewed (their calls finish), so
// new sessions handshake with the new one; no call fails.
import t from 'tap';
import { echoClient, unary } from '../proxy/h2/grpcFixtures.ts';
import { outbound } from './h2Client.ts';
import { metric, startMesh, TRUST_DOMAIN } from './meshFixture.ts';

const SECONDS = 12;
const CONCURRENCY = 8;
// Each worker waits this long between calls: about 200 calls/s in all, as in the HTTP/1.1 rotation test.
const PAUSE_MS = 40;

const counter = async (p: Parameters<typeof metric>[0], name: string, match: RegExp) =>
  (await metric(p, name)).filter((l) => match.test(l)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);

t.test('gRPC calls across certificate renewals: zero failures, new sessions take the new certificate', async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT', protocol: 'grpc', certTtlMs: 10_000 });
  const renewals = (p: typeof mesh.web) => counter(p, 'shoal_proxy_certificate_renewals_total', /./);
  const inboundMtls = () => counter(mesh.api, 'shoal_proxy_inbound_connections_by_security_total', /result="mtls"/);
  const startWeb = await renewals(mesh.web);
  const startApi = await renewals(mesh.api);
  const startSessions = await inboundMtls();

  const client = echoClient(t, outbound(mesh));
  let ok = 0;
  const failures: string[] = [];
  const started = performance.now();
  // CONCURRENCY workers, each calling, pausing, calling again.
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = 0; performance.now() - started < SECONDS * 1000; i++) {
        const data = Buffer.from(`${w}-${i}`);
        const r = await unary(client, { data }, { deadline: Date.now() + 10_000 });
        if (r.err === null && r.msg?.data.toString() === data.toString()) ok++;
        else failures.push(`${w}-${i}: ${r.err?.message ?? 'wrong answer'}`);
        await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const webRenewed = (await renewals(mesh.web)) - startWeb;
  const apiRenewed = (await renewals(mesh.api)) - startApi;
  const sessions = (await inboundMtls()) - startSessions;
  t.comment(
    `${ok} calls in ${elapsed.toFixed(1)} s (${(ok / elapsed).toFixed(0)}/s); renewals: web ${webRenewed}, api ${apiRenewed}; mTLS sessions web -> api: ${sessions}`,
  );
  t.same(failures.slice(0, 5), [], 'no call failed');
  t.ok(ok >= 100, `enough calls to mean something (${ok})`);
  t.ok(webRenewed >= 2, `web's certificate was renewed during the run (${webRenewed} times)`);
  t.ok(apiRenewed >= 2, `api's certificate was renewed during the run (${apiRenewed} times)`);
  // One channel, one upstream session per certificate: a session per renewal, not one per call.
  t.ok(sessions >= 2, `web opened new mTLS sessions after renewing (${sessions})`);
  t.ok(sessions <= webRenewed + 4, `sessions are reused between renewals (${sessions} for ${webRenewed} renewals)`);
  const ids = new Set(mesh.seen.map((h) => String(h['x-forwarded-client-cert'])));
  t.same(
    [...ids],
    [`By=spiffe://${TRUST_DOMAIN}/ns/default/sa/api;URI=spiffe://${TRUST_DOMAIN}/ns/default/sa/web`],
    "every call arrived with web's verified identity",
  );
});
