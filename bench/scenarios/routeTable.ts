// route-table: the cost of Gateway API route matching on the L7 fast path. One sidecar process, two
// outbound listeners to the same backend: "plain" with the one mesh-config route every listener has,
// "routed" with 20 Gateway API rules (exact, prefix, header, header regex, path regex, method) where the
// request only matches the last. wrk (keep-alive GET with the header the last rule wants) against each,
// interleaved; the figure is routed rps / plain rps (target: at most 5% fewer), with the sidecar's CPU time
// per request beside it (steadier than rps when other work shares the machine).
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Route, Snapshot } from '../../shared/snapshot.ts';
import { atLeast, clientCpus, errorShare, interleave, profileArgs, proxyCpu, ratio, type ScenarioContext } from '../lib/context.ts';
import { DEPLOYED_NODE_FLAGS, root, startBackend } from '../lib/httpPeers.ts';
import { cpuSeconds, freePort, pinned, ProcessGroup, waitHttp } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { CURVE_PERCENTILES, figure, median } from '../lib/stats.ts';

const run = promisify(execFile);

/** The request both listeners get: GET /index.html with x-tenant: bench (the backend serves /index.html). */
const TARGET = '/index.html';
const HEADER = ['x-tenant', 'bench'] as const;

/** 20 rules, the request matching only the last: each kind of match is tried (and fails) on the way. */
export function twentyRules(cluster: string): Route[] {
  const r = (extra: Partial<Route>): Route => ({
    domains: ['*'],
    prefix: '/',
    headers: [],
    backends: [{ cluster, weight: 1 }],
    source: 'HTTPRoute bench/routes',
    ...extra,
  });
  const rules: Route[] = [];
  for (let i = 1; i <= 4; i++) rules.push(r({ path: { type: 'Exact', value: `/exact/${i}` } }));
  for (let i = 5; i <= 8; i++) rules.push(r({ path: { type: 'PathPrefix', value: `/prefix${i}` } }));
  for (let i = 9; i <= 12; i++)
    rules.push(r({ path: { type: 'PathPrefix', value: '/' }, headers: [{ name: 'x-tenant', value: `tenant-${i}` }] }));
  for (let i = 13; i <= 16; i++) rules.push(r({ path: { type: 'RegularExpression', value: `/r${i}/[0-9]+` } }));
  rules.push(
    r({ path: { type: 'PathPrefix', value: '/' }, headers: [{ name: 'x-user', value: 'admin-[a-z]+', type: 'RegularExpression' }] }),
  );
  rules.push(r({ path: { type: 'PathPrefix', value: '/' }, headers: [{ name: 'x-tenant', value: 'b[0-9]+', type: 'RegularExpression' }] }));
  rules.push(r({ path: { type: 'PathPrefix', value: '/index.html' }, method: 'POST' }));
  rules.push(
    r({
      path: { type: 'RegularExpression', value: '/index\\.(html|htm)' },
      headers: [{ name: HEADER[0], value: HEADER[1] }],
      method: 'GET',
    }),
  );
  return rules;
}

let luaFile = '';
function wrkLua(): string {
  if (luaFile) return luaFile;
  luaFile = join(mkdtempSync(join(tmpdir(), 'shoal-bench-routes-')), 'routes.lua');
  writeFileSync(
    luaFile,
    `wrk.headers["${HEADER[0]}"] = "${HEADER[1]}"
done = function(summary, latency, requests)
  io.write("WRKJSON {")
  for _, p in ipairs({${CURVE_PERCENTILES.join(', ')}}) do
    io.write(string.format('"p%s":%d,', tostring(p), latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format('"max":%d,"requests":%d,"durationUs":%d,"socketErrors":%d,"non2xx":%d}\\n',
    latency.max, summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status))
end
`,
  );
  return luaFile;
}

async function wrkWithHeader(
  url: string,
  seconds: number,
  connections: number,
  cpus: string | undefined,
  maxErrorShare: number,
): Promise<{ rps: number; requests: number; latencyMs: Record<string, number> }> {
  const [cmd, args] = pinned(cpus, 'wrk', ['-c', String(connections), '-t', '2', '-d', `${seconds}s`, '-s', wrkLua(), url]);
  const { stdout } = await run(cmd, args, { maxBuffer: 1 << 20 });
  const m = /WRKJSON (\{.*\})/.exec(stdout);
  if (!m) throw new Error(`wrk ${url}: no summary in its output: ${stdout.slice(0, 300)}`);
  const j = JSON.parse(m[1]) as Record<string, number>;
  if (j.requests === 0) throw new Error(`wrk ${url}: no request completed`);
  if (j.non2xx > maxErrorShare * j.requests || j.socketErrors > maxErrorShare * j.requests)
    throw new Error(`wrk ${url}: ${j.non2xx} non-2xx and ${j.socketErrors} socket errors in ${j.requests} requests`);
  const latencyMs: Record<string, number> = {};
  for (const p of CURVE_PERCENTILES) latencyMs[String(p)] = j[`p${p}`] / 1000;
  return { rps: j.requests / (j.durationUs / 1e6), requests: j.requests, latencyMs };
}

