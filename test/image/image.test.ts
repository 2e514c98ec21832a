// The image users install, built from the Dockerfile with podman and run for real: the CLI answers, the
// sidecar runs as 65532:65532 under tini (PID 1) on a read-only root filesystem with only /var/lib/shoal
// writable (its state file lands there), drains on SIGTERM with 200 requests/s going through it without
// refusing any until it stops accepting, and the image holds only what a user needs.
// Everything runs in one podman pod with no network but its loopback: discover (static topology), a
// backend, the sidecar and a load client share it, as containers of one Kubernetes pod would.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { imageForFile, podman, podmanOk, removeByPrefix } from '../lib/image.ts';
import { imageContents, mb, CONTENT_DIRS } from '../../scripts/image.ts';

t.setTimeout(600_000);
const image = imageForFile(t, import.meta.filename);

const API_PORT = 8080;
const BACKEND_PORT = 9001;
const DRAIN_TIMEOUT_S = 10;
const RATE = 200;

// A backend that answers after ?ms= milliseconds (default 0).
const BACKEND = `require('node:http').createServer((q,s)=>{const ms=Number(new URL(q.url,'http://x').searchParams.get('ms')||0);setTimeout(()=>s.end('api'),ms)}).listen(${BACKEND_PORT},'127.0.0.1',()=>console.log('listening'))`;

// Sends RATE requests a second to URL until SIGUSR1, then waits for the ones in flight and prints one
// JSON line: when each request was sent (ms) and how it ended ('ok' for 200 "api", else the status or
// the error code).
const LOAD = `
const http=require('node:http');const url=process.argv[1];const rate=Number(process.argv[2]);
const agent=new http.Agent({keepAlive:true,maxSockets:1000});
let sent=0,ok=0,stopped=false,inflight=0;const reqs=[];
const one=()=>{sent++;inflight++;const r=[Date.now(),''];reqs.push(r);
 http.get(url,{agent},(res)=>{let b='';res.setEncoding('utf8');res.on('data',(d)=>b+=d);res.on('end',()=>{inflight--;if(res.statusCode===200&&b==='api'){ok++;r[1]='ok'}else r[1]='status '+res.statusCode+' '+b.slice(0,40);done()})})
 .on('error',(e)=>{inflight--;r[1]=e.code||e.message;done()})};
const t0=Date.now();const tick=setInterval(()=>{const due=Math.floor((Date.now()-t0)*rate/1000);while(sent<due)one()},5);
process.on('SIGUSR1',()=>{stopped=true;clearInterval(tick);console.log('stopped '+JSON.stringify({sent,inflight,at:Date.now()}));done()});
function done(){if(stopped&&inflight===0){console.log('result '+JSON.stringify({sent,ok,reqs}));process.exit(0)}}
setInterval(()=>console.log('progress '+JSON.stringify({sent,ok,inflight})),1000);
`;

interface Pod {
  name: string;
  dir: string;
}

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(250);
  }
}

/** Runs JS with node inside CONTAINER (as the image's user) and returns its stdout. */
async function nodeIn(container: string, js: string, ...args: string[]): Promise<string> {
  return podmanOk(['exec', container, 'node', '-e', js, ...args]);
}

/** A pod with loopback only, discover serving a topology where web depends on api (backend on 127.0.0.1:9001). */
async function startPod(t: Test, ref: string, tag: string): Promise<Pod> {
  const name = `shoal-img-${tag}-${process.pid}`;
  await removeByPrefix(name);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-image-'));
  t.teardown(async () => {
    await removeByPrefix(name);
    rmSync(dir, { recursive: true, force: true });
  });
  const topology = {
    services: [{ name: 'api', ports: [{ port: API_PORT, protocol: 'http' }], endpoints: [`127.0.0.1:${BACKEND_PORT}`] }],
    apps: [
      { name: 'web', pluginId: 'mesh', config: { base_services: [{ depend_service_alias: 'api', port: API_PORT, protocol: 'http' }] } },
    ],
  };
  writeFileSync(join(dir, 'topology.yaml'), JSON.stringify(topology));
  await podmanOk(['pod', 'create', '--name', name, '--network', 'none', '--sysctl', 'net.ipv4.ip_unprivileged_port_start=53']);
  await podmanOk([
    'run',
    '-d',
    '--pod',
    name,
    '--name',
    `${name}-discover`,
    '-v',
    `${dir}/topology.yaml:/etc/shoal/topology.yaml:ro,Z`,
    ref,
    'discover',
    '--static',
    '/etc/shoal/topology.yaml',
  ]);
  await podmanOk(['run', '-d', '--pod', name, '--name', `${name}-api`, '--entrypoint', 'node', ref, '-e', BACKEND]);
  return { name, dir };
}

