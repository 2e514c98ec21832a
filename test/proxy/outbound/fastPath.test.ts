// The fast path's own HTTP/1.1 handling, against awkward backends and clients: chunked and
// close-delimited bodies, HEAD and 204, stale keep-alive connections, pipelining, Connection: close,
// malformed responses, HTTP/1.0 (handed to node:http), and the access log.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createLogger } from '../../../shared/log.ts';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar, type Handler } from '../fixtures.ts';

const run = promisify(execFile);

async function via(t: Test, handler: Handler, opts = {}): Promise<string> {
  const b = await httpBackend(t, 'b', handler);
  return viaEndpoint(t, b.endpoint, opts);
}

async function viaEndpoint(t: Test, endpoint: string, opts = {}): Promise<string> {
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('api', address, port, [endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
`,
    opts,
  );
  return `http://${address}:${port}`;
}

/** Raw HTTP over one socket: writes text, collects until the server closes or `until` matches. */
function raw(url: string, text: string, until?: RegExp): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname);
    let out = '';
    s.on('data', (d) => {
      out += d.toString('latin1');
      if (until && until.test(out)) {
        s.destroy();
        resolve(out);
      }
    });
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
    s.write(text);
  });
}

t.test('chunked responses pass through with their framing; trailers too', async (t) => {
  const url = await via(t, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
    res.write('hello ');
    setTimeout(() => {
      res.write('chunked ');
      res.addTrailers({ 'x-checksum': 'abc' });
      res.end('world');
    }, 20);
  });
  const r = await request(`${url}/`);
  t.equal(await r.body.text(), 'hello chunked world');
  t.equal(r.headers['transfer-encoding'], 'chunked');
  t.equal(r.trailers['x-checksum'], 'abc');
  const again = await request(`${url}/`);
  t.equal(await again.body.text(), 'hello chunked world', 'the upstream connection is reused after a chunked body');
});

t.test('HEAD, 204 and 304 have no body and do not hang the connection', async (t) => {
  const url = await via(t, (req, res) => {
    req.resume();
    if (req.url === '/204') return void res.writeHead(204).end();
    if (req.url === '/304') return void res.writeHead(304, { etag: '"x"' }).end();
    res.writeHead(200, { 'content-length': 5 }).end(req.method === 'HEAD' ? undefined : 'hello');
  });
  const head = await request(`${url}/`, { method: 'HEAD' });
  t.equal(head.statusCode, 200);
  t.equal(head.headers['content-length'], '5');
  t.equal(await head.body.text(), '');
  t.equal((await request(`${url}/204`)).statusCode, 204);
  t.equal((await request(`${url}/304`)).statusCode, 304);
  t.equal(await (await request(`${url}/`)).body.text(), 'hello', 'the connection still works afterwards');
});

