// What mutual TLS between sidecars costs, in one run: the same two-hop path (client -> web's sidecar
// -> api's sidecar inbound -> app) with plaintext and with mTLS (certificates from the mesh CA), and
// nginx doing the same two hops in plaintext and with mTLS upstream (proxy_ssl_certificate, session
// reuse, upstream keep-alive) as a peer. Max rps with keep-alive (wrk, closed loop) and latency at a
// fixed rate (open loop, coordinated omission corrected); rounds interleaved so drift hits all alike.
//
//   npm run build && npx node bench/mtls.ts [--seconds 10] [--rounds 3] [--rate 1000] [--connections 50] [--profile DIR]
// --profile DIR: the sidecars run under node --cpu-prof (summarize with bench/cpuProfileSummary.ts).
//
// Runs the sidecars from dist/ (built JavaScript), as in a pod.
import { existsSync, mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { root, startBackend, startNginx } from './lib/httpPeers.ts';
import { paced, wrk } from './lib/loadClients.ts';
import { cpuSeconds, freePort, pinned, ProcessGroup, waitHttp } from './lib/processes.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '50' },
    profile: { type: 'string', default: '' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const RATE = Number(values.rate);
const CONNECTIONS = Number(values.connections);

if (!existsSync(join(root, 'dist', 'proxy', 'main.js'))) throw new Error('bench/mtls.ts runs the built sidecar: npm run build first');
const dist = (p: string) => join(root, 'dist', p);
const { startDiscover } = (await import(dist('discover/main.js'))) as typeof import('../discover/main.ts');
const { CertificateAuthority } = (await import(
  dist('discover/identity/certificateAuthority.js')
)) as typeof import('../discover/identity/certificateAuthority.ts');
const { createCsr } = (await import(dist('proxy/tls/csr.js'))) as typeof import('../proxy/tls/csr.ts');
const { createLogger } = (await import(dist('shared/log.js'))) as typeof import('../shared/log.ts');

const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-mtls-'));
chmodSync(dir, 0o755);
const group = new ProcessGroup();
const log = createLogger('bench', 'warn');
const closers: Array<() => Promise<void>> = [];

async function main(): Promise<void> {
  const backendPort = await startBackend(group, dir);
  await waitHttp(`http://127.0.0.1:${backendPort}/`);
  const { ca } = await CertificateAuthority.generate('bench.local');
  const tokens = join(dir, 'tokens.yaml');
  writeFileSync(
    tokens,
    'tokens:\n  - { token: api-token, namespace: default, serviceAccount: api }\n  - { token: web-token, namespace: default, serviceAccount: web }\n',
  );
  for (const app of ['api', 'web']) writeFileSync(join(dir, `${app}.token`), `${app}-token\n`);

  // Two sidecar pairs, identical but for identity: plaintext (no CA) and mTLS (strict).
  const pair = async (name: string, mtls: boolean, listenPort: number) => {
    const svcPort = await freePort();
    const webAddr = mtls ? '127.91.0.2' : '127.90.0.2';
    const apiInbound = mtls ? '127.91.0.3' : '127.90.0.3';
    const topology = join(dir, `${name}.yaml`);
    writeFileSync(
      topology,
      `services:
  - { name: api, address: ${webAddr}, ports: [{ port: ${svcPort}, protocol: http }], endpoints: ["${apiInbound}:${listenPort}"] }
apps:
  - name: api
    config:
      base_ports: [{ port: ${backendPort}, listen_port: ${listenPort}, protocol: http }]
      base_normal: { options: { MTLS_MODE: STRICT } }
  - name: web
    config:
      base_services: [{ depend_service_alias: api, port: ${svcPort}, protocol: http }]
`,
    );
    const d = await startDiscover({
      staticFile: topology,
      host: '127.0.0.1',
      port: 0,
      log,
      identity: mtls ? { trustDomain: 'bench.local', ca, tokensFile: tokens, certTtlMs: 86_400_000 } : undefined,
    });
    closers.push(() => d.close());
    const pids: number[] = [];
    for (const [app, inbound] of [
      ['api', apiInbound],
      ['web', '127.0.0.1'],
    ] as const) {
      const prof = values.profile ? ['--cpu-prof', '--cpu-prof-dir', join(values.profile, `${name}-${app}`)] : [];
      const { info } = await group.jsonChild(
        ...pinned(undefined, process.execPath, [
          ...prof,
          join(root, 'bench', 'lib', 'proxySidecarChild.mjs'),
          JSON.stringify({
            discoverUrl: `${d.url}/v1/resources/default/${app}/mesh`,
            adminHost: '127.0.0.1',
            adminPort: 0,
            inboundAddress: inbound,
            stateFile: join(dir, `${name}-${app}.state.json`),
            drainTimeoutMs: 1000,
            tokenFile: join(dir, `${app}.token`),
          }),
        ]),
      );
      pids.push(info.pid);
    }
    const url = `http://${webAddr}:${svcPort}/`;
    await waitHttp(url);
    sidecarPids.set(url, pids);
    return url;
  };
  // CPU seconds both sidecars of a pair spend per request: far steadier than rps on a shared machine.
  const sidecarPids = new Map<string, number[]>();
  const plainUrl = await pair('plain', false, 65390);
  const mtlsUrl = await pair('mtls', true, 65391);

  // nginx: a front proxy and an inbound proxy, plaintext and mTLS between them.
  const cert = async (sa: string) => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = await ca.sign(
      createCsr(privateKey, publicKey, `spiffe://bench.local/ns/default/sa/${sa}`),
      { namespace: 'default', serviceAccount: sa },
      86_400_000,
    );
    const keyFile = join(dir, `${sa}.key`);
    const certFile = join(dir, `${sa}.crt`);
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o644 });
    writeFileSync(certFile, issued.certificate, { mode: 0o644 });
    return { keyFile, certFile };
  };
  const caFile = join(dir, 'bundle.pem');
  writeFileSync(caFile, ca.trustBundle.join(''), { mode: 0o644 });
  const front = await cert('nginx-web');
  const back = await cert('nginx-api');
  const nginxPlainIn = await freePort();
  const nginxPlainFront = await freePort();
  const nginxTlsIn = await freePort();
  const nginxTlsFront = await freePort();
  startNginx(
    group,
    dir,
    'nginx',
    1,
    `  upstream app { server 127.0.0.1:${backendPort}; keepalive 64; }
  upstream plain_in { server 127.0.0.1:${nginxPlainIn}; keepalive 64; }
  upstream tls_in { server 127.0.0.1:${nginxTlsIn}; keepalive 64; }
  server { listen 127.0.0.1:${nginxPlainIn}; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:${nginxPlainFront}; location / { proxy_pass http://plain_in; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server {
    listen 127.0.0.1:${nginxTlsIn} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate ${back.certFile};
    ssl_certificate_key ${back.keyFile};
    ssl_client_certificate ${caFile};
    ssl_verify_client on;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${nginxTlsFront};
    location / {
      proxy_pass https://tls_in; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate ${front.certFile};
      proxy_ssl_certificate_key ${front.keyFile};
      proxy_ssl_trusted_certificate ${caFile};
      # nginx can verify a peer only by DNS name or CN; mesh certificates carry a URI SAN only. So
      # the front does not check api's certificate here (the inbound side still checks the client's).
      proxy_ssl_verify off;
      proxy_ssl_session_reuse on;
    }
  }`,
  );
  const nginxPlainUrl = `http://127.0.0.1:${nginxPlainFront}/`;
  const nginxTlsUrl = `http://127.0.0.1:${nginxTlsFront}/`;
  await waitHttp(nginxPlainUrl);
  let nginxTls = true;
  try {
    await waitHttp(nginxTlsUrl, 20);
  } catch {
    nginxTls = false;
  }

  const contenders: Array<[string, string]> = [
    ['shoal plaintext', plainUrl],
    ['shoal mTLS', mtlsUrl],
    ['nginx plaintext', nginxPlainUrl],
  ];
  if (nginxTls) contenders.push(['nginx mTLS', nginxTlsUrl]);
  else console.log(`nginx mTLS: not measured (see ${join(dir, 'nginx', 'error.log')})`);
  const rps: Record<string, number[]> = {};
  const p50: Record<string, number[]> = {};
  const p99: Record<string, number[]> = {};
  const cpuUs: Record<string, number[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, url] of contenders) {
      // A failed measurement (e.g. wrk timeouts on an overloaded machine) is reported, not fatal.
      let line = `round ${round + 1} ${name}:`;
      try {
        const pids = sidecarPids.get(url) ?? [];
        const cpu0 = pids.reduce((a, pid) => a + cpuSeconds(pid), 0);
        const w = await wrk(url, SECONDS, CONNECTIONS);
        (rps[name] ??= []).push(w.rps);
        line += ` ${w.rps.toFixed(0)} rps max (p99 ${w.latencyMs['99'].toFixed(2)} ms);`;
        if (pids.length > 0) {
          const us = ((pids.reduce((a, pid) => a + cpuSeconds(pid), 0) - cpu0) / w.requests) * 1e6;
          (cpuUs[name] ??= []).push(us);
          line += ` sidecars' CPU ${us.toFixed(0)} us/request;`;
        }
      } catch (err) {
        line += ` max rps failed: ${(err as Error).message};`;
      }
      try {
        const p = await paced(url, RATE, SECONDS);
        (p50[name] ??= []).push(p.latencyMs['50']);
        (p99[name] ??= []).push(p.latencyMs['99']);
        line += ` at ${RATE} rps p50 ${p.latencyMs['50'].toFixed(2)} ms p99 ${p.latencyMs['99'].toFixed(2)} ms`;
      } catch (err) {
        line += ` paced failed: ${(err as Error).message}`;
      }
      console.log(line);
    }
  }
  const med = (xs: number[] | undefined) => (xs && xs.length > 0 ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : NaN);
  console.log(`\nmedians of ${ROUNDS} rounds, ${SECONDS} s each, wrk -c ${CONNECTIONS} -t 2 (keep-alive), paced at ${RATE} rps:`);
  console.log('| path | max rps | p50 at rate (ms) | p99 at rate (ms) |');
  console.log('|---|---|---|---|');
  for (const [name] of contenders)
    console.log(`| ${name} | ${med(rps[name]).toFixed(0)} | ${med(p50[name]).toFixed(2)} | ${med(p99[name]).toFixed(2)} |`);
  const cpuCost = med(cpuUs['shoal mTLS']) / med(cpuUs['shoal plaintext']) - 1;
  console.log(
    `\nshoal sidecars' CPU per request (both hops): plaintext ${med(cpuUs['shoal plaintext']).toFixed(0)} us, mTLS ${med(cpuUs['shoal mTLS']).toFixed(0)} us (+${(cpuCost * 100).toFixed(1)}%): CPU-bound, that is ${((1 - 1 / (1 + cpuCost)) * 100).toFixed(1)}% fewer rps`,
  );
  const cost = 1 - med(rps['shoal mTLS']) / med(rps['shoal plaintext']);
  console.log(
    `\nshoal: mTLS costs ${(cost * 100).toFixed(1)}% of plaintext rps (target <= 25%); adds ${(med(p99['shoal mTLS']) - med(p99['shoal plaintext'])).toFixed(2)} ms p99 at ${RATE} rps`,
  );
  if (nginxTls) {
    const ncost = 1 - med(rps['nginx mTLS']) / med(rps['nginx plaintext']);
    console.log(
      `nginx: mTLS costs ${(ncost * 100).toFixed(1)}% of plaintext rps; adds ${(med(p99['nginx mTLS']) - med(p99['nginx plaintext'])).toFixed(2)} ms p99`,
    );
  }
}

try {
  await main();
} finally {
  await group.stop();
  for (const c of closers) await c();
}
