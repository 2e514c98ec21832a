// An injected pod, run as a pod: a Deployment's Pod template goes through discover's injection webhook (the
// HTTPS AdmissionReview endpoint the API server calls), the patched Pod runs under `podman kube play` with the
// built image: app and sidecar in one pod (one network namespace), discover beside it serving a static
// topology, two backend containers for the dependency. From inside the app container: its resolver is the
// sidecar's responder, as the injected dnsConfig says; a name lookup answers the sidecar's loopback address;
// HTTP requests to the dependency are balanced over both backends; and a request from outside the pod on the
// remapped port reaches the app. podman's own internal network only: nothing leaves the machine.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { imageForFile, podman, podmanOk, removeByPrefix } from '../lib/image.ts';
import { patched, review, send, startTestWebhook } from '../discover/webhook/fixtures.ts';
import { preferredListenPort } from '../../shared/loopbackAndListenPorts.ts';
import { podmanEnv, run } from '../../scripts/image.ts';
import { podForPodman } from './podmanPod.ts';

t.setTimeout(600_000);
const image = imageForFile(t, import.meta.filename);

// Not the app's own port: an app on 0.0.0.0:8080 keeps the sidecar from binding <api address>:8080 (see docs/injection.md).
const API_PORT = 9090;
const APP_PORT = 8080;

// Answers its own name and the peer it saw.
const server = (name: string, port: number) =>
  `require('node:http').createServer((q,s)=>s.end(${JSON.stringify(name)}+' from '+q.socket.remoteAddress)).listen(${port},'0.0.0.0',()=>console.log('listening'))`;

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeoutMs = 90_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
    await sleep(300);
  }
}