t.test('a close-delimited response (no length) is forwarded and the client connection closed', async (t) => {
  const server = createServer((s: Socket) => {
    s.once('data', () => s.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = await viaEndpoint(t, `127.0.0.1:${(server.address() as AddressInfo).port}`);
  const out = await raw(url, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  t.match(out, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(out, /connection: close\r\n/i);
  t.match(out, /\r\n\r\nuntil the end$/);
});

t.test('response hop-by-hop lines are dropped wherever they sit; HTTP/1.0 answers become 1.1', async (t) => {
  const answers = [
    'HTTP/1.0 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nX-End: z\r\n\r\nok',
    'HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Keep: y\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nok',
  ];
  let n = 0;
  const server = createServer((s: Socket) => {
    s.on('data', () => s.write(answers[n++ % 2]));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = await viaEndpoint(t, `127.0.0.1:${(server.address() as AddressInfo).port}`);
  const first = await raw(url, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', /\r\n\r\nok/);
  t.match(first, /^HTTP\/1\.1 200 OK\r\n/);
  t.notMatch(first, /keep-alive|x-hop/i, 'Connection, Keep-Alive and the listed X-Hop are gone');
  t.match(first, /Content-Length: 2\r\nX-End: z\r\n\r\nok$/);
  const second = await raw(url, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', /\r\n\r\nok/);
  t.match(
    second,
    /^HTTP\/1\.1 201 Created\r\nContent-Length: 2\r\nX-Keep: y\r\n\r\nok$/,
    'trailing hop-by-hop lines leave a well-formed head',
  );
});

t.test('a malformed response head becomes 502 upstream-reset', async (t) => {
  const server = createServer((s: Socket) => {
    s.once('data', () => s.end('NONSENSE\r\n\r\n'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = await viaEndpoint(t, `127.0.0.1:${(server.address() as AddressInfo).port}`);
  const r = await request(`${url}/`);
  t.equal(r.statusCode, 502);
  t.equal(r.headers['x-shoal-error'], 'upstream-reset');
  await r.body.dump();
});

t.test('a keep-alive connection the backend closed meanwhile is retried on a fresh one', async (t) => {
  const b = await httpBackend(t, 'short', (req, res) => {
    req.resume();
    res.end('fine');
  });
  b.server.keepAliveTimeout = 100;
  const url = await viaEndpoint(t, b.endpoint);
  t.equal(await (await request(`${url}/`)).body.text(), 'fine');
  await new Promise((r) => setTimeout(r, 300));
  const r = await request(`${url}/`);
  t.equal(r.statusCode, 200, 'not a 502 for the stale connection');
  t.equal(await r.body.text(), 'fine');
});

t.test('pipelined requests are answered in order; Connection: close closes after the answer', async (t) => {
  const url = await via(t, (req, res) => {
    req.resume();
    setTimeout(() => res.end(`answer ${req.url}`), req.url === '/1' ? 50 : 1);
  });
  const out = await raw(
    url,
    'GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\nGET /3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
  );
  const bodies = [...out.matchAll(/answer \/[0-9]/g)].map((m) => m[0]);
  t.same(bodies, ['answer /1', 'answer /2', 'answer /3']);
  t.equal((out.match(/connection: close/gi) ?? []).length, 1, 'only the last response says close');
});

t.test('HTTP/1.0 and requests with bodies go the node:http way and still work (curl)', async (t) => {
  const url = await via(t, (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(`${req.method} ${req.httpVersion} ${n}`));
  });
  const { stdout: v10 } = await run('curl', ['-s', '--http1.0', `${url}/`]);
  t.equal(v10, 'GET 1.1 0');
  const { stdout: post } = await run('curl', ['-s', '-d', 'x'.repeat(1000), `${url}/`]);
  t.equal(post, 'POST 1.1 1000');
  const { stdout: mixed } = await run('curl', [
    '-s',
    `${url}/a`,
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} ',
    '--next',
    '-s',
    '-d',
    'abc',
    `${url}/b`,
  ]);
  t.match(mixed, /^200 POST 1\.1 3$/, 'a GET then a POST on one connection');
});

t.test('the access log writes one JSON line per sampled request', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const sink = {
    write: (chunk: string) => {
      for (const l of chunk.split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
    },
  };
  const log = createLogger('proxy', 'info', sink);
  const url = await via(
    t,
    (req, res) => {
      req.resume();
      res.end('ok');
    },
    { accessLog: true, accessLogSample: 2, log },
  );
  for (let i = 0; i < 10; i++) await (await request(`${url}/p${i}`, { headers: { 'x-request-id': `rid-${i}` } })).body.dump();
  await new Promise((r) => setTimeout(r, 100));
  const access = lines.filter((l) => l.msg === 'access');
  t.equal(access.length, 5, '1 in 2 sampled');
  t.match(access[0], { dir: 'outbound', method: 'GET', status: 200, cluster: 'api.default:' + url.split(':')[2], request_id: /^rid-/ });
  t.type(access[0].duration_ms, 'number');
});