/** discover (built) writes the snapshot; a stand-in serves it with the routed listener's 20 rules. */
async function routedSnapshot(
  dir: string,
  backendPort: number,
  plain: { address: string; port: number },
  routed: { address: string; port: number },
): Promise<{ snapshot: Snapshot; close: () => Promise<void> }> {
  const { startDiscover } = (await import(join(root, 'dist', 'discover', 'main.js'))) as typeof import('../../discover/main.ts');
  const { createLogger } = (await import(join(root, 'dist', 'shared', 'log.js'))) as typeof import('../../shared/log.ts');
  const { snapshotError, snapshotVersion } = (await import(
    join(root, 'dist', 'shared', 'snapshot.js')
  )) as typeof import('../../shared/snapshot.ts');
  const topology = join(dir, 'routes-topology.yaml');
  writeFileSync(
    topology,
    `services:
  - { name: plain, address: ${plain.address}, ports: [{ port: ${plain.port}, protocol: http }], endpoints: ["127.0.0.1:${backendPort}"] }
  - { name: routed, address: ${routed.address}, ports: [{ port: ${routed.port}, protocol: http }], endpoints: ["127.0.0.1:${backendPort}"] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: plain, port: ${plain.port}, protocol: http }
        - { depend_service_alias: routed, port: ${routed.port}, protocol: http }
`,
  );
  const discover = await startDiscover({ staticFile: topology, host: '127.0.0.1', port: 0, log: createLogger('discover', 'warn') });
  try {
    const res = await fetch(`${discover.url}/v2/snapshot/default/web`);
    const snapshot = (await res.json()) as Snapshot;
    const l = snapshot.outbound.find((x) => x.address === routed.address && x.port === routed.port);
    if (!l) throw new Error('discover wrote no listener for the routed service');
    l.routes = twentyRules(l.routes[0].backends[0].cluster);
    snapshot.version = snapshotVersion(snapshot);
    const err = snapshotError(snapshot);
    if (err !== null) throw new Error(err);
    return { snapshot, close: () => discover.close() };
  } catch (err) {
    await discover.close();
    throw err;
  }
}

