// The scenarios both discover variants run (1: names and balancing, 2: rolling update).
import type { Test } from 'tap';
import { API_PORT, OUTSIDE_NAME, OUTSIDE_PORT, metricValue, shares, type Mesh } from './mesh.ts';

function tally(lines: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of lines) out[l] = (out[l] ?? 0) + 1;
  return out;
}

/** Checks a byPod count is balanced over pods: exactly with round robin, each ≥ minShare otherwise. */
function assertBalanced(t: Test, byPod: Record<string, number>, pods: string[], exact: boolean, what: string): void {
  const counts = pods.map((p) => byPod[p] ?? 0);
  const total = counts.reduce((a, b) => a + b, 0);
  t.same(Object.keys(byPod).sort(), [...pods].sort(), `${what}: answered by exactly ${pods.join(', ')}`);
  if (exact) t.ok(Math.max(...counts) - Math.min(...counts) <= 1, `${what}: round robin splits evenly (${shares(byPod)})`);
  // least_request (P2C) on sequential requests is a random pick among equals: 60 draws keep the
  // chance that a pod falls under 10% near 1e-4.
  else t.ok(Math.min(...counts) >= total * 0.1, `${what}: every pod takes at least 10% (${shares(byPod)})`);
}

/** Scenario 1: curl and glibc resolve through shoal's DNS from web; requests balance over the api pods; other names go upstream. */
export async function scenarioNamesAndBalancing(t: Test, mesh: Mesh, exactRoundRobin: boolean): Promise<void> {
  await t.test('scenario 1: curl from web resolves through shoal DNS and is balanced over the api pods', async (t) => {
    const pods = mesh.api.map((a) => a.name);
    const dig = await mesh.cluster.exec(mesh.web, 'getent', ['ahosts', 'api']);
    const address = /^(127\.\d+\.\d+\.\d+)\s+STREAM/m.exec(dig.stdout)?.[1];
    t.ok(
      address && address !== '127.0.0.1',
      `getent ahosts api (glibc, resolv.conf -> 127.0.0.1:53) gives the dependency's own loopback address: ${address}`,
    );
    const n = exactRoundRobin ? 30 : 60;
    for (const name of ['api', 'api.default.svc.cluster.local']) {
      const url = `http://${name}:${API_PORT}/`;
      const started = performance.now();
      const r = await mesh.curl(mesh.web, ['-w', ' %{http_code} %{remote_ip}\\n', ...Array(n).fill(url)], 30_000);
      const ms = performance.now() - started;
      const lines = r.stdout
        .trim()
        .split('\n')
        .filter((l) => l !== '');
      t.equal(r.code, 0, `curl ${url} x${n} exits 0 ${r.stderr}`);
      t.equal(lines.length, n, `${n} answers to curl ${url}`);
      t.ok(
        lines.every((l) => / 200 /.test(l)),
        'every answer is 200',
      );
      t.same(Object.keys(tally(lines.map((l) => l.split(' ')[2]))), [address], `curl connected to ${address}, the address shoal DNS gave`);
      const byPod = tally(lines.map((l) => l.split(' ')[0]));
      assertBalanced(t, byPod, pods, exactRoundRobin, `curl ${url}`);
      t.comment(`scenario 1: curl ${url} x${n}: ${shares(byPod)}; ${(ms / n).toFixed(1)} ms per request (one curl process, keep-alive)`);
    }

    const node = await mesh.runClient('load', { url: `http://api:${API_PORT}/`, rps: 100, durationMs: 2000 });
    t.equal(node.failed, 0, `the Node client (dns.lookup via glibc) sent ${node.sent} requests to http://api:8080/ without a failure`);
    assertBalanced(t, node.byPod, pods, false, 'Node client at 100 rps');
    t.comment(
      `scenario 1: Node client 100 rps x 2 s: ${node.ok}/${node.sent} ok, ${shares(node.byPod)}, p50 ${node.latencyMs.p50} ms p99 ${node.latencyMs.p99} ms`,
    );

    const cache = await mesh.runClient('tcp', { host: 'cache', port: 6379, count: 20 });
    t.equal(cache.failed, 0, 'the Node client connected to cache:6379 (L4) 20 times without a failure');
    t.same(Object.keys(cache.byPod).sort(), ['cache-1', 'cache-2'], `L4 connections spread over both cache pods (${shares(cache.byPod)})`);

    const before = metricValue(await mesh.metrics(mesh.web), 'shoal_dns_queries_total', { result: 'forwarded' });
    const outside = await mesh.cluster.exec(mesh.web, 'getent', ['ahosts', OUTSIDE_NAME]);
    t.match(
      outside.stdout,
      new RegExp(`^${mesh.dnsup.ip.replace(/\./g, '\\.')}\\s+STREAM`, 'm'),
      `${OUTSIDE_NAME}, a name outside the mesh, resolves to ${mesh.dnsup.ip} through the upstream dnsmasq`,
    );
    const body = await mesh.curl(mesh.web, ['-m', '5', `http://${OUTSIDE_NAME}:${OUTSIDE_PORT}/`]);
    t.equal(body.stdout, 'outside', `curl http://${OUTSIDE_NAME}:${OUTSIDE_PORT}/ reaches the server outside the mesh`);
    const after = metricValue(await mesh.metrics(mesh.web), 'shoal_dns_queries_total', { result: 'forwarded' });
    t.ok(after > before, `web's DNS responder forwarded the name upstream (forwarded queries ${before} -> ${after})`);
    const local = metricValue(await mesh.metrics(mesh.web), 'shoal_dns_queries_total', { result: 'local' });
    t.comment(`scenario 1: web's DNS answered ${local} queries locally and forwarded ${after}`);
  });
}

