// --node and --zone (and their env twins), and the sidecar asking discover for its node's zone:
// asked again until known, given up on a discover without Node information.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { parseFlags } from '../../../shared/flags.ts';
import { createLogger } from '../../../shared/log.ts';
import { proxyFlags, proxyOptions } from '../../../proxy/main.ts';
import { localityUrl, lookUpZone } from '../../../proxy/locality/localityLookup.ts';
import { TWO_APPS, withDiscover } from '../../lib/discover.ts';

const URL_ = 'http://127.0.0.1:6100/v1/resources/default/web/mesh';

function capture(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('proxy', 'debug', {
    write: (l: string) => {
      for (const x of l.split('\n')) if (x) lines.push(JSON.parse(x));
    },
  });
  return { log, lines };
}

t.test('flags and env twins, checked as Kubernetes checks them', async (t) => {
  const fromArgs = proxyOptions(parseFlags(proxyFlags, ['--discover-url', URL_, '--node', 'node-7', '--zone', 'eu-1a'], {}).values, {});
  t.match(fromArgs, { node: 'node-7', zone: 'eu-1a' });
  const fromEnv = proxyOptions(parseFlags(proxyFlags, ['--discover-url', URL_], { SHOAL_NODE: 'node-8', SHOAL_ZONE: 'b' }).values, {});
  t.match(fromEnv, { node: 'node-8', zone: 'b' });
  const none = proxyOptions(parseFlags(proxyFlags, ['--discover-url', URL_], {}).values, {});
  t.equal(none.node, undefined);
  t.equal(none.zone, undefined);
  t.throws(
    () => proxyOptions(parseFlags(proxyFlags, ['--discover-url', URL_, '--node', 'Node_7'], {}).values, {}),
    /--node must be a node name \(a lower-case DNS subdomain\), got "Node_7"/,
  );
  t.throws(
    () => proxyOptions(parseFlags(proxyFlags, ['--discover-url', URL_], { SHOAL_ZONE: 'eu 1a' }).values, {}),
    /--zone must be a zone name .* got "eu 1a"/,
  );
});

t.test('the locality URL sits beside the snapshot URL', async (t) => {
  t.equal(localityUrl('http://d:6100/v2/snapshot/shop/web', 'node-1'), 'http://d:6100/v2/locality/shop/web?node=node-1');
});

t.test('asked again while the node is unknown, then the zone; the token is sent', async (t) => {
  let calls = 0;
  const auth: string[] = [];
  const server = createServer((req, res) => {
    calls++;
    auth.push(String(req.headers.authorization));
    t.equal(req.url, '/v2/locality/shop/web?node=node-1');
    if (calls < 3) {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: 'not_found', message: 'node node-1 is not known (yet)' }));
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ node: 'node-1', zone: 'eu-1b' }));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const { log } = capture();
  const zone = await new Promise<string>((resolve) => {
    lookUpZone({
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/snapshot/shop/web`,
      node: 'node-1',
      log,
      onZone: resolve,
      backoffBaseMs: 10,
      backoffMaxMs: 20,
    });
  });
  t.equal(zone, 'eu-1b');
  t.equal(calls, 3, 'asked until the node was known, then no more');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(calls, 3, 'no question after the answer');
  t.same(auth, ['undefined', 'undefined', 'undefined'], 'no token file: no authorization header');
});

t.test('a static discover has no Node information: the sidecar stops asking and says so', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const { log, lines } = capture();
  let zone: string | null = null;
  const stop = lookUpZone({
    url: `${d.url}/v2/snapshot/default/web`,
    node: 'node-1',
    log,
    onZone: (z) => {
      zone = z;
    },
    backoffBaseMs: 10,
  });
  t.teardown(() => stop.abort());
  const until = Date.now() + 5000;
  while (!lines.some((l) => /knows no zone/.test(String(l.msg))) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  t.ok(
    lines.some((l) => /knows no zone for this node; routing by node hints only/.test(String(l.msg)) && l.status === 404),
    'warned once with the answer',
  );
  t.equal(zone, null, 'no zone');
});