export async function runRouteTable(ctx: ScenarioContext): Promise<ScenarioResult> {
  const connections = 50;
  const group = new ProcessGroup();
  const errors: string[] = [];
  const rps: Record<string, number[]> = { plain: [], routed: [] };
  // The sidecar's CPU time per request: steadier than rps on a machine other work shares.
  const cpuUs: Record<string, number[]> = { plain: [], routed: [] };
  let pid = 0;
  const curves: Record<string, Record<string, number>[]> = { plain: [], routed: [] };
  const cpu = proxyCpu(ctx);
  const plain = { address: '127.77.1.1', port: await freePort() };
  const routed = { address: '127.77.1.2', port: await freePort() };
  let stub: Server | null = null;
  let closeDiscover = async () => {};
  try {
    const dir = mkdtempSync(join(ctx.dir, 'route-table-'));
    // ctx.dir, as the other scenarios: nginx (as nobody) must be able to read the file it serves.
    const backendPort = await startBackend(group, ctx.dir);
    const { snapshot, close } = await routedSnapshot(dir, backendPort, plain, routed);
    closeDiscover = close;
    const body = JSON.stringify(snapshot);
    // Serves the snapshot; a long poll for the same version is held until the sidecar gives up on it.
    stub = createServer((req, res) => {
      if (req.url?.includes(`version=${snapshot.version}`)) {
        setTimeout(() => {
          res.writeHead(304);
          res.end();
        }, 20_000).unref();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    await new Promise<void>((resolve) => stub!.listen(0, '127.0.0.1', resolve));
    const stubPort = (stub.address() as AddressInfo).port;
    const { info } = await group.jsonChild(
      ...pinned(cpu, process.execPath, [
        ...DEPLOYED_NODE_FLAGS,
        ...profileArgs(ctx, 'sidecar'),
        join(root, 'bench', 'lib', 'proxySidecarChild.mjs'),
        JSON.stringify({
          discoverUrl: `http://127.0.0.1:${stubPort}/v2/snapshot/default/web`,
          adminHost: '127.0.0.1',
          adminPort: 0,
          inboundAddress: '127.0.0.1',
          stateFile: join(dir, 'state.json'),
          drainTimeoutMs: 1000,
        }),
      ]),
    );
    pid = info.pid;
    const urls: Record<string, string> = {
      plain: `http://${plain.address}:${plain.port}${TARGET}`,
      routed: `http://${routed.address}:${routed.port}${TARGET}`,
    };
    await waitHttp(urls.plain);
    // Without the header the last rule wants the routed listener answers 404 no-route: wait for a 200 with it.
    for (let i = 0; ; i++) {
      const res = await fetch(urls.routed, { headers: { [HEADER[0]]: HEADER[1] } }).catch(() => null);
      await res?.arrayBuffer();
      if (res?.status === 200) break;
      if (i >= 100) throw new Error(`${urls.routed} did not come up (status ${res?.status ?? 'none'})`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const clients = clientCpus(ctx);
    if (!ctx.smoke) for (const k of ['plain', 'routed']) await wrkWithHeader(urls[k], 1, connections, clients, 1).catch(() => undefined);
    await interleave(
      ['plain', 'routed'],
      ctx.rounds,
      async (key, round) => {
        try {
          const cpu0 = cpuSeconds(pid);
          const r = await wrkWithHeader(urls[key], ctx.duration, connections, clients, errorShare(ctx));
          const us = ((cpuSeconds(pid) - cpu0) * 1e6) / r.requests;
          rps[key].push(r.rps);
          cpuUs[key].push(us);
          curves[key].push(r.latencyMs);
          ctx.log(
            `route-table round ${round + 1} ${key}: ${Math.round(r.rps)} rps, ${us.toFixed(1)} µs sidecar CPU per request, p99 ${r.latencyMs['99']} ms`,
          );
        } catch (err) {
          errors.push(`${key}: ${(err as Error).message}`);
        }
      },
      ctx.smoke,
    );
  } catch (err) {
    errors.push((err as Error).message);
  } finally {
    await group.stop();
    stub?.closeAllConnections();
    stub?.close();
    await closeDiscover();
  }
  const med = (k: string) => (rps[k].length ? median(rps[k]) : undefined);
  const rows: Row[] = (['plain', 'routed'] as const).map((k): Row => {
    if (!rps[k].length) return { contender: k, label: k, figures: {}, ratios: {}, error: 'failed' };
    return {
      contender: k,
      label: k === 'plain' ? 'shoal L7, 1 route' : 'shoal L7, 20 Gateway API rules (last matches)',
      figures: {
        rps: figure(rps[k], 0),
        cpuUs: figure(cpuUs[k], 1),
        p50: figure(
          curves[k].map((x) => x['50']),
          3,
        ),
        p99: figure(
          curves[k].map((x) => x['99']),
          3,
        ),
      },
      ratios: {
        vsPlain: ratio(med(k), med('plain')),
        cpuVsPlain: ratio(cpuUs[k].length ? median(cpuUs[k]) : undefined, cpuUs.plain.length ? median(cpuUs.plain) : undefined),
      },
    };
  });
  return {
    scenario: 'route-table',
    title: 'route-table: Gateway API route matching cost on the L7 fast path',
    method: `One sidecar process${cpu ? ` pinned to CPU ${cpu}` : ''} with two outbound L7 listeners to the same nginx backend: "plain" has the single mesh-config route; "routed" has 20 Gateway API rules (4 Exact paths, 4 PathPrefix, 4 header matches, 4 path regexes, 2 header regexes, a method match) and the request (GET ${TARGET}, ${HEADER[0]}: ${HEADER[1]}) matches only the 20th (path regex + header + method). wrk -t2 -c${connections} for ${ctx.duration} s per listener, ${ctx.rounds} rounds interleaved. Sidecar CPU per request: the process's user+system CPU time over a round (/proc) divided by the requests wrk completed in it.`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: { connections, duration: ctx.duration, rounds: ctx.rounds, pinnedCpu: cpu ?? null, rules: 20 },
    columns: [
      { key: 'rps', label: 'rps', unit: '', kind: 'figure' },
      { key: 'vsPlain', label: '× 1 route', unit: '', kind: 'ratio' },
      { key: 'cpuUs', label: 'sidecar CPU per request', unit: 'µs', kind: 'figure' },
      { key: 'cpuVsPlain', label: 'CPU × 1 route', unit: '', kind: 'ratio' },
      { key: 'p50', label: 'p50', unit: 'ms', kind: 'figure' },
      { key: 'p99', label: 'p99', unit: 'ms', kind: 'figure' },
    ],
    rows,
    bars: [{ title: 'Requests per second (higher is better)', figure: 'rps', unit: 'rps' }],
    targets: [atLeast('20-rule route table rps vs 1 route', 0.95, ratio(med('routed'), med('plain')), '1 route')],
    notes: [],
    errors,
    raw: { rps, cpuUs, curves },
  };
}