/** Scenario 2: every api pod replaced one by one under 200 rps; zero failed requests. */
export async function scenarioRollingUpdate(t: Test, mesh: Mesh): Promise<void> {
  await t.test('scenario 2: rolling update of the api pods under 200 rps: zero failed requests', async (t) => {
    const old = mesh.api.map((a) => a.name);
    const load = await mesh.startClient('load', { url: `http://api:${API_PORT}/`, rps: 200, timeoutMs: 10_000 });
    const steps: string[] = [];
    let doneAt = Infinity;
    const started = Date.now();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      for (const name of old) {
        const stepStart = Date.now();
        const fresh = await mesh.addApiPod();
        const exit = await mesh.retireApiPod(name);
        t.equal(exit, 0, `${name}'s sidecar drained and exited 0 on SIGTERM`);
        steps.push(`${name} -> ${fresh.name} ${Date.now() - stepStart} ms`);
      }
      doneAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 2000));
    } finally {
      const r = await load.stop();
      const fresh = mesh.api.map((a) => a.name);
      if (r.failed > 0)
        t.comment(
          `per second (sent/failed/slowest ms): ${r.timeline.map((s) => `${s.second}:${s.sent}/${s.failed}/${s.maxMs}`).join(' ')}`,
        );
      t.equal(r.failed, 0, `zero failed requests out of ${r.sent} (${JSON.stringify(r.failures.slice(0, 5))})`);
      t.ok(
        r.sent >= 200 * ((r.endedAt - r.startedAt) / 1000) * 0.8,
        `the client kept about 200 rps (${(r.sent / ((r.endedAt - r.startedAt) / 1000)).toFixed(0)} rps)`,
      );
      // Requests started after the last old pod was gone: answered by the new pods only.
      const tail: Record<string, number> = {};
      for (const sec of r.timeline.filter((x) => r.startedAt + x.second * 1000 >= doneAt))
        for (const [k, v] of Object.entries(sec.byPod)) tail[k] = (tail[k] ?? 0) + v;
      t.same(Object.keys(tail).sort(), fresh.sort(), `after the update, the new pods only answer (${shares(tail)})`);
      t.comment(
        `scenario 2: ${old.length} pods replaced in ${((Date.now() - started) / 1000).toFixed(1)} s (${steps.join('; ')}); ${r.sent} requests, ${r.failed} failed; p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms; by pod: ${shares(r.byPod)}`,
      );
    }
  });
}