if (image) {
  t.test(
    "a Deployment's pod injected by the webhook runs under podman: DNS and HTTP through the sidecar, inbound on the remapped port",
    async (t) => {
      const ref = await image.ready();
      const prefix = `shoal-pod-${process.pid}`;
      await removeByPrefix(prefix);
      const dir = mkdtempSync(join(tmpdir(), 'shoal-pod-'));
      t.teardown(async () => {
        await removeByPrefix(prefix);
        rmSync(dir, { recursive: true, force: true });
      });

      // An internal network: containers reach each other, nothing is routed off the machine.
      const net = `${prefix}-net`;
      await podmanOk(['network', 'create', '--internal', net]);
      const netInfo = JSON.parse(await podmanOk(['network', 'inspect', net]))[0];
      const subnet = netInfo.subnets[0];
      const base = subnet.subnet.split('/')[0].split('.').slice(0, 3).join('.');
      const ip = (n: number) => `${base}.${n}`;
      const discoverIp = ip(11);
      const backends = [
        { name: 'api-1', ip: ip(21) },
        { name: 'api-2', ip: ip(22) },
      ];
      t.comment(`network ${net}: ${subnet.subnet}, gateway (podman's DNS) ${subnet.gateway}, internal ${netInfo.internal}`);
      t.equal(netInfo.internal, true, 'the network is internal');

      // discover with the static topology: web depends on api (two backends) and serves HTTP on 8080.
      const topology = {
        services: [{ name: 'api', ports: [{ port: API_PORT, protocol: 'http' }], endpoints: backends.map((b) => `${b.ip}:${API_PORT}`) }],
        apps: [
          {
            name: 'web',
            pluginId: 'mesh',
            config: {
              base_ports: [{ port: APP_PORT, protocol: 'http' }],
              base_services: [{ depend_service_alias: 'api', port: API_PORT, protocol: 'http' }],
            },
          },
        ],
      };
      writeFileSync(join(dir, 'topology.yaml'), JSON.stringify(topology));
      await podmanOk([
        'run',
        '-d',
        '--name',
        `${prefix}-discover`,
        '--network',
        net,
        '--ip',
        discoverIp,
        '-v',
        `${dir}/topology.yaml:/etc/shoal/topology.yaml:ro`,
        ref,
        'discover',
        '--static',
        '/etc/shoal/topology.yaml',
        '--host',
        '0.0.0.0',
      ]);
      for (const b of backends) {
        await podmanOk([
          'run',
          '-d',
          '--name',
          `${prefix}-${b.name}`,
          '--network',
          net,
          '--ip',
          b.ip,
          '--entrypoint',
          'node',
          ref,
          '-e',
          server(b.name, API_PORT),
        ]);
      }

      // The Deployment and the Pod its ReplicaSet would create from the template.
      const deployment = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: 'default' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              containers: [
                {
                  name: 'app',
                  image: ref,
                  imagePullPolicy: 'Never',
                  command: ['node', '-e', server('web-app', APP_PORT)],
                  ports: [{ name: 'http', containerPort: APP_PORT }],
                },
              ],
            },
          },
        },
      };
      const podName = `${prefix}-web`;
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { ...structuredClone(deployment.spec.template.metadata), name: podName, namespace: 'default' },
        spec: structuredClone(deployment.spec.template.spec),
      };

      // Through the webhook's HTTPS endpoint, as the API server calls it.
      const hook = await startTestWebhook(
        {},
        {
          sidecarImage: ref,
          imagePullPolicy: 'Never',
          discoverUrl: `http://${discoverIp}:6100`,
          dnsUpstream: subnet.gateway,
        },
      );
      t.teardown(() => hook.close());
      const answer = await send(hook.webhook.port, hook.certs.ca, review(pod, { namespace: 'default' }));
      t.equal(answer.status, 200, 'the webhook answered');
      t.equal(answer.body.response.allowed, true, 'allowed');
      const injected = patched(pod, answer.body.response);
      const sidecarSpec = injected.spec.initContainers?.[0];
      t.equal(sidecarSpec?.name, 'shoal-proxy', 'the sidecar is the first init container');
      t.equal(sidecarSpec?.restartPolicy, 'Always', 'as a native sidecar');
      t.same(injected.spec.dnsConfig.nameservers, ['127.0.0.1', subnet.gateway], "the pod's resolver: the sidecar, then the cluster DNS");
      t.same(
        injected.spec.securityContext.sysctls,
        [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '53' }],
        'the unprivileged-port sysctl',
      );
      const listenPort = preferredListenPort(APP_PORT);
      t.same(
        JSON.parse(injected.metadata.annotations['shoal.dev/port-map']),
        { [APP_PORT]: listenPort },
        `port ${APP_PORT} remapped to ${listenPort}`,
      );

      const { pod: playable, notes, sysctls } = podForPodman(injected, join(dir, 'token'));
      for (const n of notes) t.comment(`harness: ${n}`);
      const file = join(dir, 'pod.yaml');
      writeFileSync(file, JSON.stringify(playable, null, 1)); // JSON is YAML
      // The project's podman settings plus the pod's sysctls as default_sysctls, for this kube play only.
      const env = podmanEnv();
      const conf = join(dir, 'containers.conf');
      writeFileSync(
        conf,
        readFileSync(env.CONTAINERS_CONF!, 'utf8').replace(
          /^\[containers\]$/m,
          `[containers]\ndefault_sysctls = ${JSON.stringify(sysctls)}`,
        ),
      );
      const play = await run('podman', ['kube', 'play', '--network', net, file], {
        env: { ...env, CONTAINERS_CONF: conf },
        timeoutMs: 120_000,
      });
      t.equal(play.code, 0, `podman kube play (${play.stderr.trim().slice(0, 400)})`);
      if (play.code !== 0) return;

      const app = `${podName}-app`;
      const sidecar = `${podName}-shoal-proxy`;
      const inApp = (js: string) => podman(['exec', app, 'node', '-e', js]);
      await waitFor("the sidecar's /ready from the app container", async () => {
        const r = await inApp('fetch("http://127.0.0.1:65533/ready").then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))');
        return r.code === 0 ? true : null;
      });

      // One network namespace: the app container's and the sidecar's are the same.
      const nsOf = async (c: string) => (await podmanOk(['exec', c, 'readlink', '/proc/self/ns/net'])).trim();
      t.equal(await nsOf(app), await nsOf(sidecar), 'app and sidecar share one network namespace');
      t.equal(
        (await podmanOk(['exec', app, 'cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start'])).trim(),
        '53',
        "the pod's sysctl is applied",
      );
      const top = (await podmanOk(['top', sidecar, 'pid', 'huser', 'hgroup', 'args']))
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.trim().split(/\s+/));
      t.ok(
        top.length > 0 && top.every(([, user, group]) => user === '65532' && group === '65532'),
        `the sidecar runs as 65532:65532 (${JSON.stringify(top)})`,
      );
      t.match(
        top
          .find(([pid]) => pid === '1')
          ?.slice(3)
          .join(' ') ?? '',
        /^tini -- node \/app\/dist\/cli\.js proxy/,
        "tini is the sidecar's PID 1",
      );
      const inspect = JSON.parse(await podmanOk(['inspect', sidecar]))[0];
      t.equal(inspect.HostConfig.ReadonlyRootfs, true, "the sidecar's root filesystem is read-only, as injected");

      // The resolver the app sees, and what it answers.
      const resolv = (await podmanOk(['exec', app, 'cat', '/etc/resolv.conf'])).trim();
      t.comment(`app's /etc/resolv.conf: ${resolv.replace(/\n/g, ' | ')}`);
      const nameservers = [...resolv.matchAll(/^nameserver\s+(\S+)/gm)].map((m) => m[1]);
      t.equal(nameservers[0], '127.0.0.1', "the first nameserver is the sidecar's responder");
      t.match(resolv, /^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local/m, 'the injected search domains');
      const lookup = JSON.parse(
        (
          await podmanOk([
            'exec',
            app,
            'node',
            '-e',
            'const dns=require("node:dns").promises;Promise.all(["api","api.default","api.default.svc.cluster.local"].map((n)=>dns.lookup(n).then((a)=>a.address))).then((a)=>console.log(JSON.stringify(a)))',
          ])
        ).trim(),
      );
      t.match(lookup[0], /^127\./, `api resolves to a loopback address of the sidecar (${lookup[0]})`);
      t.not(lookup[0], '127.0.0.1', 'its own address, not 127.0.0.1');
      t.same(lookup, [lookup[0], lookup[0], lookup[0]], 'every search-domain form of the name answers the same');
      // Straight at the responder, and a name it forwards: the container names of podman's DNS (the "cluster DNS").
      const viaResponder = (
        await podmanOk([
          'exec',
          app,
          'node',
          '-e',
          `const r=new (require("node:dns").promises.Resolver)();r.setServers(["127.0.0.1"]);Promise.all([r.resolve4("api.default.svc.cluster.local"),r.resolve4(${JSON.stringify(`${prefix}-discover`)}).catch((e)=>[e.code])]).then((a)=>console.log(JSON.stringify(a)))`,
        ])
      ).trim();
      const [direct, forwarded] = JSON.parse(viaResponder);
      t.same(direct, [lookup[0]], 'the responder on 127.0.0.1:53 answers api');
      t.same(forwarded, [discoverIp], `a name it does not own is forwarded to the cluster DNS (${JSON.stringify(forwarded)})`);

      // HTTP to the dependency by name, from the app: balanced over both backends, through the sidecar.
      const http = JSON.parse(
        (
          await podmanOk([
            'exec',
            app,
            'node',
            '-e',
            `(async()=>{const by={},peers={};let bad=0;for(let i=0;i<40;i++){const r=await fetch("http://api:${API_PORT}/");const [k,,peer]=(await r.text()).split(" ");if(r.status!==200)bad++;by[k]=(by[k]||0)+1;peers[peer]=1}console.log(JSON.stringify({by,bad,peers:Object.keys(peers)}))})()`,
          ])
        ).trim(),
      );
      t.equal(http.bad, 0, 'every request answered 200');
      t.same(Object.keys(http.by).sort(), ['api-1', 'api-2'], `balanced over both backends (${JSON.stringify(http.by)})`);
      t.ok(http.by['api-1'] >= 10 && http.by['api-2'] >= 10, 'each got a fair share of 40');

      // Inbound: from another container on the network to the pod's address on the remapped port.
      // The sidecar shares the pod's network namespace: its address on the network is the pod's.
      const podIp: string | undefined = inspect.NetworkSettings.Networks?.[net]?.IPAddress;
      t.ok(podIp, `the pod's address on ${net}: ${podIp}`);
      t.same(http.peers, [podIp], `the backends saw the pod's address (${JSON.stringify(http.peers)})`);
      const inbound = await podman([
        'run',
        '--rm',
        '--network',
        net,
        '--entrypoint',
        'node',
        ref,
        '-e',
        `Promise.all([fetch("http://${podIp}:${listenPort}/").then(async(r)=>r.status+" "+await r.text()),fetch("http://${podIp}:65533/ready").then((r)=>r.status)]).then((a)=>console.log(JSON.stringify(a)))`,
      ]);
      t.equal(inbound.code, 0, `the client container ran (${inbound.stderr.trim().slice(0, 200)})`);
      const [inboundAnswer, adminReady] = JSON.parse(inbound.stdout.trim() || '[null,null]');
      t.match(
        inboundAnswer,
        /^200 web-app from 127\.0\.0\.1$/,
        `a request on ${podIp}:${listenPort} reaches the app through the sidecar, which connects from loopback (${inboundAnswer})`,
      );
      t.equal(adminReady, 200, "the sidecar's /ready answers other pods (the kubelet's probe)");
    },
  );
}