/** The sidecar of app web in POD: read-only root, only a volume on /var/lib/shoal writable. */
async function startSidecar(pod: Pod, ref: string): Promise<string> {
  const name = `${pod.name}-sidecar`;
  await podmanOk(['volume', 'create', `${pod.name}-state`]);
  await podmanOk([
    'run',
    '-d',
    '--pod',
    pod.name,
    '--name',
    name,
    '--read-only',
    '--read-only-tmpfs=false',
    '-v',
    `${pod.name}-state:/var/lib/shoal`,
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    '-e',
    `DISCOVER_URL=http://127.0.0.1:6100/v1/resources/default/web/mesh`,
    '-e',
    'SHOAL_STATE_FILE=/var/lib/shoal/snapshot.json',
    '-e',
    `SHOAL_DRAIN_TIMEOUT=${DRAIN_TIMEOUT_S}`,
    ref,
    'proxy',
  ]);
  await waitFor('the sidecar to be ready', async () => {
    const r = await podman([
      'exec',
      name,
      'node',
      '-e',
      'fetch("http://127.0.0.1:65533/ready").then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))',
    ]);
    return r.code === 0 ? true : null;
  });
  return name;
}

if (image) {
  t.test('shoal --help runs in the image (its default command)', async (t) => {
    const ref = await image.ready();
    if (image.build) t.comment(`image ${ref}: build or cache check ${image.build.seconds.toFixed(1)} s, ${mb(image.build.sizeBytes)}`);
    const r = await podman(['run', '--rm', '--network', 'none', ref]);
    t.equal(r.code, 0, `exit 0 (${r.stderr.trim().slice(0, 200)})`);
    const out = r.stdout + r.stderr;
    for (const command of ['discover', 'proxy', 'dns', 'get']) t.match(out, new RegExp(`\\b${command}\\b`), `the help names ${command}`);
    const config = JSON.parse(await podmanOk(['image', 'inspect', ref]))[0].Config;
    t.equal(config.User, '65532:65532', 'the image runs as 65532:65532');
    t.same(config.Entrypoint, ['tini', '--', 'node', '/app/dist/cli.js'], 'tini starts node');
  });

  t.test('the sidecar: 65532:65532, tini as PID 1, read-only root with only /var/lib/shoal writable', async (t) => {
    const ref = await image.ready();
    const pod = await startPod(t, ref, 'run');
    const sidecar = await startSidecar(pod, ref);

    // podman top reads the processes from the host: what the kernel says, not what the image claims.
    const top = (await podmanOk(['top', sidecar, 'pid', 'ppid', 'user', 'huser', 'hgroup', 'args']))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .map(([pid, ppid, user, huser, hgroup, ...args]) => ({ pid, ppid, user, huser, hgroup, args: args.join(' ') }));
    t.comment(`podman top: ${JSON.stringify(top)}`);
    const pid1 = top.find((p) => p.pid === '1');
    t.ok(pid1, 'a PID 1 in the container');
    t.match(pid1?.args ?? '', /^tini -- node \/app\/dist\/cli\.js proxy/, 'PID 1 is tini');
    const node = top.find((p) => p.ppid === '1' && /^node /.test(p.args));
    t.ok(node, `node is tini's child (${node?.args})`);
    // huser/hgroup: the IDs as the host's kernel has them (no user namespace here), user: the image's name for it.
    for (const p of top) {
      t.equal(p.huser, '65532', `process ${p.pid} (${p.args.split(' ')[0]}) runs as UID 65532`);
      t.equal(p.hgroup, '65532', `process ${p.pid} runs as GID 65532`);
      t.equal(p.user, 'shoal', `process ${p.pid}: UID 65532 is the image's user shoal`);
    }
    const status = await nodeIn(sidecar, 'console.log(require("node:fs").readFileSync("/proc/1/status","utf8"))');
    t.match(status, /^Uid:\s+65532\s+65532\s+65532\s+65532$/m, 'PID 1: real, effective, saved and filesystem UID 65532');
    t.match(status, /^Gid:\s+65532\s+65532\s+65532\s+65532$/m, 'PID 1: every GID 65532');
    t.match(status, /^CapEff:\s+0+$/m, 'PID 1 has no effective capability');
    const state = JSON.parse(await podmanOk(['inspect', sidecar]))[0];
    t.equal(state.HostConfig.ReadonlyRootfs, true, "the container's root filesystem is read-only");

    // Writes from inside, as the sidecar's user: only /var/lib/shoal takes them.
    const probe = `const fs=require('node:fs');const out={};for(const d of process.argv.slice(1)){try{fs.writeFileSync(d+'/.w','x');fs.unlinkSync(d+'/.w');out[d]='ok'}catch(e){out[d]=e.code}}console.log(JSON.stringify(out))`;
    const writes = JSON.parse(await nodeIn(sidecar, probe, '/', '/app', '/app/dist', '/tmp', '/var/tmp', '/run', '/etc', '/var/lib/shoal'));
    t.same(
      writes,
      {
        '/': 'EROFS',
        '/app': 'EROFS',
        '/app/dist': 'EROFS',
        '/tmp': 'EROFS',
        '/var/tmp': 'EROFS',
        '/run': 'EROFS',
        '/etc': 'EROFS',
        '/var/lib/shoal': 'ok',
      },
      `only /var/lib/shoal is writable: ${JSON.stringify(writes)}`,
    );

    // The state file: the snapshot the sidecar applied, written where the injector's volume goes.
    const file = JSON.parse(
      await waitFor('the state file', async () => {
        const r = await podman([
          'exec',
          sidecar,
          'node',
          '-e',
          'const fs=require("node:fs");const p="/var/lib/shoal/snapshot.json";const s=fs.statSync(p);console.log(JSON.stringify({uid:s.uid,gid:s.gid,mode:(s.mode&0o777).toString(8),text:fs.readFileSync(p,"utf8")}))',
        ]);
        return r.code === 0 ? r.stdout : null;
      }),
    );
    t.equal(file.uid, 65532, 'the state file belongs to 65532');
    const snapshot = JSON.parse(file.text);
    const inner = snapshot.snapshot ?? snapshot;
    t.equal(inner.app, 'web', "the state file holds web's snapshot");
    t.ok(
      inner.clusters?.some((c: { endpoints?: unknown[] }) => JSON.stringify(c).includes(`${BACKEND_PORT}`)),
      "with api's endpoint",
    );

    // And the sidecar serves: a request from the pod through it reaches the backend.
    const body = await nodeIn(
      `${pod.name}-api`,
      `fetch('http://127.0.0.1:${API_PORT}/').then(async(r)=>console.log(r.status+' '+await r.text()))`,
    );
    t.equal(body.trim(), '200 api', 'a request through the sidecar reaches api');
  });

  t.test(
    `SIGTERM (podman stop) with ${RATE} requests/s going on through it: none refused until the sidecar stops accepting, exit within the drain timeout`,
    async (t) => {
      const ref = await image.ready();
      const pod = await startPod(t, ref, 'drain');
      const sidecar = await startSidecar(pod, ref);
      // Requests take 1 s at the backend: at any moment about RATE of them are in flight in the sidecar.
      const client = `${pod.name}-load`;
      await podmanOk([
        'run',
        '-d',
        '--pod',
        pod.name,
        '--name',
        client,
        '--entrypoint',
        'node',
        ref,
        '-e',
        LOAD,
        `http://127.0.0.1:${API_PORT}/?ms=1000`,
        String(RATE),
      ]);
      await sleep(3000);
      const before = (await podmanOk(['logs', client]))
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('progress '))
        .pop();
      t.comment(`load before the signal: ${before}`);
      // The client keeps sending through the stop and past the exit, as a peer whose endpoint list
      // still holds the pod would: the sidecar must serve it rather than refuse it.
      const signalled = Date.now();
      const stop = await podman(['stop', '-t', String(DRAIN_TIMEOUT_S + 20), sidecar], { timeoutMs: 60_000 });
      const stopMs = Date.now() - signalled;
      t.equal(stop.code, 0, `podman stop succeeded (${stop.stderr.trim()})`);
      await sleep(500);
      await podmanOk(['kill', '--signal', 'USR1', client]);
      const state = JSON.parse(await podmanOk(['inspect', sidecar]))[0].State;
      const exitedAt = Date.parse(state.FinishedAt);
      const result = await waitFor(
        "the load client's result",
        async () => {
          const line = (await podmanOk(['logs', client])).split('\n').find((l) => l.startsWith('result '));
          return line ? (JSON.parse(line.slice(7)) as { sent: number; ok: number; reqs: Array<[number, string]> }) : null;
        },
        30_000,
      );
      const logs = (await podmanOk(['logs', sidecar])).split('\n').flatMap((l) => {
        try {
          return [JSON.parse(l) as { time: number; msg: string; quiet?: boolean }];
        } catch {
          return [];
        }
      });
      t.ok(
        logs.some((l) => /^draining/.test(l.msg)),
        'the sidecar logged its drain',
      );
      const stopLine = logs.find((l) => /no longer accepting/.test(l.msg));
      t.ok(stopLine, 'and when it stopped accepting');
      const stopAt = stopLine?.time ?? exitedAt;
      t.equal(stopLine?.quiet, false, 'which, under load that never stops, is at half the drain timeout');
      t.ok(
        stopAt - signalled >= DRAIN_TIMEOUT_S * 500 - 500 && stopAt - signalled < DRAIN_TIMEOUT_S * 1000,
        `it stopped accepting ${stopAt - signalled} ms after SIGTERM`,
      );
      // The stop closes the listening socket: a connection completed by the kernel but not yet taken
      // is reset, later ones are refused. 100 ms allow for the client's event loop between taking a
      // request's time and connecting.
      const beforeStop = result.reqs.filter(([at]) => at < stopAt - 100);
      const served = beforeStop.filter(([at]) => at >= signalled);
      t.ok(result.sent >= RATE * 6, `the client sent ${result.sent} requests at ${RATE}/s`);
      t.ok(served.length >= RATE * (DRAIN_TIMEOUT_S / 2 - 1), `${served.length} of them were sent between SIGTERM and the stop`);
      const failedBeforeStop = beforeStop.filter(([, r]) => r !== 'ok');
      t.same(
        failedBeforeStop.slice(0, 5),
        [],
        `every request sent before the stop answered 200 "api" (${beforeStop.length - failedBeforeStop.length}/${beforeStop.length})`,
      );
      const after = result.reqs.filter(([at]) => at >= stopAt - 100);
      const tally: Record<string, number> = {};
      for (const [at, r] of after) {
        const k = r === 'ok' ? 'ok' : `${r} ${at < exitedAt ? 'before' : 'after'} the exit`;
        tally[k] = (tally[k] ?? 0) + 1;
      }
      t.same(
        after.filter(([, r]) => r !== 'ok' && r !== 'ECONNREFUSED' && r !== 'ECONNRESET').slice(0, 5),
        [],
        'from the stop on, a request is answered, refused or reset: nothing else',
      );
      t.equal(state.ExitCode, 0, `the sidecar exited 0 (${state.Status}, OOMKilled ${state.OOMKilled})`);
      t.ok(
        exitedAt - signalled < DRAIN_TIMEOUT_S * 1000,
        `it exited ${exitedAt - signalled} ms after SIGTERM (podman stop returned after ${stopMs} ms), within the ${DRAIN_TIMEOUT_S} s drain timeout (podman stop waits ${DRAIN_TIMEOUT_S + 20} s before SIGKILL)`,
      );
      t.comment(
        `drain: ${served.length} requests sent after SIGTERM were served; the sidecar stopped accepting ${stopAt - signalled} ms after it and exited ${exitedAt - signalled} ms after it, once the requests in flight (1 s each) had finished; from the stop on: ${JSON.stringify(tally)}`,
      );
    },
  );

  t.test('the image holds what a user needs and nothing else', async (t) => {
    const ref = await image.ready();
    const listing = await imageContents(ref, [...CONTENT_DIRS, '/app/node_modules/.bin']);
    const names = (dir: string) => listing[dir].map((e) => e.path.slice(dir.length).replace(/^\//, ''));
    t.same(
      names('/app').sort(),
      ['dist', 'node_modules', 'package.json'],
      'the app folder: built JavaScript, production modules, package.json',
    );
    t.same(
      names('/app/dist').sort(),
      ['cli', 'cli.js', 'demo.js', 'discover', 'dns', 'proxy', 'shared'],
      'dist: the pieces, no tests, bench, docs or charts',
    );
    const mount = (await podmanOk(['image', 'mount', ref])).trim();
    try {
      const { existsSync, readFileSync, readdirSync, statSync } = await import('node:fs');
      // npm's record of what is installed: after npm prune --omit=dev, no package is dev-only.
      const lock = JSON.parse(readFileSync(join(mount, 'app/node_modules/.package-lock.json'), 'utf8')) as {
        packages: Record<string, { dev?: boolean }>;
      };
      const dev = Object.entries(lock.packages)
        .filter(([, p]) => p.dev === true)
        .map(([k]) => k);
      t.same(dev, [], 'no dev dependency installed');
      for (const tool of ['tap', 'typescript', 'node', 'autocannon', 'kubernetes-models', '@typescript/native-preview']) {
        t.notOk(existsSync(join(mount, 'app/node_modules', tool)), `no ${tool} (a dev tool)`);
      }
      const ours = JSON.parse(readFileSync(join(mount, 'app/package.json'), 'utf8'));
      const kept = Object.keys(ours.devDependencies ?? {}).filter((d) => lock.packages[`node_modules/${d}`]);
      if (kept.length > 0)
        t.comment(`devDependencies that are also dependencies of production packages (kept by npm prune): ${kept.join(', ')}`);
      const installed = readdirSync(join(mount, 'app/node_modules')).flatMap((n) =>
        n.startsWith('@') ? readdirSync(join(mount, 'app/node_modules', n)).map((m) => `${n}/${m}`) : n.startsWith('.') ? [] : [n],
      );
      const unknown = installed.filter((n) => !lock.packages[`node_modules/${n}`]);
      t.same(unknown, [], 'every folder in node_modules is a package npm installed');
      // Sources: no TypeScript, test files or source maps under /app.
      const walk = (d: string): string[] =>
        readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
      const dist = walk(join(mount, 'app/dist')).map((f) => f.slice(mount.length));
      t.same(
        dist.filter((f) => !f.endsWith('.js')),
        [],
        'dist holds only .js files',
      );
      t.same(
        dist.filter((f) => /test|bench/.test(f)),
        [],
        'no test or bench files',
      );
      t.notOk(
        listing['/'].some((e) => /^\/(src|test|bench|docs|charts)$/.test(e.path)),
        'no sources, tests, bench, docs or charts at /',
      );
    } finally {
      await podman(['image', 'unmount', ref]);
    }
    const total = Number((await podmanOk(['image', 'inspect', '--format', '{{.Size}}', ref])).trim());
    const lines = [`${ref}: ${mb(total)}`];
    for (const dir of ['/', '/usr', '/usr/local/bin', '/usr/local/lib/node_modules', '/app', '/app/node_modules']) {
      lines.push(
        `${dir}: ${listing[dir]
          .slice(0, 8)
          .map((e) => `${e.path.slice(dir.length).replace(/^\//, '')} ${mb(e.bytes)}`)
          .join(', ')}`,
      );
    }
    for (const l of lines) t.comment(l);
    t.ok(total < 400e6, `the image is ${mb(total)}`);
  });
}
